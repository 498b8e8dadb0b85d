"""The conditioning samplers by name: what `steer sample --sampler` offers, and what the conformance test runs.

Every sampler has one signature (the `Sampler` protocol):

    sampler(target, *, n_particles, budget, seed, proposal, **own_options) -> Posterior

`n_particles` and `ess_threshold` are named as in llamppl and genlm-control. Adding a sampler is one
new file in `steering/condition/` with a function of that signature, plus one line in `SAMPLERS`;
`tests/condition/test_sampler_conformance.py` then checks it against exact enumeration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from steering.condition.posterior import Posterior
from steering.condition.samplers import importance, rejection
from steering.condition.smc import smc
from steering.condition.target import Target
from steering.errors import InvalidArgument, did_you_mean


class Sampler(Protocol):
    """A function that samples a `Target` and returns weighted samples with their evidence and cost.

    Keyword arguments, shared by every sampler:
        n_particles: how many samples the posterior holds (SMC particles, importance proposals,
            rejection's accepted samples).
        budget: the most model calls (token forward passes, `Posterior.model_calls`) to spend, or
            None; what a sampler does at the budget is stated in its docstring.
        seed: same seed, same posterior.
        proposal: controls that define the proposal q; samplers that draw from the base itself
            refuse a non-empty one.
    """

    def __call__(
        self,
        target: Target,
        *,
        n_particles: int = ...,
        budget: int | None = ...,
        seed: int = ...,
        proposal: Sequence[object] = ...,
    ) -> Posterior: ...


@dataclass(frozen=True)
class SamplerEntry:
    """One registered sampler.

    Attributes:
        run: the sampler function.
        help: one line for `steer sample --help`.
        uses_proposal: whether `steer sample --fixed` passes its `ForceTokens` proposal (samplers that
            draw from the base itself get the fixed tokens as a condition only).
        cli_budget: the command line's default budget (None: no cap).
    """

    run: Sampler
    help: str
    uses_proposal: bool = False
    cli_budget: int | None = None


SAMPLERS: dict[str, SamplerEntry] = {
    "smc": SamplerEntry(smc, "sequential Monte Carlo, lookahead closing for ends-with", uses_proposal=True),
    "importance": SamplerEntry(importance, "self-normalised importance sampling", uses_proposal=True),
    "rejection": SamplerEntry(rejection, "draw from the base, keep what satisfies", cli_budget=20_000),
}


def sampler_entry(name: str) -> SamplerEntry:
    """The registered sampler called `name`; an InvalidArgument listing the registered ones otherwise."""
    if name not in SAMPLERS:
        raise InvalidArgument(
            f"unknown sampler {name!r}.{did_you_mean(name, SAMPLERS)}",
            received=name,
            fix=f"use one of: {', '.join(SAMPLERS)}",
        )
    return SAMPLERS[name]


def samplers_help() -> str:
    """'smc (…), importance (…), rejection (…; default budget 20,000)': the samplers, for `--help`."""
    return ", ".join(
        f"{name} ({entry.help}" + (f"; default budget {entry.cli_budget:,})" if entry.cli_budget else ")")
        for name, entry in SAMPLERS.items()
    )

"""Samplers of a `Target`: rejection and importance sampling (SMC is in `smc.py`).

Both spend model calls through `steering.generate`, so every proposal sample carries exact books:
log π(x) = Σ logp_base and log q(x) = Σ logq. A completion under π ends with EOS or at
`max_new_tokens`; a pool proposal that finishes its constraint without sampling EOS is closed here by
forcing EOS, whose log π is scored and whose log q is 0, so the weights stay exact.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch

from steering.condition.posterior import Posterior
from steering.condition.sampler_args import check_budget, check_particles, covering_proposal
from steering.condition.target import Target
from steering.decode import generate
from steering.decode.samples import Sample
from steering.errors import SEED_LIMIT, InvalidArgument, check_seed


def _close_with_eos(target: Target, samples: list[Sample]) -> tuple[list[Sample], int]:
    """Force EOS after samples that a pool ended early; returns the samples and the extra calls."""
    model = target.model
    eos = model.eos_token_ids[0]
    open_rows = [
        i
        for i, s in enumerate(samples)
        if s.stop_reason == "stop" and (not s.token_ids or s.token_ids[-1] not in model.eos_token_ids)
    ]
    if not open_rows:
        return samples, 0
    prompt_ids = model.encode(target.prompt)
    scored = model.logprobs([prompt_ids] * len(open_rows), [[*samples[i].token_ids, eos] for i in open_rows])
    closed = list(samples)
    for i, logp in zip(open_rows, scored, strict=True):
        s = samples[i]
        closed[i] = Sample(
            prompt=s.prompt,
            prompt_index=s.prompt_index,
            context=s.context,
            text=s.text,
            token_ids=[*s.token_ids, eos],
            logq=torch.cat([s.logq, torch.zeros(1)]),
            logp_base=torch.cat([s.logp_base, logp[-1:]]),
            stop_reason="eos",
            sample_index=s.sample_index,
        )
    return closed, sum(len(samples[i].token_ids) + 1 for i in open_rows)


def importance(
    target: Target,
    *,
    n_particles: int = 64,
    budget: int | None = None,
    seed: int = 0,
    proposal: Sequence[object] = (),
    batch_size: int = 8,
) -> Posterior:
    """Self-normalised importance sampling: x ~ q (the base, or base + controls), w = π(x) φ(x) / q(x).

    Args:
        target: what to sample.
        n_particles: proposal samples, all kept with their weights.
        budget: the most model calls allowed, or None for no cap; the run is refused when its worst
            case (every sample runs to `max_new_tokens`, rescoring and EOS closing included) exceeds it.
        seed: same seed, same samples.
        proposal: controls that define q (pools, tweaks, context controls); empty = the base itself.
        batch_size: rows decoded together.

    Returns:
        A `Posterior` of `n_particles` weighted samples.
    """
    n = check_particles(n_particles)
    seed = check_seed(seed)
    proposal = covering_proposal(proposal)
    passes = 2 if _rescored(proposal) else 1
    closing = n * (target.max_new_tokens + 1) if proposal else 0  # a pool may end rows without EOS
    check_budget(budget, worst_case=n * target.max_new_tokens * passes + closing, sampler="importance")
    drawn = generate(
        target.model,
        [target.prompt],
        controls=proposal,
        n=n,
        max_new_tokens=target.max_new_tokens,
        seed=seed,
        batch_size=batch_size,
    )
    samples, extra = _close_with_eos(target, list(drawn))
    calls = sum(len(s.token_ids) for s in drawn) * passes + extra
    log_phi = target.log_potential([s.text for s in samples], [s.token_ids for s in samples])
    log_w = torch.tensor([s.log_weight for s in samples], dtype=torch.float64) + log_phi
    log_z = float(torch.logsumexp(log_w, 0) - math.log(n))
    name = f"importance(n={n}, proposal={'base' if not proposal else drawn.controls})"
    return Posterior(samples, log_w, log_z, log_phi, calls, name)


def rejection(
    target: Target,
    *,
    n_particles: int = 16,
    budget: int | None = 100_000,
    seed: int = 0,
    proposal: Sequence[object] = (),
    log_bound: float | None = None,
    batch_size: int = 8,
) -> Posterior:
    """Draw from the base until `n_particles` samples are accepted or `budget` model calls are spent.

    Hard potentials accept exactly the samples that satisfy them. Soft potentials need `log_bound`
    ≥ max log φ(x); a sample is then accepted with probability exp(log φ(x) − log_bound).

    Args:
        target: what to sample.
        n_particles: accepted samples wanted.
        budget: model calls after which no new batch is drawn (the batch under way is finished, so the
            count can pass the budget by up to `batch_size × max_new_tokens`); required.
        seed: same seed, same samples.
        proposal: must be empty: rejection draws from the base itself (use `importance` or `smc`).
        log_bound: an upper bound on log φ(x) = r(x)/β, needed for soft potentials.
        batch_size: rows decoded together.

    Returns:
        A `Posterior` of the accepted samples, equally weighted; the evidence is the acceptance mass.
    """
    n = check_particles(n_particles)
    seed = check_seed(seed)
    limit, bound = _check_rejection(target, budget=budget, proposal=proposal, log_bound=log_bound)
    uniform = torch.Generator().manual_seed(seed)
    accepted: list[Sample] = []
    accepted_phi: list[float] = []
    calls, drawn, mass = 0, 0, []
    round_index = 0
    while len(accepted) < n and calls < limit:
        batch = generate(
            target.model,
            [target.prompt],
            n=batch_size,
            max_new_tokens=target.max_new_tokens,
            seed=(seed * 1_000_003 + round_index) % SEED_LIMIT,
            batch_size=batch_size,
        )
        round_index += 1
        calls += sum(len(s.token_ids) for s in batch)
        log_phi = target.log_potential(batch.texts, [s.token_ids for s in batch])
        for sample, value in zip(batch, log_phi.tolist(), strict=True):
            drawn += 1
            mass.append(value)
            if value > bound + 1e-9:
                raise InvalidArgument(
                    f"log φ(x) = {value:.3f} exceeds log_bound = {bound:.3f}",
                    received=sample.text[:80],
                    fix="raise log_bound to the reward's maximum divided by β",
                )
            if value > float("-inf") and float(torch.rand((), generator=uniform)) < math.exp(value - bound):
                accepted.append(dataclasses.replace(sample, sample_index=len(accepted)))
                accepted_phi.append(value)
                if len(accepted) == n:
                    break
    log_z = float(torch.logsumexp(torch.tensor(mass, dtype=torch.float64), 0) - math.log(drawn))
    name = f"rejection(n={n}, drew {drawn})"
    return Posterior(
        accepted,
        torch.zeros(len(accepted), dtype=torch.float64),
        log_z,
        torch.tensor(accepted_phi, dtype=torch.float64),
        calls,
        name,
    )


def _check_rejection(
    target: Target, *, budget: int | None, proposal: Sequence[object], log_bound: float | None
) -> tuple[int, float]:
    """Validate rejection's own arguments; returns the budget and the bound on log φ (0 when hard)."""
    if not isinstance(budget, int) or isinstance(budget, bool) or budget <= 0:
        raise InvalidArgument(
            "rejection needs a budget: a positive number of model calls",
            received=budget,
            fix="use e.g. budget=100_000",
        )
    if proposal:
        raise InvalidArgument(
            "rejection draws from the base itself and takes no proposal",
            received=[type(c).__name__ for c in proposal],
            fix="use importance() or smc() with a proposal, or drop it",
        )
    if not target.hard and log_bound is None:
        raise InvalidArgument(
            "rejection sampling a soft potential needs log_bound, an upper bound on r(x)/β",
            received=target.describe(),
            fix="pass log_bound=max_reward/beta, or use importance() or smc()",
        )
    return budget, 0.0 if target.hard or log_bound is None else float(log_bound)


def _rescored(controls: Sequence[object]) -> bool:
    from steering.controls.base import split_controls

    context, _, model_controls = split_controls(controls)
    return bool(context) or bool(model_controls)

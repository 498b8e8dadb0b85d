"""Samplers of a `Target`: rejection and importance sampling (SMC follows in `smc.py`).

Both spend model calls through `steering.generate`, so every proposal sample carries exact books:
log π(x) = Σ logp_base and log q(x) = Σ logq. A completion under π ends with EOS or at
`max_new_tokens`; a pool proposal that finishes its constraint without sampling EOS is closed here by
forcing EOS, whose log π is scored and whose log q is 0, so the weights stay exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from steering.condition.posterior import Posterior
from steering.condition.target import Target
from steering.decode import generate
from steering.decode.samples import Sample
from steering.errors import InvalidArgument


def _check_count(value: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidArgument(f"{name} must be a positive integer", received=value, fix=f"use e.g. {name}=64")
    return value


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
        )
    return closed, sum(len(samples[i].token_ids) + 1 for i in open_rows)


def importance(
    target: Target,
    *,
    n: int = 64,
    proposal: Sequence[object] = (),
    seed: int = 0,
    batch_size: int = 8,
) -> Posterior:
    """Self-normalised importance sampling: x ~ q (the base, or base + controls), w = π(x) φ(x) / q(x).

    Args:
        target: what to sample.
        n: proposal samples.
        proposal: controls that define q (pools, tweaks, context controls); empty = the base itself.
        seed: same seed, same samples.
        batch_size: rows decoded together.
    """
    _check_count(n, "n")
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
    calls = sum(len(s.token_ids) for s in drawn) * (2 if _rescored(proposal) else 1) + extra
    log_phi = target.log_potential([s.text for s in samples], [s.token_ids for s in samples])
    log_w = torch.tensor([s.log_weight for s in samples], dtype=torch.float64) + log_phi
    log_z = float(torch.logsumexp(log_w, 0) - math.log(n))
    name = f"importance(n={n}, proposal={'base' if not proposal else drawn.controls})"
    return Posterior(samples, log_w, log_z, log_phi, calls, name)


def rejection(
    target: Target,
    *,
    n: int = 16,
    max_model_calls: int = 100_000,
    log_bound: float | None = None,
    seed: int = 0,
    batch_size: int = 8,
) -> Posterior:
    """Draw from the base until `n` samples are accepted or `max_model_calls` token passes are spent.

    Hard potentials accept exactly the samples that satisfy them. Soft potentials need `log_bound`
    ≥ max log φ(x); a sample is then accepted with probability exp(log φ(x) − log_bound).
    """
    _check_count(n, "n")
    _check_count(max_model_calls, "max_model_calls")
    if not target.hard and log_bound is None:
        raise InvalidArgument(
            "rejection sampling a soft potential needs log_bound, an upper bound on r(x)/β",
            received=target.describe(),
            fix="pass log_bound=max_reward/beta, or use importance() or smc()",
        )
    uniform = torch.Generator().manual_seed(seed)
    accepted: list[Sample] = []
    accepted_phi: list[float] = []
    calls, drawn, mass = 0, 0, []
    round_index = 0
    while len(accepted) < n and calls < max_model_calls:
        batch = generate(
            target.model,
            [target.prompt],
            n=batch_size,
            max_new_tokens=target.max_new_tokens,
            seed=seed * 1_000_003 + round_index,
            batch_size=batch_size,
        )
        round_index += 1
        calls += sum(len(s.token_ids) for s in batch)
        log_phi = target.log_potential(batch.texts, [s.token_ids for s in batch])
        for sample, value in zip(batch, log_phi.tolist(), strict=True):
            drawn += 1
            mass.append(value)
            bound = 0.0 if target.hard else float(log_bound)  # type: ignore[arg-type]
            if value > bound + 1e-9:
                raise InvalidArgument(
                    f"log φ(x) = {value:.3f} exceeds log_bound = {bound:.3f}",
                    received=sample.text[:80],
                    fix="raise log_bound to the reward's maximum divided by β",
                )
            if value > float("-inf") and float(torch.rand((), generator=uniform)) < math.exp(value - bound):
                accepted.append(sample)
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


def _rescored(controls: Sequence[object]) -> bool:
    from steering.controls.base import split_controls

    context, _, model_controls = split_controls(controls)
    return bool(context) or bool(model_controls)

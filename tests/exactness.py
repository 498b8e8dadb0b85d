"""Helpers shared by the tests that compare samplers and trained policies with exact enumeration."""

from __future__ import annotations

import math
from pathlib import Path

from steering.condition import Enumeration, Target, enumerate_target, length_between
from steering.train import Adapter


def tv(posterior, exact: Enumeration) -> float:
    """Total variation between the weighted samples (by token sequence) and the exact target."""
    empirical: dict[tuple[int, ...], float] = {}
    for sample, weight in zip(posterior.samples, posterior.weights.tolist(), strict=True):
        key = tuple(sample.token_ids)
        empirical[key] = empirical.get(key, 0.0) + weight
    target = exact.distribution()
    keys = set(empirical) | set(target)
    return 0.5 * sum(abs(empirical.get(k, 0.0) - target.get(k, 0.0)) for k in keys)


def tv_bound(posterior, exact: Enumeration) -> float:
    """The stated TV bound: 1.5 × the expected TV of an exact sampler with this ESS, plus 0.01.

    For counts from n independent draws, E|p̂_i − p_i| ≈ √(2/π)·√(p_i(1 − p_i)/n), so an exact
    sampler's expected TV is ½ Σ_i of that; weighted samples count as ESS draws.
    """
    probs = exact.probs[exact.probs > 0]
    noise = (
        0.5 * math.sqrt(2 / math.pi) * float((probs * (1 - probs)).sqrt().sum()) / math.sqrt(posterior.ess)
    )
    return 1.5 * noise + 0.01


def policy(model, prompt: str, length: int, adapter: Path | None) -> Enumeration:
    """Every completion and its probability under the model, with `adapter` on when given."""
    everything = Target(model, prompt, [length_between(0, 10_000)], max_new_tokens=length)
    if adapter is None:
        return enumerate_target(everything)
    with Adapter(adapter).attached(model):
        return enumerate_target(everything)

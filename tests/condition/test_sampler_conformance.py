"""Every registered sampler against exact enumeration: a new sampler gets these checks by being registered.

The targets are hard conditions on the 5-token `tiny-letters` model (85 completions), one for each
kind of SMC path: "ends with b" (lookahead closing) and "starts with c" (plain, with prefix pruning).
Tolerances are stated per check; the seeds are fixed, so the tests are deterministic.
"""

from __future__ import annotations

import math

import pytest
import torch
from exactness import tv, tv_bound

from steering.condition import SAMPLERS, Posterior, Target, ends_with, enumerate_target, starts_with
from steering.controls import LogitBias
from steering.errors import InvalidArgument
from steering.models import load_model

PROMPT = "ab"
LENGTH = 3
N_PARTICLES = 1000
BUDGET = 200_000  # model calls; far above what any sampler needs here
CONDITIONS = {"ends with b": ends_with("b"), "starts with c": starts_with("c")}
# Options that change only how fast a sampler runs (rows decoded together); a new sampler runs with
# its defaults.
FASTER: dict[str, dict[str, object]] = {"importance": {"batch_size": 500}, "rejection": {"batch_size": 500}}


@pytest.fixture(scope="module")
def letters():
    return load_model("tiny-letters", dtype="float32")


def _run(name: str, target: Target, *, n_particles: int, seed: int, budget: int | None = BUDGET) -> Posterior:
    run = SAMPLERS[name].run
    return run(target, n_particles=n_particles, budget=budget, seed=seed, **FASTER.get(name, {}))


@pytest.mark.parametrize("condition", list(CONDITIONS))
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_matches_exact_enumeration(letters, name, condition):
    target = Target(letters, PROMPT, [CONDITIONS[condition]], max_new_tokens=LENGTH)
    exact = enumerate_target(target)
    posterior = _run(name, target, n_particles=N_PARTICLES, seed=0)
    assert isinstance(posterior, Posterior)
    count = len(posterior.samples)
    assert posterior.log_weights.shape == posterior.log_potentials.shape == (count,)
    assert posterior.found and float(posterior.weights.sum()) == pytest.approx(1.0, abs=1e-9)
    # Weight only on samples that satisfy the condition.
    kept = posterior.weights > 0
    assert bool(torch.isfinite(posterior.log_potentials[kept]).all())
    # Enough samples to judge, then the distribution within the TV bound the other exactness tests use.
    assert posterior.ess >= 100, posterior.summary()
    assert tv(posterior, exact) < tv_bound(posterior, exact), posterior.summary()
    # log Ẑ within 4/√ESS nats (≈ 4 standard errors of an exact sampler's log Ẑ with that ESS).
    tolerance = 4 / math.sqrt(posterior.ess)
    assert posterior.log_evidence == pytest.approx(exact.log_evidence, abs=tolerance), posterior.summary()
    assert posterior.kl_estimate == pytest.approx(exact.kl, abs=tolerance)
    # The cost is reported, and within the budget.
    assert isinstance(posterior.model_calls, int) and 0 < posterior.model_calls <= BUDGET


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_same_seed_same_posterior(letters, name):
    target = Target(letters, PROMPT, [ends_with("b")], max_new_tokens=LENGTH)
    first, again = (_run(name, target, n_particles=16, seed=3) for _ in range(2))
    assert [s.token_ids for s in first.samples] == [s.token_ids for s in again.samples]
    assert torch.equal(first.log_weights, again.log_weights)
    assert first.log_evidence == again.log_evidence and first.model_calls == again.model_calls
    other = _run(name, target, n_particles=16, seed=4)
    assert [s.token_ids for s in other.samples] != [s.token_ids for s in first.samples]


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_a_budget_too_small_is_not_ignored(letters, name):
    """With budget=1 a sampler refuses to start or stops short; it never runs the full job regardless."""
    target = Target(letters, PROMPT, [ends_with("b")], max_new_tokens=LENGTH)
    try:  # with the sampler's defaults: rejection finishes the batch under way (8 rows), then stops
        posterior = SAMPLERS[name].run(target, n_particles=64, seed=0, budget=1)
    except InvalidArgument as error:
        assert "budget" in str(error)
    else:
        assert len(posterior.samples) < 64


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_bad_common_arguments_are_clear_errors(letters, name):
    target = Target(letters, PROMPT, [ends_with("b")], max_new_tokens=LENGTH)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(InvalidArgument, match="n_particles"):
            _run(name, target, n_particles=bad, seed=0)
    with pytest.raises(InvalidArgument, match="budget"):
        _run(name, target, n_particles=4, seed=0, budget=0)
    if not SAMPLERS[name].uses_proposal:
        with pytest.raises(InvalidArgument, match="proposal"):
            SAMPLERS[name].run(target, n_particles=4, seed=0, proposal=[LogitBias({"c": 2.0})])

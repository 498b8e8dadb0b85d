"""Fixed tokens at positions (infill): the potential, the `ForceTokens` proposal, and exactness."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from exactness import tv, tv_bound

from steering.condition import (
    Target,
    enumerate_target,
    fixed_tokens,
    importance,
    prompt_as_reward,
    rejection,
    smc,
)
from steering.controls import ForceTokens
from steering.decode import generate
from steering.errors import InvalidArgument
from steering.models import load_model

PROMPT = "ab"
LENGTH = 4  # 4^4 + 4^3 + 4^2 + 4 + 1 = 341 completions
SPANS = {1: "c", 3: "a"}  # x_1 = "c" and x_3 = "a": neither a prefix nor a suffix


@pytest.fixture(scope="module")
def letters():
    return load_model("tiny-letters", dtype="float32")


def _unweighted(posterior):
    return type(posterior)(
        posterior.samples,
        torch.zeros(len(posterior.samples), dtype=torch.float64),
        posterior.log_evidence,
        posterior.log_potentials,
        posterior.model_calls,
        "unweighted",
    )


def test_the_exact_infill_target(letters):
    exact = enumerate_target(Target(letters, PROMPT, [fixed_tokens(SPANS)], max_new_tokens=LENGTH))
    assert len(exact.completions) == 341
    c, a = letters.encode_continuation("c")[0], letters.encode_continuation("a")[0]
    support = [x for x, p in exact.distribution().items() if p > 0]
    assert support and all(len(x) >= 4 and x[1] == c and x[3] == a for x in support)
    assert 0.005 < math.exp(exact.log_evidence) < 0.3


def test_force_tokens_proposal_is_exact_with_its_weights(letters):
    target = Target(letters, PROMPT, [fixed_tokens(SPANS)], max_new_tokens=LENGTH)
    exact = enumerate_target(target)
    posterior = importance(target, n_particles=3000, proposal=[ForceTokens(SPANS)], seed=0, batch_size=500)
    # Every proposal that did not end before position 3 satisfies the condition.
    assert sum(w > 0 for w in posterior.weights.tolist()) > 0.9 * len(posterior.samples)
    assert tv(posterior, exact) < tv_bound(posterior, exact)
    assert posterior.log_evidence == pytest.approx(exact.log_evidence, abs=0.05)
    assert posterior.kl_estimate == pytest.approx(exact.kl, abs=0.05)
    # Forcing without the weights is not the conditional (so the test above can fail).
    flat = _unweighted(posterior)
    assert tv(flat, exact) > 3 * tv_bound(flat, exact)


def test_smc_with_the_force_tokens_proposal(letters):
    target = Target(letters, PROMPT, [fixed_tokens(SPANS)], max_new_tokens=LENGTH)
    exact = enumerate_target(target)
    runs = [smc(target, n_particles=400, proposal=[ForceTokens(SPANS)], seed=seed) for seed in range(3)]
    samples = [s for r in runs for s in r.samples]
    log_w = torch.cat([r.log_weights for r in runs])
    merged = type(runs[0])(
        samples,
        log_w,
        float(torch.logsumexp(log_w, 0)) - math.log(3),
        torch.cat([r.log_potentials for r in runs]),
        0,
        "merged",
    )
    assert tv(merged, exact) < tv_bound(merged, exact)
    assert merged.log_evidence == pytest.approx(exact.log_evidence, abs=0.1)


def test_rejection_and_base_importance_agree(letters):
    target = Target(letters, PROMPT, [fixed_tokens(SPANS)], max_new_tokens=LENGTH)
    exact = enumerate_target(target)
    accepted = rejection(target, n_particles=400, budget=200_000, seed=1, batch_size=500)
    c, a = letters.encode_continuation("c")[0], letters.encode_continuation("a")[0]
    assert all(s.token_ids[1] == c and s.token_ids[3] == a for s in accepted.samples)
    assert tv(accepted, exact) < tv_bound(accepted, exact)


def test_force_tokens_forces_and_keeps_the_books(letters):
    samples = generate(
        letters, [PROMPT, "c"], controls=[ForceTokens({2: "b"})], n=20, max_new_tokens=4, seed=0
    )
    b = letters.encode_continuation("b")[0]
    direct = letters.logprobs([s.prompt for s in samples], [s.token_ids for s in samples])
    forced = [s for s in samples if len(s.token_ids) > 2]
    assert forced
    for s, reference in zip(samples, direct, strict=True):
        assert torch.allclose(s.logp_base, reference, atol=1e-5)
        if len(s.token_ids) > 2:
            assert s.token_ids[2] == b
            assert float(s.logq[2]) == pytest.approx(
                0.0, abs=1e-6
            )  # forced: q = 1; the step weight is log p(b | prefix)
            assert float(s.logp_base[2]) < 0


def test_bad_positions_are_clear_errors(letters):
    with pytest.raises(InvalidArgument, match="non-negative"):
        Target(letters, PROMPT, [fixed_tokens({-1: "a"})])
    with pytest.raises(InvalidArgument, match="two spans claim"):
        Target(letters, PROMPT, [fixed_tokens({0: "ab", 1: "c"})])
    with pytest.raises(InvalidArgument, match="non-empty mapping"):
        fixed_tokens({})
    with pytest.raises(InvalidArgument, match="token ids, not text"):
        fixed_tokens({0: "a"}).log_potential([PROMPT], ["a"])
    with pytest.raises(InvalidArgument, match="text or token ids"):
        generate(letters, [PROMPT], controls=[ForceTokens({0: 3.5})], max_new_tokens=2)


@pytest.mark.integration
def test_gemma_infill(gemma):
    spans = {3: " dragon"}
    target = Target(gemma, "Once upon a time", [fixed_tokens(spans)], max_new_tokens=10)
    posterior = smc(target, n_particles=8, proposal=[ForceTokens(spans)], seed=0)
    dragon = gemma.encode_continuation(" dragon")
    kept = [s for s, w in zip(posterior.samples, posterior.weights.tolist(), strict=True) if w > 0]
    # Stated rate: every sample with weight carries the fixed token at its position.
    assert kept and all(s.token_ids[3 : 3 + len(dragon)] == dragon for s in kept)
    assert math.isfinite(posterior.log_evidence) and posterior.log_evidence < 0
    assert 1.0 <= posterior.ess <= 8.0


def test_prompt_as_reward_exact_curve(letters):
    strengths = [0.0, 1.0, 2.0, 4.0, 8.0, math.inf]
    points = prompt_as_reward(letters, PROMPT, SPANS, strengths, max_new_tokens=LENGTH, exact=True)
    satisfied = [p.satisfied for p in points]
    hard = enumerate_target(Target(letters, PROMPT, [fixed_tokens(SPANS)], max_new_tokens=LENGTH))
    # λ = 0 is the base: the fraction satisfying is the evidence of the hard condition.
    assert satisfied[0] == pytest.approx(math.exp(hard.log_evidence), rel=1e-6)
    assert satisfied[-1] == pytest.approx(1.0, abs=1e-9) and points[-1].kl_to_conditional == pytest.approx(
        0.0, abs=1e-9
    )
    assert all(a < b for a, b in itertools.pairwise(satisfied))  # closer as λ grows
    for point in points[:-1]:
        # KL(π(·|A) ‖ target_λ) computed from the two distributions directly equals −log target_λ(A).
        soft = enumerate_target(
            Target(letters, PROMPT, [fixed_tokens(SPANS, strength=point.strength)], max_new_tokens=LENGTH)
        )
        kl = sum(p * math.log(p / soft.distribution()[x]) for x, p in hard.distribution().items())
        assert point.kl_to_conditional == pytest.approx(kl, abs=1e-6)
        # and log Z_λ − λ|S| − log Z_A, from the evidences alone.
        assert kl == pytest.approx(soft.log_evidence - 2 * point.strength - hard.log_evidence, abs=1e-6)


def test_prompt_as_reward_sampled_matches_exact(letters):
    strengths = [0.0, 2.0, math.inf]
    exact = prompt_as_reward(letters, PROMPT, SPANS, strengths, max_new_tokens=LENGTH, exact=True)
    sampled = prompt_as_reward(
        letters, PROMPT, SPANS, strengths, max_new_tokens=LENGTH, n=3000, batch_size=500
    )
    for e, s in zip(exact, sampled, strict=True):
        assert s.ess is not None and s.ess > 100
        assert s.satisfied == pytest.approx(e.satisfied, abs=0.04)
        assert s.log_evidence == pytest.approx(e.log_evidence, abs=0.08)
    with pytest.raises(InvalidArgument, match="non-negative"):
        prompt_as_reward(letters, PROMPT, SPANS, [-1.0], exact=True)

"""Conditioning samplers against exact enumeration on the 5-token `tiny-letters` model."""

from __future__ import annotations

import math

import pytest
import torch
from exactness import tv, tv_bound

from steering.condition import (
    Target,
    contains,
    ends_with,
    enumerate_target,
    importance,
    length_between,
    matches,
    rejection,
    smc,
    starts_with,
)
from steering.controls import LogitBias, Regex
from steering.errors import InvalidArgument
from steering.models import load_model

PROMPT = "ab"
LENGTH = 3  # 4^3 + 4^2 + 4 + 1 = 85 completions


@pytest.fixture(scope="module")
def letters():
    return load_model("tiny-letters", dtype="float32")


def test_enumeration_is_a_distribution(letters):
    exact = enumerate_target(Target(letters, PROMPT, [ends_with("b")], max_new_tokens=LENGTH))
    assert len(exact.completions) == 85
    assert float(exact.log_base.exp().sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(exact.probs.sum()) == pytest.approx(1.0, abs=1e-6)
    assert 0.05 < math.exp(exact.log_evidence) < 0.6  # a condition that is neither certain nor rare
    assert exact.kl == pytest.approx(-exact.log_evidence, abs=1e-9)  # hard condition: KL = −log Z
    assert all(text.endswith("b") for text, p in zip(exact.texts, exact.probs, strict=True) if p > 0)


def test_importance_from_the_base_is_exact_for_a_hard_condition(letters):
    target = Target(letters, PROMPT, [ends_with("b")], max_new_tokens=LENGTH)
    exact = enumerate_target(target)
    posterior = importance(target, n_particles=4000, seed=0, batch_size=500)
    # Bound at n = 4000, seed 0: the standard error of this estimator is ≈ 0.02 in TV here.
    assert tv(posterior, exact) < tv_bound(posterior, exact)
    assert posterior.log_evidence == pytest.approx(exact.log_evidence, abs=0.05)
    assert posterior.kl_estimate == pytest.approx(exact.kl, abs=0.05)
    assert posterior.model_calls == sum(len(s.token_ids) for s in posterior.samples)


def test_rejection_is_exact_and_estimates_the_evidence(letters):
    target = Target(letters, PROMPT, [ends_with("b"), length_between(2, 4)], max_new_tokens=LENGTH)
    exact = enumerate_target(target)
    posterior = rejection(target, n_particles=1500, budget=200_000, seed=0, batch_size=500)
    assert len(posterior.samples) == 1500
    assert all(s.text.endswith("b") and 2 <= len(s.text) <= 4 for s in posterior.samples)
    assert tv(posterior, exact) < tv_bound(posterior, exact)
    assert posterior.log_evidence == pytest.approx(exact.log_evidence, abs=0.08)


def test_soft_potential_importance_and_rejection(letters):
    def a_count(prompts, completions):
        return [float(text.count("a")) for text in completions]

    target = Target(letters, PROMPT, [a_count], beta=0.5, max_new_tokens=LENGTH)
    exact = enumerate_target(target)
    posterior = importance(target, n_particles=4000, seed=1, batch_size=500)
    assert tv(posterior, exact) < tv_bound(posterior, exact)
    # exp(2·count) has a heavy right tail, so log Ẑ is noisier than for a hard condition.
    assert posterior.log_evidence == pytest.approx(exact.log_evidence, abs=0.15)
    assert posterior.kl_estimate == pytest.approx(exact.kl, abs=0.15)
    accepted = rejection(target, n_particles=800, log_bound=LENGTH / 0.5, seed=2, batch_size=500)
    assert tv(accepted, exact) < tv_bound(accepted, exact)


def test_pool_proposal_needs_its_weights(letters):
    target = Target(letters, PROMPT, [ends_with("b")], max_new_tokens=LENGTH)
    exact = enumerate_target(target)
    posterior = importance(target, n_particles=3000, proposal=[Regex(r"[abc ]*b")], seed=0, batch_size=500)
    # The pool only proposes valid text; a row cut at the length limit mid-way gets weight 0.
    finished = [s for s in posterior.samples if s.stop_reason != "unfinished"]
    assert finished and all(s.text.endswith("b") for s in finished)
    assert tv(posterior, exact) < tv_bound(posterior, exact)
    # The same samples with the weights ignored: masking alone is not the conditional.
    flat = type(posterior)(
        posterior.samples,
        torch.zeros(len(posterior.samples), dtype=torch.float64),
        posterior.log_evidence,
        posterior.log_potentials,
        posterior.model_calls,
        "unweighted",
    )
    assert tv(flat, exact) > 3 * tv_bound(flat, exact)
    assert posterior.ess < len(posterior.samples)


def test_tweak_proposal_with_weights(letters):
    target = Target(letters, PROMPT, [contains("cc")], max_new_tokens=LENGTH)
    exact = enumerate_target(target)
    posterior = importance(target, n_particles=3000, proposal=[LogitBias({"c": 2.0})], seed=3, batch_size=500)
    assert tv(posterior, exact) < tv_bound(posterior, exact)
    assert posterior.log_evidence == pytest.approx(exact.log_evidence, abs=0.08)


def test_impossible_condition_is_reported_not_faked(letters):
    target = Target(letters, PROMPT, [starts_with("zzz")], max_new_tokens=LENGTH)
    posterior = rejection(target, n_particles=4, budget=400, seed=0)
    assert not posterior.found and posterior.samples == []
    assert posterior.log_evidence == float("-inf")
    assert "no sample satisfied the condition after" in posterior.summary()
    assert 400 <= posterior.model_calls < 400 + 8 * LENGTH
    assert len(posterior.resample(3)) == 0
    weighted = importance(target, n_particles=16, seed=0)
    assert not weighted.found and weighted.ess == 0.0


@pytest.mark.parametrize("beta", [0, -1.0, float("nan"), float("inf")])
def test_beta_must_be_positive(letters, beta):
    with pytest.raises(InvalidArgument, match="β"):
        Target(letters, PROMPT, [lambda p, c: [0.0] * len(c)], beta=beta)


@pytest.mark.parametrize(
    ("reward", "match"),
    [
        (lambda p, c: [float("nan")] * len(c), "not a finite number"),
        (lambda p, c: [1.0], "returned 1 values"),
    ],
)
def test_bad_rewards_are_named(letters, reward, match):
    reward.__name__ = "my_reward"
    target = Target(letters, PROMPT, [reward], max_new_tokens=2)
    with pytest.raises(InvalidArgument, match="my_reward") as error:
        importance(target, n_particles=4)
    assert match in str(error.value)


def test_bad_input(letters, tiny):
    with pytest.raises(InvalidArgument, match="log_bound"):
        rejection(Target(letters, PROMPT, [lambda p, c: [0.0] * len(c)]), n_particles=2)
    with pytest.raises(InvalidArgument, match="completions"):
        enumerate_target(Target(tiny, "hi", [ends_with("a")], max_new_tokens=4))
    with pytest.raises(InvalidArgument, match="regex is not valid"):
        matches("(")
    with pytest.raises(InvalidArgument, match="at least one potential"):
        Target(letters, PROMPT, [])


def test_systematic_resampling_follows_the_weights():
    from steering.condition import systematic_resample

    log_w = torch.tensor([0.0, math.log(3.0), float("-inf"), 0.0])
    counts = torch.zeros(4)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        for index in systematic_resample(log_w, generator):
            counts[index] += 1
    share = counts / counts.sum()
    assert share[2] == 0  # zero weight is never drawn
    assert torch.allclose(share, torch.tensor([0.2, 0.6, 0.0, 0.2]), atol=0.02)


@pytest.mark.parametrize("threshold", [0.0, 0.5, 1.0])
def test_smc_suffix_lookahead_is_exact(letters, threshold):
    target = Target(letters, PROMPT, [ends_with("b")], max_new_tokens=LENGTH)
    exact = enumerate_target(target)
    runs = [smc(target, n_particles=400, ess_threshold=threshold, seed=seed) for seed in range(3)]
    # The evidence estimate is unbiased; three runs of 400 particles land within a stated tolerance.
    mean_z = sum(math.exp(r.log_evidence) for r in runs) / len(runs)
    assert math.log(mean_z) == pytest.approx(exact.log_evidence, abs=0.05)
    merged = _merge(runs)
    assert all(s.text.endswith("b") for s, w in zip(merged.samples, merged.weights, strict=True) if w > 0)
    assert tv(merged, exact) < tv_bound(merged, exact)


def test_smc_suffix_with_a_longer_suffix_and_other_potentials(letters):
    target = Target(letters, PROMPT, [ends_with("ca"), length_between(0, 3)], max_new_tokens=LENGTH)
    exact = enumerate_target(target)
    merged = _merge([smc(target, n_particles=300, seed=seed) for seed in range(3)])
    assert tv(merged, exact) < tv_bound(merged, exact)


def test_smc_plain_with_prefix_pruning_and_soft_potential(letters):
    target = Target(letters, PROMPT, [starts_with("c")], max_new_tokens=LENGTH)
    exact = enumerate_target(target)
    merged = _merge([smc(target, n_particles=500, seed=seed) for seed in range(3)])
    assert tv(merged, exact) < tv_bound(merged, exact)
    assert all(s.text.startswith("c") for s, w in zip(merged.samples, merged.weights, strict=True) if w > 0)

    def a_count(prompts, completions):
        return [float(text.count("a")) for text in completions]

    soft = Target(letters, PROMPT, [a_count], beta=0.5, max_new_tokens=LENGTH)
    exact_soft = enumerate_target(soft)
    merged_soft = _merge([smc(soft, n_particles=500, seed=seed) for seed in range(3)])
    assert tv(merged_soft, exact_soft) < tv_bound(merged_soft, exact_soft)


def test_smc_refuses_stateful_proposals_and_huge_particle_counts(letters):
    target = Target(letters, PROMPT, [ends_with("b")], max_new_tokens=LENGTH)
    with pytest.raises(InvalidArgument, match="stateless logit controls"):
        smc(target, n_particles=4, proposal=[Regex("b")])
    with pytest.raises(InvalidArgument, match="GiB"):
        smc(target, n_particles=10_000_000)


def _merge(runs):
    """Pool independent runs: each run's weights scaled by its own evidence estimate."""
    from steering.condition import Posterior

    samples = [s for r in runs for s in r.samples]
    log_w = torch.cat([r.log_weights for r in runs])
    log_phi = torch.cat([r.log_potentials for r in runs])
    return Posterior(
        samples, log_w, float(torch.logsumexp(log_w, 0)) - math.log(len(runs)), log_phi, 0, "merged"
    )


@pytest.mark.integration
def test_gemma_smc_stories_end_with_the_phrase(gemma):
    phrase = " happily ever after."
    target = Target(gemma, "Once upon a time", [ends_with(phrase)], max_new_tokens=12)
    posterior = smc(target, n_particles=4, seed=0)
    assert posterior.found and math.isfinite(posterior.log_evidence) and posterior.log_evidence < 0
    assert posterior.ess >= 1.0
    stories = posterior.resample(16, seed=0)
    # Stated rate: every resampled story ends with the phrase (candidates close with it exactly).
    assert sum(s.text.endswith(phrase) for s in stories) == 16
    # Rejection from the base with the same budget of model calls finds (almost) nothing.
    baseline = rejection(target, n_particles=1, budget=posterior.model_calls // 2, seed=0, batch_size=4)
    assert len(baseline.samples) <= 1

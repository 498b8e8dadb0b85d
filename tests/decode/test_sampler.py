"""The sampler draws from exactly the distribution it reports (chi-square against the softmax)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import chisquare

from steering.controls import Greedy, MinP, Temperature, TopK, TopP
from steering.decode import generate, sample_inverse_cdf, step_kl


def _chi_square_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """p-value of observed token counts against probabilities; the tail is pooled so bins expect ≥ 5."""
    expected = probs * counts.sum()
    big = expected >= 5
    observed_bins = torch.cat([counts[big], counts[~big].sum()[None]])
    expected_bins = torch.cat([expected[big], expected[~big].sum()[None]])
    keep = expected_bins > 0
    observed_bins, expected_bins = observed_bins[keep], expected_bins[keep]
    expected_bins = expected_bins * observed_bins.sum() / expected_bins.sum()
    return float(chisquare(observed_bins.numpy(), expected_bins.numpy()).pvalue)


def _expected_logq(model, prompt, controls):
    ids = torch.tensor([model.encode(prompt)])
    logits = model.module(input_ids=ids).logits[0, -1].float().log_softmax(-1)
    scores = logits[None]
    for control in controls:
        scores = control(ids, scores)
    return logits, scores.log_softmax(-1)[0]


@pytest.mark.parametrize(
    "controls",
    [
        [],
        [Temperature(0.7)],
        [Temperature(1.8)],
        [TopK(5)],
        [TopP(0.8)],
        [MinP(0.1)],
        [Temperature(1.3), TopP(0.9)],
    ],
    ids=["plain", "temp0.7", "temp1.8", "topk5", "topp0.8", "minp0.1", "temp+topp"],
)
def test_empirical_first_token_matches_softmax(tiny, controls):
    prompt = "Q: hi\nA:"
    _, logq = _expected_logq(tiny, prompt, controls)
    samples = generate(tiny, [prompt], controls=controls, n=3000, max_new_tokens=1, seed=11, batch_size=500)
    counts = torch.bincount(torch.tensor([s.token_ids[0] for s in samples]), minlength=logq.numel()).double()
    probs = logq.double().exp()
    assert counts[probs == 0].sum() == 0, "a token outside the support was sampled"
    p_value = _chi_square_p(counts, probs)
    assert p_value > 1e-3, f"chi-square rejects the sampler: p={p_value:.2e}"
    # And the books record that same distribution.
    for sample in samples[:20]:
        assert sample.logq[0].item() == pytest.approx(logq[sample.token_ids[0]].item(), abs=1e-5)


def test_chi_square_can_fail(tiny):
    """Guard: the same test rejects samples drawn from the wrong distribution (temperature 1 vs 0.5)."""
    prompt = "Q: hi\nA:"
    _, logq = _expected_logq(tiny, prompt, [Temperature(0.5)])
    samples = generate(tiny, [prompt], n=3000, max_new_tokens=1, seed=11, batch_size=500)
    counts = torch.bincount(torch.tensor([s.token_ids[0] for s in samples]), minlength=logq.numel()).double()
    assert _chi_square_p(counts, logq.double().exp()) < 1e-6


def test_inverse_cdf_never_picks_zero_probability():
    logq = torch.tensor([[float("-inf"), math.log(0.5), float("-inf"), math.log(0.5), float("-inf")]])
    for u in [0.0, 1e-12, 0.25, 0.5, 0.75, 1 - 1e-12]:
        token = sample_inverse_cdf(logq, torch.tensor([u])).item()
        assert token in (1, 3)


def test_step_kl_hand_computed():
    p = torch.tensor([[0.5, 0.25, 0.25]]).log()
    q = torch.tensor([[1.0, 0.0, 0.0]]).log()
    assert step_kl(q, p).item() == pytest.approx(math.log(2), abs=1e-6)
    assert step_kl(p, p).item() == pytest.approx(0.0, abs=1e-7)


def test_greedy_is_argmax_and_point_mass(tiny):
    prompt = "hello"
    logp, _ = _expected_logq(tiny, prompt, [])
    sample = generate(tiny, [prompt], controls=[Greedy()], max_new_tokens=1)[0]
    assert sample.token_ids[0] == int(logp.argmax())
    assert sample.logq[0].item() == 0.0
    assert sample.kl == pytest.approx(-logp.max().item(), abs=1e-5)


@pytest.mark.parametrize("block", [1, 3, 4, 1024])
def test_inverse_cdf_two_level_matches_probabilities(block):
    """On an even grid of uniforms the share of each token equals its probability (blocks of any size)."""
    probs = torch.tensor([0.05, 0.0, 0.2, 0.1, 0.0, 0.3, 0.15, 0.0, 0.2, 0.0], dtype=torch.float64)
    logq = probs.log().float()[None].repeat(2000, 1)
    uniforms = (torch.arange(2000, dtype=torch.float64) + 0.5) / 2000
    tokens = sample_inverse_cdf(logq, uniforms.float(), block=block)
    share = torch.bincount(tokens, minlength=10).double() / 2000
    assert torch.allclose(share, probs, atol=1e-3)


class _Opaque:
    """The same control with its fast paths off (`masks_only`, `offers_token_pools`): the general path."""

    masks_only = False
    offers_token_pools = False

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, input_ids, scores):
        return self.inner(input_ids, scores)

    def __getattr__(self, name):  # start, is_complete, restart_row … of a grammar
        return getattr(self.inner, name)


def test_mask_only_fast_path_equals_the_general_path(tiny):
    from steering.controls import MinP, TopK, TopP

    for controls in ([TopK(12)], [TopP(0.8), MinP(0.05)]):
        fast = generate(tiny, ["hello", "a b c"], controls=controls, n=3, max_new_tokens=10, seed=4)
        slow = generate(
            tiny, ["hello", "a b c"], controls=[_Opaque(c) for c in controls], n=3, max_new_tokens=10, seed=4
        )
        for a, b in zip(fast, slow, strict=True):
            assert a.token_ids == b.token_ids
            assert torch.allclose(a.logq, b.logq, atol=1e-5)
            assert torch.allclose(a.step_kl, b.step_kl, atol=1e-5)
            assert float(a.step_kl.sum()) > 0  # the masks removed mass: the test compares real numbers


@pytest.mark.parametrize("sparse_share", [0.0, 1 / 8, 1.0])  # every pool a bool row; the default; all ids
def test_grammar_token_pools_equal_the_general_path(tiny, monkeypatch, sparse_share):
    """Grammars hand the engine each row's allowed ids; sampling from them equals masking the scores."""
    from steering.controls import Lark, Regex, grammar_rows

    monkeypatch.setattr(grammar_rows, "SPARSE_SHARE", sparse_share)
    cases = (
        [Regex("[a-e ]{2,9}")],
        [Lark('start: "(" item ("," item)* ")"\nitem: "a" | "b" | "ab"')],
        [Regex("[a-z ]+"), Regex("(ab|b|a|c| )*")],  # two pools: their intersection
    )
    for controls in cases:
        fast = generate(tiny, ["hello", "a b c"], controls=controls, n=3, max_new_tokens=10, seed=4)
        slow = generate(
            tiny, ["hello", "a b c"], controls=[_Opaque(c) for c in controls], n=3, max_new_tokens=10, seed=4
        )
        for a, b in zip(fast, slow, strict=True):
            assert a.token_ids == b.token_ids
            assert a.stop_reason == b.stop_reason
            assert torch.allclose(a.logq, b.logq, atol=1e-5)
            assert torch.allclose(a.step_kl, b.step_kl, atol=1e-5)
        assert sum(float(s.step_kl.sum()) for s in fast) > 0

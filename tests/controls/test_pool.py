"""Token pools keep exact books: reweighted masked samples reproduce p(x | constraint); plain masking does not."""

from __future__ import annotations

import pytest
import torch

from steering.controls import Choices, classify
from steering.decode import generate
from steering.errors import InvalidArgument

PROMPT = "Label:"


def _label_distributions(model, labels, *, n=2000, seed=0):
    samples = generate(
        model, [PROMPT], controls=[Choices(labels)], n=n, max_new_tokens=12, seed=seed, batch_size=500
    )
    assert all(s.stop_reason == "stop" for s in samples)
    index = torch.tensor([labels.index(s.text) for s in samples])
    plain = torch.bincount(index, minlength=len(labels)).double() / len(index)
    weights = samples.log_weight.softmax(0)
    weighted = torch.zeros(len(labels), dtype=torch.float64).index_add_(0, index, weights)
    return plain, weighted


@pytest.mark.parametrize("labels", [[" yes", " no", " maybe so", " sure"], [" aa", " ab", " b", " ccc"]])
def test_reweighted_masking_is_exact_and_plain_masking_is_not(tiny, labels):
    # Exact enumeration: the constraint's support is the label set; classify scores every member.
    exact = classify(tiny, PROMPT, labels).probs
    plain, weighted = _label_distributions(tiny, labels)
    tv_weighted = 0.5 * (weighted - exact).abs().sum().item()
    tv_plain = 0.5 * (plain - exact).abs().sum().item()
    # Bound: 2000 samples at seed 0; self-normalised importance sampling error is well under 0.03 here.
    assert tv_weighted < 0.03, (exact, weighted)
    assert tv_plain > 0.05, (exact, plain)  # the gap the weights correct


def test_pool_weight_is_the_kept_mass(tiny):
    labels = [" yes", " no", " maybe so", " sure"]
    sample = generate(tiny, [PROMPT], controls=[Choices(labels)], max_new_tokens=12, seed=3)[0]
    ids = torch.tensor([tiny.encode(PROMPT)])
    logp = tiny.module(input_ids=ids).logits[0, -1].float().log_softmax(-1)
    first_tokens = sorted({tiny.encode_continuation(label)[0] for label in labels})
    log_z = torch.logsumexp(logp[first_tokens], 0)
    assert (sample.logp_base[0] - sample.logq[0]).item() == pytest.approx(log_z.item(), abs=1e-5)


def test_choices_unfinished_when_budget_too_small(tiny):
    samples = generate(
        tiny, [PROMPT], controls=[Choices([" maybe so", " absolutely"])], n=4, max_new_tokens=3
    )
    assert {s.stop_reason for s in samples} == {"unfinished"}


def test_choices_prefix_labels_need_end(tiny):
    with pytest.raises(InvalidArgument, match="token prefix"):
        generate(tiny, [PROMPT], controls=[Choices([" no", " nope"])], max_new_tokens=8)
    samples = generate(tiny, [PROMPT], controls=[Choices([" no", " nope"], end="\n")], n=20, max_new_tokens=8)
    assert all(s.text in (" no\n", " nope\n") for s in samples)


def test_choices_refuses_labels_the_tokenizer_cannot_spell(tiny_letters):
    # tiny-letters spells only a, b, c and space: " xa" would be sampled as some other text, never as " xa".
    with pytest.raises(InvalidArgument, match=r"cannot spell the label\(s\) \[' xa'\]"):
        generate(tiny_letters, ["ab"], controls=[Choices([" a", " xa"])], max_new_tokens=4)


@pytest.mark.parametrize(("labels", "message"), [([], "non-empty"), ([" a", " a"], "distinct")])
def test_choices_bad_labels(labels, message):
    with pytest.raises(InvalidArgument, match=message):
        Choices(labels)


@pytest.mark.integration
def test_choices_on_gemma(gemma):
    labels = [" positive", " negative", " neutral"]
    prompt = "Review: I loved every minute of this film.\nSentiment:"
    samples = generate(gemma, [prompt], controls=[Choices(labels)], n=16, max_new_tokens=6)
    assert all(s.text in labels for s in samples)
    exact = classify(gemma, prompt, labels)
    assert exact.best == " positive"


def test_resample_by_weights_matches_exact(tiny):
    labels = [" yes", " no", " maybe so", " sure"]
    exact = classify(tiny, PROMPT, labels).probs
    samples = generate(tiny, [PROMPT], controls=[Choices(labels)], n=2000, max_new_tokens=12, batch_size=500)
    resampled = samples.resample(seed=1)
    share = (
        torch.bincount(torch.tensor([labels.index(s.text) for s in resampled]), minlength=4).double() / 2000
    )
    assert 0.5 * (share - exact).abs().sum().item() < 0.05
    assert 1.0 <= samples.effective_sample_size() < 2000


def _spans_after_trigger(text: str, trigger: str) -> list[str]:
    return text.split(trigger)[1:]


def test_forced_span_after_trigger_in_prompt_and_text(tiny):
    from steering.controls import ForcedSpan

    allowed = ["Paris]", "London]", "New York]"]
    span = ForcedSpan("[", allowed)
    samples = generate(
        tiny, ["See the page on [", "Links: ["], controls=[span], n=6, max_new_tokens=30, seed=0
    )
    for sample in samples:
        full = sample.prompt + sample.text
        for after in _spans_after_trigger(full, "["):
            # Each span is one allowed string, unless the budget ran out in the middle of it.
            assert any(after.startswith(a) or a.startswith(after) for a in allowed), full
        assert sample.log_weight < 0  # masking kept less than all the mass, and the books say so


def test_forced_span_bad_input(tiny):
    from steering.controls import ForcedSpan

    with pytest.raises(InvalidArgument, match="trigger"):
        ForcedSpan("", ["a"])
    with pytest.raises(InvalidArgument, match="token prefix"):
        generate(tiny, ["["], controls=[ForcedSpan("[", ["Par", "Paris"])], max_new_tokens=3)


@pytest.mark.integration
def test_forced_titles_on_gemma(gemma):
    from steering.controls import ForcedSpan

    allowed = ["Paris]", "London]", "Tokyo]"]
    prompt = "My favourite cities, with links: [Rome](rome.html), ["
    samples = generate(gemma, [prompt], controls=[ForcedSpan("[", allowed)], n=4, max_new_tokens=30, seed=0)
    for sample in samples:
        for after in _spans_after_trigger(sample.text, "["):
            assert any(after.startswith(a) or a.startswith(after) for a in allowed)
        assert any(sample.text.startswith(a) for a in allowed)

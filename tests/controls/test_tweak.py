"""Logit bias and bag-of-words boosts: they move the distribution and the books measure the cost."""

from __future__ import annotations

import math

import pytest
import torch

from steering.controls import BagOfWords, LogitBias, word_first_tokens
from steering.decode import generate
from steering.errors import InvalidArgument


def test_word_means_all_its_tokenisations(tiny):
    firsts = word_first_tokens(tiny.tokenizer, "yes")
    assert firsts == {tiny.encode_continuation("yes")[0], tiny.encode_continuation(" yes")[0]}


def test_bias_shifts_first_token_and_books_are_exact(tiny):
    prompt = "hello"
    target = tiny.encode_continuation("z")[0]
    ids = torch.tensor([tiny.encode(prompt)])
    logp = tiny.module(input_ids=ids).logits[0, -1].float().log_softmax(-1)
    bonus = torch.zeros_like(logp)
    bonus[target] = 9.0
    logq = (logp + bonus).log_softmax(-1)
    exact_kl = float((logq.exp() * (logq - logp)).sum())
    assert logp[target].exp() < 0.01 < 0.3 < logq[target].exp()  # the bias really moves it

    biased = generate(
        tiny, [prompt], controls=[LogitBias({target: 9.0})], n=1000, max_new_tokens=1, seed=0, batch_size=500
    )
    rate = sum(s.token_ids[0] == target for s in biased) / len(biased)
    assert rate == pytest.approx(float(logq[target].exp()), abs=0.05)
    assert biased[0].kl_exact_steps == pytest.approx(exact_kl, abs=1e-5)
    assert float(biased.kl.mean()) == pytest.approx(exact_kl, abs=0.15)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), math.inf * -1])
def test_non_finite_strength_rejected(bad):
    with pytest.raises(InvalidArgument, match="finite"):
        BagOfWords(["happy"], bad)
    with pytest.raises(InvalidArgument, match="finite"):
        LogitBias({"happy": bad})


def test_empty_inputs_rejected():
    with pytest.raises(InvalidArgument):
        BagOfWords([], 1.0)
    with pytest.raises(InvalidArgument):
        LogitBias({})


@pytest.mark.integration
def test_bag_of_words_raises_topic_word_rate_on_gemma(gemma):
    words = ["ocean", "sea", "waves", "beach", "water", "fish", "boat", "sail"]
    prompt = "Yesterday I went for a walk and"

    def hit_rate(samples):
        return sum(any(w in s.text.lower() for w in words) for s in samples) / len(samples)

    base = generate(gemma, [prompt], n=16, max_new_tokens=24, seed=0)
    boosted = generate(gemma, [prompt], controls=[BagOfWords(words, 4.0)], n=16, max_new_tokens=24, seed=0)
    assert hit_rate(boosted) > hit_rate(base)
    assert float(boosted.kl.mean()) > 0

"""The real default model: gemma-270m base, bf16, through the whole engine."""

from __future__ import annotations

import pytest

from steering.controls import QA, Greedy
from steering.decode import generate
from steering.eval import invents_question

pytestmark = pytest.mark.integration


def test_greedy_qa_prompt_says_paris(gemma):
    sample = generate(
        gemma, ["Q: What is the capital of France?\nA:"], controls=[Greedy()], max_new_tokens=16
    )[0]
    assert "Paris" in sample.text


def test_qa_wrapper_stops_before_a_new_question(gemma):
    questions = [
        "What is the capital of France?",
        "What is the capital of Japan?",
        "How many days are in a week?",
    ]
    raw = generate(gemma, questions, controls=[Greedy()], max_new_tokens=40)
    wrapped = generate(gemma, questions, controls=[QA(), Greedy()], max_new_tokens=40)
    # Without the stop sequence the base model runs on and writes "\nQ:"-style new questions or "?".
    assert any(s.stop_reason == "length" for s in raw)
    for sample in wrapped:
        assert sample.stop_reason == "stop", sample.text
        assert "\nQ:" not in sample.text
        assert not invents_question(sample.text)
    # The base books are the model on the raw question: rescoring must give finite, negative numbers.
    for sample in wrapped:
        assert (sample.logp_base <= 0).all() and sample.logp_base.isfinite().all()
        assert sample.kl > 0  # greedy is a point mass: KL = −Σ log p_base > 0


def test_sampling_books_on_gemma(gemma):
    samples = generate(gemma, ["Once upon a time"], n=4, max_new_tokens=12, seed=1)
    for sample in samples:
        assert (sample.logq == sample.logp_base).all()
    texts = samples.texts
    assert len(set(texts)) > 1

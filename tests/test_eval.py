"""Metrics and the built-in question set."""

from __future__ import annotations

import pytest

from steering.decode import generate
from steering.eval import (
    builtin_demonstrations,
    builtin_questions,
    distinct_n,
    first_answer,
    invents_question,
    is_correct,
    longest_repeated_ngram,
    normalise,
    summarise,
)


def test_question_set_is_large_and_well_formed():
    questions = builtin_questions()
    assert len(questions) >= 40
    assert len({q.question for q in questions}) == len(questions)
    assert all(q.answers and all(a.strip() for a in q.answers) for q in questions)
    demo_prompts = {p for p, _ in builtin_demonstrations()}
    assert not demo_prompts & {q.question for q in questions}


def test_normalised_containment():
    assert normalise("  Paris,  France! ") == "paris france"
    assert is_correct(" The capital is Paris.", ["Paris"])
    assert is_correct(" fifty-six", ["fifty-six"])
    assert not is_correct(" Parisian food", ["Paris"])  # whole words only
    assert not is_correct(" I don't know.\nParis", ["Paris"])  # first line only
    assert first_answer("\n\n  Tokyo.\nMore") == "Tokyo."


def test_invented_questions():
    assert invents_question(" Paris.\nQ: What is the capital of Spain?")
    assert invents_question(" What is the capital of Germany?")
    assert invents_question("Paris\nQuestion 2: next")
    assert not invents_question(" Paris is the capital.")


def test_repetition_metrics():
    assert distinct_n("a b c d", 2) == 1.0
    assert distinct_n("a b a b a b", 2) == pytest.approx(2 / 5)
    assert distinct_n("a", 2) is None
    assert longest_repeated_ngram("the cat sat the cat sat") == 3
    assert longest_repeated_ngram("all different words") == 0


def test_summarise_counts(tiny):
    samples = generate(tiny, ["hello", "hi"], n=2, max_new_tokens=5, stop=["e"])
    summary = summarise(samples, answers=[["zzz"], ["yyy"]])
    assert summary.samples == 4
    assert summary.accuracy == 0.0
    assert 0.0 <= summary.stop_rate <= 1.0
    assert summary.mean_kl == 0.0

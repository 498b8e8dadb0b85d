"""ModelJudge: exact label probabilities (as `classify`), both orders, batching, adapters, real models."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from judge_cases import CORRECT, PAIRS, load_chat_tiny

from steering.controls import Adapter, classify
from steering.errors import InvalidArgument
from steering.feedback.constitution import Example, Principle
from steering.feedback.judges import ModelJudge, pairwise_text, rating_text


@pytest.fixture(scope="module")
def chat_tiny():
    return load_chat_tiny()


@pytest.mark.parametrize("chat", [False, True])
def test_model_judge_probabilities_are_classify_s(chat, tiny, chat_tiny):
    """Batched single-token reads equal `classify`'s exact per-label scoring, in both orders."""
    model = chat_tiny if chat else tiny
    judge = ModelJudge(model, batch_size=3)
    labels = ["A", "B"] if chat else [" A", " B"]
    judgments = judge.pairwise(PAIRS, CORRECT)
    for pair, judgment in zip(PAIRS, judgments, strict=True):
        shown_a = classify(
            model, judge.render(pairwise_text(CORRECT, pair.prompt, pair.a, pair.b), "pairwise"), labels
        )
        shown_b = classify(
            model, judge.render(pairwise_text(CORRECT, pair.prompt, pair.b, pair.a), "pairwise"), labels
        )
        assert judgment.p_a_by_order[0] == pytest.approx(float(shown_a.probs[0]), abs=1e-5)
        assert judgment.p_a_by_order[1] == pytest.approx(float(shown_b.probs[1]), abs=1e-5)
        mass = (shown_a.log_scores.exp().sum() + shown_b.log_scores.exp().sum()) / 2
        assert judgment.label_mass == pytest.approx(float(mass), rel=1e-4)
    digits = [str(k) for k in range(1, 8)] if chat else [f" {k}" for k in range(1, 8)]
    rating = judge.rate(["What is 2 + 2?"], ["4"], CORRECT)[0]
    exact = classify(model, judge.render(rating_text(CORRECT, "What is 2 + 2?", "4"), "rating"), digits)
    assert rating.probs == pytest.approx([float(p) for p in exact.probs], abs=1e-5)
    assert rating.label_mass == pytest.approx(float(exact.log_scores.exp().sum()), rel=1e-4)


def test_multi_token_labels_take_the_exact_path(tiny):
    """Labels of several tokens are scored whole (the logprobs path), matching classify."""
    judge = ModelJudge(tiny)
    prompt = judge.render("Pick one.", "pairwise")
    labels = [" Answer one", " Answer two"]
    probs, mass = judge.label_probs([prompt, prompt], labels)
    exact = classify(tiny, prompt, labels)
    assert probs[0].tolist() == pytest.approx(exact.probs.tolist(), abs=1e-6)
    assert float(mass[1]) == pytest.approx(float(exact.log_scores.exp().sum()), rel=1e-5)


def test_labels_after_a_shared_prefix_take_two_passes_and_the_same_numbers(tiny):
    """ " Answer one" / " Answer two": the shared " Answer" once, then one distribution (exact as classify)."""
    from steering.controls.classify import label_token_ids
    from steering.feedback.model_judge import shared_prefix

    judge = ModelJudge(tiny, batch_size=2)
    labels = [f" {k}" for k in range(1, 8)]
    ids = label_token_ids(tiny, labels, end=None)
    assert shared_prefix(ids) and all(len(i) == len(ids[0]) for i in ids), ids  # the path under test
    prompts = [judge.render("Pick one.", "pairwise"), judge.render("Pick another one, please.", "pairwise")]
    probs, mass = judge.label_probs(prompts, labels)
    for row, prompt in enumerate(prompts):
        exact = classify(tiny, prompt, labels)
        assert probs[row].tolist() == pytest.approx(exact.probs.tolist(), abs=1e-6)
        assert float(mass[row]) == pytest.approx(float(exact.log_scores.exp().sum()), rel=1e-4)
    assert shared_prefix([[1, 2], [1, 3]]) == [1] and shared_prefix([[1, 2], [4, 3]]) == []
    assert shared_prefix([[1], [2]]) == [] and shared_prefix([[1, 2], [1, 2, 3]]) == []


def test_batch_size_does_not_change_the_numbers(tiny):
    one = ModelJudge(tiny, batch_size=1).pairwise(PAIRS, CORRECT)
    many = ModelJudge(tiny, batch_size=8).pairwise(PAIRS, CORRECT)
    for a, b in zip(one, many, strict=True):
        assert a.p_a_by_order == pytest.approx(b.p_a_by_order, abs=1e-5)


def test_chat_and_base_prompts_differ(tiny, chat_tiny):
    assert ModelJudge(chat_tiny).chat and not ModelJudge(tiny).chat
    assert ModelJudge(chat_tiny).render("q", "pairwise").startswith("<user>q")
    assert ModelJudge(tiny).render("q", "pairwise").endswith("The better answer is Answer")
    with_examples = Principle("p", "Be right.", (Example("Q1", "good", "bad"),))
    assert "A better answer: good" in pairwise_text(with_examples, "Q", "x", "y")


def test_critiques_are_sampled_reproducibly(tiny):
    judge = ModelJudge(tiny, critique_tokens=6)
    first = judge.critique(["What is 2 + 2?"] * 2, ["5", "5"], CORRECT, seed=3)
    assert first == judge.critique(["What is 2 + 2?"] * 2, ["5", "5"], CORRECT, seed=3)
    assert all(isinstance(text, str) for text in first)


def test_an_adapter_changes_the_judge_and_is_off_afterwards(tiny, tmp_path: Path):
    from steering.train.adapters import add_lora, remove_adapter, save_adapter

    params = add_lora(tiny, "judge", rank=4, alpha=8, dropout=0.0)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for param in params:
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    save_adapter(tiny, "judge", tmp_path / "adapter")
    remove_adapter(tiny, "judge")
    plain = ModelJudge(tiny).pairwise(PAIRS[:1], CORRECT)[0]
    adapted_judge = ModelJudge(tiny, adapter=Adapter(tmp_path / "adapter"))
    adapted = adapted_judge.pairwise(PAIRS[:1], CORRECT)[0]
    assert adapted.p_a_by_order != pytest.approx(plain.p_a_by_order, abs=1e-4)
    assert adapted_judge.name.startswith("tiny-random+adapter_")
    again = ModelJudge(tiny).pairwise(PAIRS[:1], CORRECT)[0]  # the adapter is off outside the judge
    assert again.p_a_by_order == pytest.approx(plain.p_a_by_order, abs=1e-6)


def test_bad_settings_are_refused(tiny):
    with pytest.raises(InvalidArgument, match="batch_size"):
        ModelJudge(tiny, batch_size=0)
    with pytest.raises(InvalidArgument, match="temperature"):
        ModelJudge(tiny, temperature=0.0)


# ---------------------------------------------------------------------------------------------- real judges


@pytest.mark.integration
def test_smollm2_judge_puts_its_mass_on_the_labels(smollm):
    """With its chat template the instruct model answers with a letter / a digit: the labels carry real mass."""
    judge = ModelJudge(smollm)
    assert judge.chat
    judgments = judge.pairwise(PAIRS, CORRECT)
    assert all(j.label_mass > 0.05 for j in judgments)
    assert judgments[2].p_a == pytest.approx(0.5, abs=1e-9)
    ratings = judge.rate(["What is 2 + 2?"], ["4"], CORRECT)
    assert ratings[0].label_mass > 0.01 and math.isfinite(ratings[0].value)
    assert judge.critique(["What is 2 + 2?"], ["5"], CORRECT)[0].strip()


@pytest.mark.integration
def test_gemma_base_judge_reads_a_prompt(gemma32):
    judge = ModelJudge(gemma32)
    assert not judge.chat
    judgments = judge.pairwise(PAIRS[:1], CORRECT)
    assert judgments[0].label_mass > 0.05

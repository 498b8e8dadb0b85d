"""GeneratingJudge: greedy replies, the label parsed from the text in both orders, parse failures counted."""

from __future__ import annotations

import pytest
from judge_cases import CORRECT, PAIRS

from steering.controls import Greedy
from steering.decode import generate
from steering.errors import InvalidArgument
from steering.feedback.judges import (
    GeneratingJudge,
    ModelJudge,
    Pair,
    PairwiseJudgment,
    pairwise_text,
    parse_choice,
    parse_rating,
)


@pytest.mark.parametrize(
    ("reply", "label"),
    [
        ("A", "A"),
        (" A.\n\nThe answer is", "A"),
        ("A: 4", "A"),
        ("Answer B is better", "B"),
        ("2", "B"),
        ("The answer is 1.", "A"),
        ("(B)", "B"),
        ("Both are fine", None),
        ("ABBA", None),
        ("12 apples", None),
        ("", None),
    ],
)
def test_a_choice_is_the_first_stand_alone_label(reply, label):
    assert parse_choice(reply) == label


@pytest.mark.parametrize(
    ("reply", "digit"),
    [("5", 5), ("Rating: 6/7", 6), ("I'd say 3.", 3), ("8", None), ("10 out of 10", None), ("good", None)],
)
def test_a_rating_is_the_first_stand_alone_digit_1_to_7(reply, digit):
    assert parse_rating(reply) == digit


def test_replies_are_the_model_s_greedy_text(tiny):
    judge = GeneratingJudge(ModelJudge(tiny), max_new_tokens=3)
    prompts = [judge.judge.render(pairwise_text(CORRECT, p.prompt, p.a, p.b), "pairwise") for p in PAIRS]
    expected = generate(tiny, prompts, controls=[Greedy()], max_new_tokens=3, score_base=False)
    assert judge.write(prompts) == [sample.text for sample in expected]
    assert judge.write([]) == []


def test_both_orders_map_the_letters_back_to_the_answers(tiny):
    """Shown first, A is "A"; shown second, A is "B"; no label is ½ and a parse failure."""
    judge = GeneratingJudge(ModelJudge(tiny))
    canned = iter([["A", "A", "B", "Answer A", "I cannot say", "B"]])
    judge.write = lambda prompts: next(canned)  # type: ignore[method-assign]
    first_wins, b_wins, half = judge.pairwise([Pair("q", "x", "y")] * 3, CORRECT)
    assert first_wins == PairwiseJudgment(0.5, (1.0, 0.0), 1.0)
    assert not first_wins.consistent and first_wins.p_first == 1.0
    assert b_wins == PairwiseJudgment(0.0, (0.0, 0.0), 1.0) and b_wins.choice == "b" and b_wins.consistent
    assert half == PairwiseJudgment(0.75, (0.5, 1.0), 0.5) and half.choice == "a"
    assert (judge.replies, judge.parse_failures) == (6, 1)
    assert judge.parse_failure_rate == pytest.approx(1 / 6)


def test_a_rating_is_the_parsed_digit_or_uniform(tiny):
    judge = GeneratingJudge(ModelJudge(tiny))
    judge.write = lambda prompts: ["6", "no idea"][: len(prompts)]  # type: ignore[method-assign]
    six, unknown = judge.rate(["q", "q"], ["x", "y"], CORRECT)
    assert six.value == 6.0 and six.probs[5] == 1.0 and sum(six.probs) == 1.0 and six.label_mass == 1.0
    assert unknown.value == pytest.approx(4.0) and unknown.probs == pytest.approx([1 / 7] * 7)
    assert unknown.label_mass == 0.0 and (judge.replies, judge.parse_failures) == (2, 1)


def test_critiques_are_the_model_judge_s(tiny):
    reader = ModelJudge(tiny, critique_tokens=5)
    judge = GeneratingJudge(reader)
    assert judge.critique(["What is 2 + 2?"], ["5"], CORRECT, seed=2) == reader.critique(
        ["What is 2 + 2?"], ["5"], CORRECT, seed=2
    )


def test_the_name_says_how_it_answers_and_bad_settings_are_refused(tiny):
    assert GeneratingJudge(ModelJudge(tiny)).name == "tiny-random+generate"
    assert (
        GeneratingJudge(ModelJudge(tiny)).parse_failure_rate
        != GeneratingJudge(ModelJudge(tiny)).parse_failure_rate
    )
    with pytest.raises(InvalidArgument, match="max_new_tokens"):
        GeneratingJudge(ModelJudge(tiny), max_new_tokens=0)


@pytest.mark.integration
def test_smollm2_writes_parseable_answers(smollm):
    """The instruct model, in its chat template, answers with a letter that can be parsed."""
    judge = GeneratingJudge(ModelJudge(smollm))
    judgments = judge.pairwise(PAIRS, CORRECT)
    assert judge.replies == 6 and judge.parse_failures <= 1
    assert all(value in (0.0, 0.5, 1.0) for j in judgments for value in j.p_a_by_order)
    assert judgments[2].p_a == 0.5  # identical answers: the same reply to the same question
    rating = judge.rate(["What is 2 + 2?"], ["4"], CORRECT)[0]
    assert 1.0 <= rating.value <= 7.0 and judge.replies == 7

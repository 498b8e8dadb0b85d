"""Programmatic judges (VADER, regex, exact answer, longer answer): they judge what they say they judge."""

from __future__ import annotations

import pytest
from judge_cases import ANSWERS, CORRECT, PAIRS

from steering.errors import InvalidArgument
from steering.feedback.judges import Pair, exact_answer_judge, longer_answer_judge, regex_judge, vader_judge


def test_programmatic_judges_judge_what_they_say():
    vader = vader_judge().pairwise(
        [Pair("q", "What a wonderful, happy day!", "This is awful and sad.")], CORRECT
    )[0]
    assert (
        vader.choice == "a" and vader.p_a > 0.8 and vader.consistent and vader.p_first == pytest.approx(0.5)
    )
    assert (
        vader_judge(prefer="negative").pairwise([Pair("q", "I love it", "I hate it")], CORRECT)[0].choice
        == "b"
    )
    exact = exact_answer_judge(ANSWERS).pairwise(PAIRS[:2], CORRECT)
    assert [j.p_a for j in exact] == [1.0, 1.0]
    assert (
        exact_answer_judge(ANSWERS).rate(["What is 2 + 2?"] * 2, ["Four.\nFive?", "5\n4"], CORRECT)[0].value
        == 7.0
    )
    assert exact_answer_judge(ANSWERS).rate(["What is 2 + 2?"], ["5\n4"], CORRECT)[0].value == 1.0
    assert regex_judge(r"^\w+$").pairwise([Pair("q", "one", "two words")], CORRECT)[0].choice == "a"
    longer = longer_answer_judge().pairwise([Pair("q", "short", "a much longer answer")], CORRECT)[0]
    assert longer.choice == "b"
    rating = vader_judge().rate(["q"], ["neutral"], CORRECT)[0]
    assert rating.value == pytest.approx(4.0) and rating.probs[3] == pytest.approx(1.0)


def test_programmatic_judges_refuse_bad_input():
    with pytest.raises(InvalidArgument, match="no accepted answers"):
        exact_answer_judge(ANSWERS).rate(["Unknown question?"], ["x"], CORRECT)
    with pytest.raises(InvalidArgument, match="not a valid regular expression"):
        regex_judge("(")
    with pytest.raises(InvalidArgument, match=r"(?i)prefer must be"):
        vader_judge(prefer="neutral")

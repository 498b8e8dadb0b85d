"""Programmatic judges: a score in [0, 1] per answer, under the same contract as a model judge.

`ScoreJudge` turns `score(prompt, answer)` into pairwise judgments, ratings and critiques. The
principle's text is not read: the score *is* the principle, which is why these judges can stand in
for people where the truth is known (tests, benchmarks, the RLHF demo). The family: VADER sentiment,
a regular expression, an exact answer, and the longer-answer-wins baseline.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from steering.errors import InvalidArgument
from steering.feedback.constitution import Principle
from steering.feedback.judge_contract import (
    RATING_SCALE,
    Pair,
    PairwiseJudgment,
    Rating,
    check_same_length,
)


@dataclass(frozen=True)
class ScoreJudge:
    """A programmatic judge: `score(prompt, answer)` in [0, 1], the same contract as a model judge.

    P(A ≻ B) = ½ + (s_A − s_B)/2, the same in both orders (no position bias by construction); the
    rating is 1 + 6·s, its distribution split between the two nearest digits so its mean is exact;
    the critique is `explain(prompt, answer, s)`. The principle's text is not read: the score *is*
    the principle, which is why these judges can stand in for people where the truth is known.
    """

    name: str
    score: Callable[[str, str], float]
    explain: Callable[[str, str, float], str]

    def scores(self, prompts: Sequence[str], answers: Sequence[str]) -> list[float]:
        check_same_length(prompts, answers)
        values = [float(self.score(p, a)) for p, a in zip(prompts, answers, strict=True)]
        check_unit_scores(values, what=f"the judge {self.name} scored an answer", fix="clip the score")
        return values

    def pairwise(self, pairs: Sequence[Pair], principle: Principle) -> list[PairwiseJudgment]:
        s_a = self.scores([p.prompt for p in pairs], [p.a for p in pairs])
        s_b = self.scores([p.prompt for p in pairs], [p.b for p in pairs])
        return [
            PairwiseJudgment(0.5 + (a - b) / 2, (0.5 + (a - b) / 2,) * 2)
            for a, b in zip(s_a, s_b, strict=True)
        ]

    def rate(self, prompts: Sequence[str], answers: Sequence[str], principle: Principle) -> list[Rating]:
        return [interpolated_rating(1.0 + 6.0 * s) for s in self.scores(prompts, answers)]

    def critique(
        self, prompts: Sequence[str], answers: Sequence[str], principle: Principle, *, seed: int = 0
    ) -> list[str]:
        values = self.scores(prompts, answers)
        return [self.explain(p, a, s) for p, a, s in zip(prompts, answers, values, strict=True)]


def check_unit_scores(values: Sequence[float | None], *, what: str, fix: str) -> None:
    """Refuse a score outside [0, 1] (None, "no opinion", passes): `what` names who scored what."""
    for value in values:
        if value is not None and not 0.0 <= value <= 1.0:
            raise InvalidArgument(f"{what} outside [0, 1]", received=value, fix=fix)


def interpolated_rating(value: float) -> Rating:
    """A distribution on 1…7 with mean `value`: the mass split between the two nearest digits."""
    low = min(math.floor(value), 6)
    upper = value - low
    probs = [0.0] * len(RATING_SCALE)
    probs[low - 1] = 1.0 - upper
    probs[low] += upper
    return Rating(value, tuple(probs))


@lru_cache(maxsize=1)
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_judge(*, prefer: str = "positive") -> ScoreJudge:
    """VADER sentiment: the more positive (or, `prefer="negative"`, the more negative) answer wins."""
    if prefer not in ("positive", "negative"):
        raise InvalidArgument(
            "prefer must be 'positive' or 'negative'", received=prefer, fix='use "positive"'
        )
    sign = 1.0 if prefer == "positive" else -1.0

    def score(prompt: str, answer: str) -> float:
        compound = float(_vader().polarity_scores(answer)["compound"])  # in [−1, 1]
        return (1.0 + sign * compound) / 2

    def explain(prompt: str, answer: str, value: float) -> str:
        return f"VADER: the answer's sentiment scores {value:.2f} towards {prefer} (0 = opposite, 1 = fully {prefer})."

    return ScoreJudge(f"vader-{prefer}", score, explain)


def regex_judge(pattern: str, *, name: str = "regex") -> ScoreJudge:
    """1 when the answer contains a match of `pattern` (re.search), else 0."""
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise InvalidArgument(
            f"the judge's pattern is not a valid regular expression ({error})",
            received=pattern,
            fix="correct it",
        ) from None

    def explain(prompt: str, answer: str, value: float) -> str:
        return f"The answer {'matches' if value else 'does not match'} /{pattern}/."

    return ScoreJudge(name, lambda _prompt, answer: float(bool(compiled.search(answer))), explain)


def normalise(text: str) -> str:
    """Lower case, anything but letters and digits to spaces, whitespace collapsed (as eval's accuracy)."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def contains_answer(text: str, answers: Sequence[str]) -> bool:
    """An accepted answer appears, as whole words, in the first non-empty line of `text`."""
    line = next((line for line in text.splitlines() if line.strip()), "")
    padded = f" {normalise(line)} "
    return any(f" {normalise(a)} " in padded for a in answers if normalise(a))


def exact_answer_judge(answers: Mapping[str, Sequence[str]], *, name: str = "exact-answer") -> ScoreJudge:
    """1 when the answer's first line contains an accepted answer for its prompt, else 0.

    Raises (when judging):
        InvalidArgument: a prompt has no accepted answers in `answers`.
    """
    known = {prompt.strip(): tuple(values) for prompt, values in answers.items()}

    def accepted(prompt: str) -> tuple[str, ...]:
        if prompt.strip() not in known:
            raise InvalidArgument(
                f"the judge {name} has no accepted answers for this prompt",
                received=prompt[:120],
                fix="give the judge accepted answers for every prompt it judges",
            )
        return known[prompt.strip()]

    def explain(prompt: str, answer: str, value: float) -> str:
        listed = ", ".join(accepted(prompt))
        return f"The answer {'gives' if value else 'does not give'} an accepted answer ({listed})."

    return ScoreJudge(name, lambda prompt, answer: float(contains_answer(answer, accepted(prompt))), explain)


def longer_answer_judge() -> ScoreJudge:
    """The longer-answer-wins baseline: score n / (n + 100) of the answer's n characters."""

    def explain(prompt: str, answer: str, value: float) -> str:
        return f"The answer is {len(answer)} characters long."

    return ScoreJudge("longer-answer", lambda _prompt, answer: len(answer) / (len(answer) + 100.0), explain)

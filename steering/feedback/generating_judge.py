"""The generate-then-parse judge: the model *writes* its answer and the label is parsed from the text.

This is the common way to use a chat model as a judge, and the baseline the log-probability judge
(`ModelJudge`) is measured against. It asks the same fixed question, through the same chat template
or base-model cue, with the same adapter, then decodes a few tokens greedily and parses the first
stand-alone "A" or "B" ("1"/"2" read as A/B) — for a rating, the first digit 1–7. A reply with no label
is counted (`parse_failures`) and read as no answer: P(A ≻ B) = ½ for that shown order, a uniform
rating. Its soft label can only be 0, ¼, ½, ¾ or 1 (two orders, three outcomes each); `label_mass` is
the fraction of its replies that could be parsed, the analogue of the letters' probability mass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from steering.controls.sampling import Greedy
from steering.decode import generate
from steering.errors import InvalidArgument
from steering.feedback.constitution import Principle
from steering.feedback.judge_contract import (
    RATING_SCALE,
    Pair,
    PairwiseJudgment,
    Rating,
    check_same_length,
    pairwise_text,
    rating_text,
)
from steering.feedback.model_judge import ModelJudge

# A label stands alone: not part of a word or a number ("A" in "Answer" or "12" is not one).
_CHOICE = re.compile(r"(?<![A-Za-z0-9])([AB12])(?![A-Za-z0-9])")
_DIGIT = re.compile(r"(?<![0-9])([1-7])(?![0-9])")
_CHOICE_OF = {"A": "A", "1": "A", "B": "B", "2": "B"}
Label = TypeVar("Label", str, int)


def parse_choice(reply: str) -> str | None:
    """'A' or 'B': the first stand-alone A/B (or 1/2, read as A/B) in a reply; None when there is none."""
    found = _CHOICE.search(reply)
    return _CHOICE_OF[found.group(1)] if found else None


def parse_rating(reply: str) -> int | None:
    """The first stand-alone digit 1–7 in a reply; None when there is none."""
    found = _DIGIT.search(reply)
    return int(found.group(1)) if found else None


@dataclass
class GeneratingJudge:
    """A model judge that writes its answer (greedy, a few tokens) and has the label parsed from it.

    Args:
        judge: the `ModelJudge` whose model, adapter, prompt style (chat template or base cue) and
            batch size it uses; its critiques are that judge's.
        max_new_tokens: the most tokens of a reply (a label comes first in a short answer).

    Attributes:
        replies: replies parsed so far (pairwise: two per pair; rating: one per answer).
        parse_failures: of those, the replies in which no label was found.
    """

    judge: ModelJudge
    max_new_tokens: int = 4
    replies: int = field(default=0, init=False)
    parse_failures: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise InvalidArgument(
                "max_new_tokens must be a positive integer", received=self.max_new_tokens, fix="use 4"
            )

    @property
    def name(self) -> str:
        return f"{self.judge.name}+generate"

    @property
    def parse_failure_rate(self) -> float:
        """The fraction of replies with no label (NaN before the first reply)."""
        return self.parse_failures / self.replies if self.replies else float("nan")

    def write(self, prompts: Sequence[str]) -> list[str]:
        """The judge's greedy replies to already rendered prompts, one per prompt."""
        if not prompts:
            return []
        controls: list[object] = [Greedy()]
        if self.judge.adapter is not None:
            controls.append(self.judge.adapter)
        samples = generate(
            self.judge.model,
            list(prompts),
            controls=controls,
            max_new_tokens=self.max_new_tokens,
            batch_size=self.judge.batch_size,
            score_base=False,
        )
        return [sample.text for sample in samples]

    def pairwise(self, pairs: Sequence[Pair], principle: Principle) -> list[PairwiseJudgment]:
        prompts = []
        for pair in pairs:  # row 2i: A shown first; row 2i + 1: B shown first
            for first, second in ((pair.a, pair.b), (pair.b, pair.a)):
                prompts.append(
                    self.judge.render(pairwise_text(principle, pair.prompt, first, second), "pairwise")
                )
        choices = [self.counted(parse_choice(reply)) for reply in self.write(prompts)]
        judgments = []
        for i in range(len(pairs)):
            shown_a, shown_b = choices[2 * i], choices[2 * i + 1]
            # Shown first, A is the letter "A"; shown second, A is the letter "B". No letter: ½.
            a_first = 0.5 if shown_a is None else float(shown_a == "A")
            b_first = 0.5 if shown_b is None else float(shown_b == "B")
            parsed = (shown_a is not None) + (shown_b is not None)
            judgments.append(PairwiseJudgment((a_first + b_first) / 2, (a_first, b_first), parsed / 2))
        return judgments

    def rate(self, prompts: Sequence[str], answers: Sequence[str], principle: Principle) -> list[Rating]:
        check_same_length(prompts, answers)
        texts = [
            self.judge.render(rating_text(principle, p, a), "rating")
            for p, a in zip(prompts, answers, strict=True)
        ]
        ratings = []
        for reply in self.write(texts):
            digit = self.counted(parse_rating(reply))
            if digit is None:  # no answer: the uniform distribution, mean 4, no label mass
                ratings.append(Rating(4.0, (1.0 / len(RATING_SCALE),) * len(RATING_SCALE), 0.0))
            else:
                probs = tuple(float(k == digit) for k in RATING_SCALE)
                ratings.append(Rating(float(digit), probs, 1.0))
        return ratings

    def critique(
        self, prompts: Sequence[str], answers: Sequence[str], principle: Principle, *, seed: int = 0
    ) -> list[str]:
        return self.judge.critique(prompts, answers, principle, seed=seed)

    def counted(self, label: Label | None) -> Label | None:
        """Count one reply, and a parse failure when it had no label."""
        self.replies += 1
        self.parse_failures += label is None
        return label

"""The judges' contract: what every judge answers, in which shapes, to which fixed questions.

Every judge follows one contract, `Judge` (a Protocol, checked by the conformance tests in
tests/feedback/test_judges.py), so the store, the CLI, the benchmarks and RL see one shape:

- `pairwise(pairs, principle)` → one `PairwiseJudgment` per pair: a soft label P(A ≻ B) and the
  hard label, from *both* shown orders. Asking in both orders and averaging cancels a constant
  position bias, and whether the two hard labels agree (swap consistency) measures how much the
  judge is reading the answers at all.
- `rate(prompts, answers, principle)` → one `Rating`: a distribution over the digits 1–7 and its mean.
- `critique(prompts, answers, principle, seed=…)` → text (sampled, for Constitutional AI).

The fixed questions put to model judges (`pairwise_text`, `rating_text`, `critique_text`, and the
cues that end them for base models) live here too, so every model judge asks the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from steering.errors import InvalidArgument
from steering.feedback.constitution import Constitution, Principle

RATING_SCALE = tuple(range(1, 8))  # the 1–7 scale of ratings, as in the store


@dataclass(frozen=True)
class Pair:
    """Two answers to one prompt, to be compared."""

    prompt: str
    a: str
    b: str


def hard_label(p_a: float) -> str:
    """'a' when P(A ≻ B) > ½, 'b' when below, 'tie' at exactly ½ (the store's choice values)."""
    return "a" if p_a > 0.5 else "b" if p_a < 0.5 else "tie"


@dataclass(frozen=True)
class PairwiseJudgment:
    """A judge's verdict on one pair, from both shown orders.

    Attributes:
        p_a: the soft label P(A ≻ B), the mean of the two orders' values.
        p_a_by_order: (P(A ≻ B) with A shown first, P(A ≻ B) with B shown first).
        label_mass: mean over the orders of the probability the two answer labels had before they
            were renormalised (1 for programmatic judges); low mass means the judge would rather say
            something else, and its labels mean little.
    """

    p_a: float
    p_a_by_order: tuple[float, float]
    label_mass: float = 1.0

    @property
    def choice(self) -> str:
        """The hard label of the averaged soft label: 'a', 'b' or 'tie'."""
        return hard_label(self.p_a)

    @property
    def consistent(self) -> bool:
        """Swap consistency: both shown orders give the same hard label."""
        return hard_label(self.p_a_by_order[0]) == hard_label(self.p_a_by_order[1])

    @property
    def p_first(self) -> float:
        """P(the answer shown first wins), averaged over the two orders; ½ for an unbiased judge on equal answers."""
        return (self.p_a_by_order[0] + 1.0 - self.p_a_by_order[1]) / 2


@dataclass(frozen=True)
class Rating:
    """A judge's rating of one answer on the 1–7 scale.

    Attributes:
        value: the expectation Σ k·P(k) over k = 1…7.
        probs: (7,) P(k), renormalised over the seven digits.
        label_mass: the probability the seven digits had before renormalising (1 for programmatic judges).
    """

    value: float
    probs: tuple[float, ...]
    label_mass: float = 1.0


@runtime_checkable
class Judge(Protocol):
    """What every judge does; `name` goes into its annotator id, `judge:<name>:<constitution digest>`."""

    @property
    def name(self) -> str: ...

    def pairwise(self, pairs: Sequence[Pair], principle: Principle) -> list[PairwiseJudgment]:
        """One judgment per pair, from both shown orders."""
        ...

    def rate(self, prompts: Sequence[str], answers: Sequence[str], principle: Principle) -> list[Rating]:
        """One 1–7 rating per (prompt, answer)."""
        ...

    def critique(
        self, prompts: Sequence[str], answers: Sequence[str], principle: Principle, *, seed: int = 0
    ) -> list[str]:
        """One critique per (prompt, answer): how the answer fails the principle (may be sampled)."""
        ...


def annotator_kind(judge: Judge, constitution: Constitution) -> str:
    """The store's annotator kind of a judge reading a constitution: `judge:<name>:<digest>`."""
    return f"judge:{judge.name}:{constitution.digest}"


def check_same_length(prompts: Sequence[str], answers: Sequence[str]) -> None:
    """Refuse a call with a different number of prompts and answers (every judge's `rate`/`critique`)."""
    if len(prompts) != len(answers):
        raise InvalidArgument(
            "a judge needs one answer per prompt",
            received=f"{len(prompts)} prompts and {len(answers)} answers",
            fix="pass two lists of the same length",
        )


# ---------------------------------------------------------------------------------------------- prompts


def examples_block(principle: Principle) -> str:
    """The principle's worked examples, one better/worse pair per paragraph (empty without examples)."""
    lines = []
    for example in principle.examples:
        lines.append(
            f"Example question: {example.prompt}\nA better answer: {example.better}\n"
            f"A worse answer: {example.worse}\n\n"
        )
    return "".join(lines)


def pairwise_text(principle: Principle, prompt: str, first: str, second: str) -> str:
    """The fixed question put to a judge about two answers (first shown as A, second as B)."""
    return (
        "Judge which of two answers to a question better follows a principle.\n\n"
        f"Principle: {principle.text}\n\n{examples_block(principle)}"
        f"Question: {prompt.strip()}\n\nAnswer A: {first.strip()}\n\nAnswer B: {second.strip()}\n\n"
        "Which answer follows the principle better? Reply with one letter, A or B."
    )


def rating_text(principle: Principle, prompt: str, answer: str) -> str:
    """The fixed question put to a judge about one answer."""
    return (
        "Rate how well an answer to a question follows a principle.\n\n"
        f"Principle: {principle.text}\n\n{examples_block(principle)}"
        f"Question: {prompt.strip()}\n\nAnswer: {answer.strip()}\n\n"
        "How well does the answer follow the principle, from 1 (not at all) to 7 (completely)? "
        "Reply with one digit."
    )


def critique_text(principle: Principle, prompt: str, answer: str) -> str:
    """The request for a critique (Constitutional AI's first step)."""
    return (
        f"Principle: {principle.text}\n\nQuestion: {prompt.strip()}\n\nAnswer: {answer.strip()}\n\n"
        "Say in one or two sentences how the answer fails to follow the principle, or say that it follows it."
    )


# Base models get a cue that makes the label the natural next word; chat models answer in their turn.
BASE_CUES = {
    "pairwise": "\n\nThe better answer is Answer",
    "rating": "\n\nRating:",
    "critique": "\n\nCritique:",
}

"""AI judges that read written principles: pairwise preferences, 1–7 ratings and critiques.

Every judge follows one contract, `Judge` (a Protocol, checked by the conformance tests in
tests/feedback/test_judges.py), so the store, the CLI, the benchmarks and RL see one shape:

- `pairwise(pairs, principle)` → one `PairwiseJudgment` per pair: a soft label P(A ≻ B) and the
  hard label, from *both* shown orders. A model judge reads its own probabilities of the two answer
  letters after a fixed prompt, once with A shown first and once with B first, and averages
  P(A ≻ B) over the two orders — which cancels a constant position bias, and whether the two hard
  labels agree (swap consistency) measures how much the judge is reading the answers at all.
- `rate(prompts, answers, principle)` → one `Rating`: the expectation of the judge's distribution
  over the digits 1–7, renormalised over them (and the mass they had before renormalising).
- `critique(prompts, answers, principle, seed=…)` → text (sampled, for Constitutional AI).

Model judges (`ModelJudge`) take any `LanguageModel`, an optional adapter, and either the model's
chat template or a plain prompt for base models. Label probabilities are exact: each label's tokens
are scored teacher-forced by `LanguageModel.logprobs` (as `steering.controls.classify` does),
batched over pairs and orders. Programmatic judges (`ScoreJudge`: VADER sentiment, a regex, an exact
answer, longer-answer-wins) score each answer in [0, 1] and implement the same contract, so they can
stand in for people in tests and benchmarks.

A judge is also a reward (`steering.rewards.RewardFn`): `rating_reward` (the rating expectation) and
`pairwise_reward` (P(completion ≻ a reference answer)). `judge_store` writes judgments into the
feedback store under the annotator kind `judge:<name>:<constitution digest>`, as people's answers.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable

import torch

from steering.controls.adapter import Adapter
from steering.controls.classify import label_token_ids
from steering.controls.context import ChatTemplate
from steering.controls.sampling import Temperature
from steering.decode import generate
from steering.errors import InvalidArgument
from steering.feedback.constitution import Constitution, Principle
from steering.feedback.store import FeedbackStore
from steering.models.language_model import LanguageModel
from steering.rewards import RewardFn

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


# ---------------------------------------------------------------------------------------------- prompts


def _examples_block(principle: Principle) -> str:
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
        f"Principle: {principle.text}\n\n{_examples_block(principle)}"
        f"Question: {prompt.strip()}\n\nAnswer A: {first.strip()}\n\nAnswer B: {second.strip()}\n\n"
        "Which answer follows the principle better? Reply with one letter, A or B."
    )


def rating_text(principle: Principle, prompt: str, answer: str) -> str:
    """The fixed question put to a judge about one answer."""
    return (
        "Rate how well an answer to a question follows a principle.\n\n"
        f"Principle: {principle.text}\n\n{_examples_block(principle)}"
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


# ---------------------------------------------------------------------------------------------- model judge


@dataclass
class ModelJudge:
    """A language model as a judge: exact label probabilities after a fixed prompt.

    Args:
        model: the judge model.
        adapter: a trained adapter to judge with (on while judging, off afterwards).
        chat: wrap the question in the tokenizer's chat template (None: when the tokenizer has one).
        batch_size: prompts scored per forward pass (a pair is two prompts: its two shown orders).
        critique_tokens: the most tokens of a critique.
        temperature: the sampling temperature of critiques.
    """

    model: LanguageModel
    adapter: Adapter | None = None
    chat: bool | None = None
    batch_size: int = 8
    critique_tokens: int = 96
    temperature: float = 0.7

    def __post_init__(self) -> None:
        if self.chat is None:
            self.chat = bool(getattr(self.model.tokenizer, "chat_template", None))
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InvalidArgument(
                "batch_size must be a positive integer", received=self.batch_size, fix="use 8"
            )
        Temperature(self.temperature)  # refuses a bad temperature now, not at the first critique

    @property
    def name(self) -> str:
        return self.model.name + (f"+{self.adapter.key}" if self.adapter is not None else "")

    def render(self, text: str, kind: str) -> str:
        """The judge's input: the chat template around `text`, or `text` plus the base model's cue."""
        if self.chat:
            return ChatTemplate().render(text, tokenizer=self.model.tokenizer)
        return text + BASE_CUES[kind]

    def labels(self, labels: Sequence[str]) -> list[str]:
        """Chat models answer with the bare label; base models continue a cue, so a space comes first."""
        return list(labels) if self.chat else [f" {label}" for label in labels]

    def label_probs(self, prompts: Sequence[str], labels: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, mass): P (N, L) the labels' probabilities renormalised over them; mass (N,) before that.

        Exact, as `steering.controls.classify`: each label's full token sequence is scored
        teacher-forced by `LanguageModel.logprobs`. When every label is one token (the letters and
        digits of the built-in prompts, for the bundled tokenizers) one forward pass per prompt reads
        them all from the next-token distribution: the same numbers, L times fewer passes.
        """
        ids = label_token_ids(self.model, labels, end=None)
        # Batches of prompts of similar length pad less; the rows are put back in order at the end.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        rows: list[torch.Tensor] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = [prompts[i] for i in order[start : start + self.batch_size]]
            with self._adapter_on():
                if all(len(i) == 1 for i in ids):
                    picked = next_token_logprobs(self.model, chunk)[:, [i[0] for i in ids]]
                else:
                    scores = self.model.logprobs(
                        [p for p in chunk for _ in ids], [i for _ in chunk for i in ids]
                    )
                    picked = torch.stack([s.sum() for s in scores]).view(len(chunk), len(ids))
            rows.append(picked.double())
        log_scores = torch.zeros(len(prompts), len(ids), dtype=torch.double)
        if rows:
            log_scores[torch.tensor(order)] = torch.cat(rows)
        return log_scores.softmax(-1), log_scores.exp().sum(-1)

    def pairwise(self, pairs: Sequence[Pair], principle: Principle) -> list[PairwiseJudgment]:
        prompts = []
        for pair in pairs:  # row 2i: A shown first; row 2i + 1: B shown first
            prompts.append(self.render(pairwise_text(principle, pair.prompt, pair.a, pair.b), "pairwise"))
            prompts.append(self.render(pairwise_text(principle, pair.prompt, pair.b, pair.a), "pairwise"))
        probs, mass = self.label_probs(prompts, self.labels(["A", "B"]))
        judgments = []
        for i in range(len(pairs)):
            # Shown first, A is label "A"; shown second, A is label "B".
            a_first, b_first = float(probs[2 * i, 0]), float(probs[2 * i + 1, 1])
            judgments.append(
                PairwiseJudgment(
                    p_a=(a_first + b_first) / 2,
                    p_a_by_order=(a_first, b_first),
                    label_mass=float(mass[2 * i : 2 * i + 2].mean()),
                )
            )
        return judgments

    def rate(self, prompts: Sequence[str], answers: Sequence[str], principle: Principle) -> list[Rating]:
        _same_length(prompts, answers)
        texts = [
            self.render(rating_text(principle, p, a), "rating") for p, a in zip(prompts, answers, strict=True)
        ]
        probs, mass = self.label_probs(texts, self.labels([str(k) for k in RATING_SCALE]))
        scale = torch.tensor(RATING_SCALE, dtype=torch.double)
        return [
            Rating(float((row * scale).sum()), tuple(float(p) for p in row), float(m))
            for row, m in zip(probs, mass, strict=True)
        ]

    def critique(
        self, prompts: Sequence[str], answers: Sequence[str], principle: Principle, *, seed: int = 0
    ) -> list[str]:
        _same_length(prompts, answers)
        if not prompts:
            return []
        texts = [
            self.render(critique_text(principle, p, a), "critique")
            for p, a in zip(prompts, answers, strict=True)
        ]
        controls: list[object] = [Temperature(self.temperature)]
        if self.adapter is not None:
            controls.append(self.adapter)
        samples = generate(
            self.model,
            texts,
            controls=controls,
            max_new_tokens=self.critique_tokens,
            stop=() if self.chat else ("\n\n",),
            seed=seed,
            batch_size=self.batch_size,
            score_base=False,
        )
        return [sample.text.strip() for sample in samples]

    def _adapter_on(self) -> Any:
        if self.adapter is None:
            return nullcontext()
        return self.adapter.attached(self.model)


def _same_length(prompts: Sequence[str], answers: Sequence[str]) -> None:
    if len(prompts) != len(answers):
        raise InvalidArgument(
            "a judge needs one answer per prompt",
            received=f"{len(prompts)} prompts and {len(answers)} answers",
            fix="pass two lists of the same length",
        )


@torch.no_grad()
def next_token_logprobs(model: LanguageModel, prompts: Sequence[str]) -> torch.Tensor:
    """(N, V) float32 log-probabilities of the next token after each prompt, one batched forward pass.

    Left padding with the attention mask and position ids that `LanguageModel.logprobs` uses, so a
    single-token label gets the value `logprobs` would give it (tested against `classify`).
    """
    encoded = [model.encode(prompt) for prompt in prompts]
    width = max(len(ids) for ids in encoded)
    if width > model.context_length:
        raise InvalidArgument(
            f"a judge prompt is longer than the judge's context window ({model.context_length})",
            received=f"{width} tokens",
            fix="judge shorter answers, or use a judge model with a longer context",
        )
    batch = torch.full((len(encoded), width), model.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, ids in enumerate(encoded):
        batch[row, width - len(ids) :] = torch.tensor(ids)
        mask[row, width - len(ids) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model.module(
        input_ids=batch.to(model.device),
        attention_mask=mask.to(model.device),
        position_ids=positions.to(model.device),
        use_cache=False,
        logits_to_keep=1,
    )
    return out.logits[:, -1].float().log_softmax(-1).cpu()


# ---------------------------------------------------------------------------------------------- programmatic


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
        _same_length(prompts, answers)
        values = [float(self.score(p, a)) for p, a in zip(prompts, answers, strict=True)]
        for value in values:
            if not 0.0 <= value <= 1.0:
                raise InvalidArgument(
                    f"the judge {self.name} scored an answer outside [0, 1]",
                    received=value,
                    fix="clip the score",
                )
        return values

    def pairwise(self, pairs: Sequence[Pair], principle: Principle) -> list[PairwiseJudgment]:
        s_a = self.scores([p.prompt for p in pairs], [p.a for p in pairs])
        s_b = self.scores([p.prompt for p in pairs], [p.b for p in pairs])
        return [
            PairwiseJudgment(0.5 + (a - b) / 2, (0.5 + (a - b) / 2,) * 2)
            for a, b in zip(s_a, s_b, strict=True)
        ]

    def rate(self, prompts: Sequence[str], answers: Sequence[str], principle: Principle) -> list[Rating]:
        return [_interpolated_rating(1.0 + 6.0 * s) for s in self.scores(prompts, answers)]

    def critique(
        self, prompts: Sequence[str], answers: Sequence[str], principle: Principle, *, seed: int = 0
    ) -> list[str]:
        values = self.scores(prompts, answers)
        return [self.explain(p, a, s) for p, a, s in zip(prompts, answers, values, strict=True)]


def _interpolated_rating(value: float) -> Rating:
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


# ---------------------------------------------------------------------------------------------- rewards


def rating_reward(judge: Judge, principle: Principle) -> RewardFn:
    """The judge's rating expectation (1–7) of each completion as a reward."""

    def reward(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        return [rating.value for rating in judge.rate(list(prompts), list(completions), principle)]

    return reward


def pairwise_reward(judge: Judge, principle: Principle, references: Mapping[str, str]) -> RewardFn:
    """P(completion ≻ the reference answer of its prompt) under the judge, in [0, 1], as a reward.

    Raises (when called):
        InvalidArgument: a prompt has no reference answer.
    """

    def reward(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        missing = [p for p in prompts if p not in references]
        if missing:
            raise InvalidArgument(
                "the pairwise judge reward has no reference answer for a prompt",
                received=missing[0][:120],
                fix="give a reference answer for every prompt the policy is trained on",
            )
        pairs = [Pair(p, c, references[p]) for p, c in zip(prompts, completions, strict=True)]
        return [judgment.p_a for judgment in judge.pairwise(pairs, principle)]

    return reward


# ---------------------------------------------------------------------------------------------- the store

JUDGE_KINDS = ("pairwise", "rating", "critique")


@dataclass
class JudgingSummary:
    """What `judge_store` did, for the CLI's summary.

    Attributes:
        kind: pairwise, rating or critique.
        judged: answers written (one per unit of work and principle).
        already: units already answered by this judge before (left alone).
        consistent: pairwise judgments whose two shown orders gave the same hard label.
        p_first: Σ P(the answer shown first wins) over pairwise judgments (mean = position bias + ½).
        label_mass: Σ of the labels' probability mass before renormalising.
        rating: Σ of the rating expectations.
    """

    kind: str
    judged: int = 0
    already: int = 0
    consistent: int = 0
    p_first: float = 0.0
    label_mass: float = 0.0
    rating: float = 0.0

    def mean(self, total: float) -> float:
        return total / self.judged if self.judged else float("nan")


def work_units(store: FeedbackStore, kind: str) -> list[tuple[str, tuple[int, ...]]]:
    """(prompt text, response ids) to judge: every pair of a prompt's responses (pairwise), else each response."""
    units: list[tuple[str, tuple[int, ...]]] = []
    for prompt in store.prompts():
        ids = [response.id for response in store.responses(prompt_id=prompt.id)]
        if kind == "pairwise":
            units += [(prompt.text, (a, b)) for i, a in enumerate(ids) for b in ids[i + 1 :]]
        else:
            units += [(prompt.text, (r,)) for r in ids]
    return units


def answered_units(store: FeedbackStore, annotator_id: int, kind: str, rubric: str) -> set[tuple[int, ...]]:
    """The units this annotator has already answered (pairs unordered)."""
    if kind == "pairwise":
        return {
            tuple(sorted((c.response_a, c.response_b)))
            for c in store.comparisons()
            if c.annotator_id == annotator_id
        }
    if kind == "rating":
        return {(r.response_id,) for r in store.ratings(rubric=rubric) if r.annotator_id == annotator_id}
    return {(c.response_id,) for c in store.critiques() if c.annotator_id == annotator_id}


def judge_store(
    store: FeedbackStore,
    judge: Judge,
    constitution: Constitution,
    *,
    kind: str = "pairwise",
    principles: Sequence[Principle] | None = None,
    limit: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> JudgingSummary:
    """Judge the store's responses under each principle and write the judgments as answers.

    The judge is one annotator per principle, named `<kind>/<principle id>` with the kind
    `judge:<judge name>:<constitution digest>` (so exports filter judges as they filter people):
    comparisons carry the soft label P(a ≻ b), ratings use the principle id as their rubric. Every
    pair of a prompt's responses (pairwise), or every response (rating, critique), that this
    annotator has not answered yet is judged (at most `limit` per principle); a run that stops part way
    is continued by running it again. Answers are written without a queue item, so a judge never
    takes a place in the people's queues.

    Args:
        store: an open `FeedbackStore`.
        progress: called with (units finished, units to judge) before the first batch and after each.
    """
    if kind not in JUDGE_KINDS:
        raise InvalidArgument(
            f"unknown judge kind {kind!r}", received=kind, fix=f"use one of {', '.join(JUDGE_KINDS)}"
        )
    summary = JudgingSummary(kind)
    annotator_kind_ = annotator_kind(judge, constitution)
    units = work_units(store, kind)
    answers = {response.id: response.text for response in store.responses()}
    plan = []  # (principle, annotator, the units it has not answered yet)
    for principle in principles if principles is not None else constitution.principles:
        annotator = store.ensure_annotator(f"{annotator_kind_}/{principle.id}", annotator_kind_)
        done = answered_units(store, annotator, kind, principle.id)
        todo = [u for u in units if tuple(sorted(u[1])) not in done]
        summary.already += len(units) - len(todo)
        plan.append((principle, annotator, todo[:limit] if limit is not None else todo))
    total, finished = sum(len(todo) for _, _, todo in plan), 0
    if progress is not None:
        progress(0, total)
    for principle, annotator, todo in plan:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            _judge_batch(store, judge, principle, annotator, kind, batch, answers, summary, seed=seed + start)
            finished += len(batch)
            if progress is not None:
                progress(finished, total)
    return summary


def _judge_batch(
    store: FeedbackStore,
    judge: Judge,
    principle: Principle,
    annotator: int,
    kind: str,
    batch: Sequence[tuple[str, tuple[int, ...]]],
    answers: Mapping[int, str],
    summary: JudgingSummary,
    *,
    seed: int,
) -> None:
    texts = [tuple(answers[r] for r in ids) for _, ids in batch]
    prompts = [prompt for prompt, _ in batch]
    started = time.perf_counter()
    if kind == "pairwise":
        results: Sequence[Any] = judge.pairwise(
            [Pair(p, t[0], t[1]) for p, t in zip(prompts, texts, strict=True)], principle
        )
    elif kind == "rating":
        results = judge.rate(prompts, [t[0] for t in texts], principle)
    else:
        results = judge.critique(prompts, [t[0] for t in texts], principle, seed=seed)
    seconds = (time.perf_counter() - started) / len(batch)
    for (_, ids), result in zip(batch, results, strict=True):
        request = f"judge:{annotator}:{kind}:{principle.id}:{':'.join(map(str, ids))}"
        if isinstance(result, PairwiseJudgment):
            store.add_comparison(
                annotator,
                response_a=ids[0],
                response_b=ids[1],
                choice=result.choice,
                shown_left="a",
                soft_label=result.p_a,
                reason=describe_pairwise(principle, result),
                seconds=seconds,
                request_id=request,
            )
            summary.consistent += result.consistent
            summary.p_first += result.p_first
            summary.label_mass += result.label_mass
        elif isinstance(result, Rating):
            store.add_rating(
                annotator,
                ids[0],
                rubric=principle.id,
                value=min(max(result.value, 1.0), 7.0),
                reason=describe_rating(principle, result),
                seconds=seconds,
                request_id=request,
            )
            summary.rating += result.value
            summary.label_mass += result.label_mass
        else:
            store.add_critique(
                annotator, ids[0], critique=str(result) or "(empty)", seconds=seconds, request_id=request
            )
        summary.judged += 1


def describe_pairwise(principle: Principle, judgment: PairwiseJudgment) -> str:
    """The reason stored with a judge's comparison: both orders, consistency, label mass."""
    first, second = judgment.p_a_by_order
    return (
        f"{principle.id}: P(a≻b) = {judgment.p_a:.3f} (a shown first {first:.3f}, b shown first {second:.3f}); "
        f"swap-consistent: {'yes' if judgment.consistent else 'no'}; label mass {judgment.label_mass:.2f}"
    )


def describe_rating(principle: Principle, rating: Rating) -> str:
    """The reason stored with a judge's rating: the distribution over 1–7 and its mass."""
    probs = " ".join(f"{p:.2f}" for p in rating.probs)
    return f"{principle.id}: E = {rating.value:.2f}; P(1..7) = {probs}; digit mass {rating.label_mass:.2f}"

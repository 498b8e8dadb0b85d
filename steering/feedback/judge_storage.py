"""Judgments into the feedback store, as answers of an annotator, so they are used as people's are.

`judge_store` writes a judge's comparisons (with the soft label P(a ≻ b)), ratings (the principle id
as the rubric) or critiques under the annotator kind `judge:<name>:<constitution digest>`, one
annotator per principle; it continues where an earlier run stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from steering.errors import InvalidArgument
from steering.feedback.constitution import Constitution, Principle
from steering.feedback.judge_contract import Judge, Pair, PairwiseJudgment, Rating, annotator_kind
from steering.feedback.store import FeedbackStore

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
        by_principle: the same sums per principle id: {"judged", "consistent", "p_first", "decisive"}
            (decisive: pairwise labels with |P(a ≻ b) − ½| ≥ 0.25, so the principle picked a side).
    """

    kind: str
    judged: int = 0
    already: int = 0
    consistent: int = 0
    p_first: float = 0.0
    label_mass: float = 0.0
    rating: float = 0.0
    by_principle: dict[str, dict[str, float]] = field(default_factory=dict)

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
            row = summary.by_principle.setdefault(
                principle.id, {"judged": 0, "consistent": 0, "p_first": 0.0, "decisive": 0}
            )
            row["judged"] += 1
            row["consistent"] += result.consistent
            row["p_first"] += result.p_first
            row["decisive"] += abs(result.p_a - 0.5) >= 0.25
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

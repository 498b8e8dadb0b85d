"""How far annotators agree: Cohen's κ for two, Krippendorff's α for all, judge against people, judge swaps.

A comparison is coded by its *unit* — (prompt, rubric, the unordered pair of responses) — and its label in
that unit's fixed order (lower response id first): "first", "second", "tie" or "both_bad". So two people
who saw the pair in different orders, or stored it as (a, b) and (b, a), are compared on the same thing.
A rating's unit is (response, rubric) and its label the value.

Cohen's κ (Cohen 1960, "A coefficient of agreement for nominal scales") is the textbook formula
κ = (p_o − p_e) / (1 − p_e), p_o the observed share of units with the same label, p_e = Σ_k p₁(k)·p₂(k) the
agreement expected by chance from each annotator's own label frequencies. It is ten lines; the packages
that ship it (scikit-learn, statsmodels) are far heavier than this need. Krippendorff's α comes from the
`krippendorff` package (nominal for comparisons, interval or ordinal for ratings): it handles any number of
annotators and missing answers.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Literal, cast

import krippendorff
import numpy as np

from steering.errors import InvalidArgument
from steering.feedback.store import Comparison, FeedbackStore

LABELS = ("first", "second", "tie", "both_bad")  # a comparison's label in its unit's order
Level = Literal["nominal", "ordinal", "interval", "ratio"]
Unit = tuple[int, str | None, int, int]  # (prompt id, rubric, lower response id, higher response id)


@dataclass(frozen=True)
class Agreement:
    """A statistic and the number of units it was computed on (NaN when undefined, e.g. no shared units)."""

    value: float
    units: int


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float:
    """Cohen's κ of two annotators' labels on the same units, in order; NaN when p_e = 1 (one label only).

    Raises:
        InvalidArgument: the sequences differ in length or are empty.
    """
    if len(first) != len(second) or not first:
        raise InvalidArgument(
            "Cohen's kappa needs two equally long, non-empty label lists", received=(len(first), len(second))
        )
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    count_1, count_2 = Counter(first), Counter(second)
    expected = sum(count_1[label] * count_2[label] for label in count_1) / (n * n)
    if math.isclose(expected, 1.0):
        return math.nan
    return (observed - expected) / (1.0 - expected)


def krippendorff_alpha(answers: Mapping[Any, Mapping[int, float]], *, level: str = "nominal") -> Agreement:
    """Krippendorff's α over units × annotators (`answers[unit][annotator] = value`; missing is fine).

    Only units with at least two answers can be paired, so only they count; NaN when fewer than two values
    occur at all (α is undefined without variation).
    """
    if level not in ("nominal", "ordinal", "interval", "ratio"):
        raise InvalidArgument("level must be nominal, ordinal, interval or ratio", received=level)
    paired = {unit: values for unit, values in answers.items() if len(values) >= 2}
    annotators = sorted({annotator for values in paired.values() for annotator in values})
    if not paired or len({v for values in paired.values() for v in values.values()}) < 2:
        return Agreement(math.nan, len(paired))
    matrix = np.full((len(annotators), len(paired)), np.nan)
    row = {annotator: i for i, annotator in enumerate(annotators)}
    for column, values in enumerate(paired.values()):
        for annotator, value in values.items():
            matrix[row[annotator], column] = value
    return Agreement(
        float(krippendorff.alpha(reliability_data=matrix, level_of_measurement=cast(Level, level))),
        len(paired),
    )


# --------------------------------------------------------------------------------------- from the store
def comparison_unit(comparison: Comparison) -> tuple[Unit, str]:
    """The comparison's unit and its label in the unit's order (lower response id first)."""
    low, high = sorted((comparison.response_a, comparison.response_b))
    label = comparison.choice
    if label in ("a", "b"):
        winner = comparison.response_a if label == "a" else comparison.response_b
        label = "first" if winner == low else "second"
    return (comparison.prompt_id, comparison.rubric, low, high), label


def comparison_labels(store: FeedbackStore, annotators: set[int] | None = None) -> dict[Unit, dict[int, str]]:
    """labels[unit][annotator]: each annotator's latest label on each unit (an earlier one was superseded)."""
    labels: dict[Unit, dict[int, str]] = defaultdict(dict)
    for comparison in store.comparisons():
        if annotators is None or comparison.annotator_id in annotators:
            unit, label = comparison_unit(comparison)
            labels[unit][comparison.annotator_id] = label
    return dict(labels)


def rating_values(store: FeedbackStore, rubric: str) -> dict[int, dict[int, float]]:
    """values[response][annotator] on one rubric (each annotator's latest rating)."""
    values: dict[int, dict[int, float]] = defaultdict(dict)
    for rating in store.ratings(rubric=rubric):
        values[rating.response_id][rating.annotator_id] = rating.value
    return dict(values)


def pairwise_kappa(store: FeedbackStore, first: int, second: int) -> Agreement:
    """Cohen's κ of two annotators over the comparison units both answered."""
    labels = comparison_labels(store, {first, second})
    shared = [(v[first], v[second]) for v in labels.values() if first in v and second in v]
    if not shared:
        return Agreement(math.nan, 0)
    return Agreement(cohen_kappa([a for a, _ in shared], [b for _, b in shared]), len(shared))


def comparison_alpha(store: FeedbackStore, annotators: set[int] | None = None) -> Agreement:
    """Krippendorff's α (nominal) over every comparison unit answered by two or more of `annotators`."""
    labels = comparison_labels(store, annotators)
    coded = {unit: {a: float(LABELS.index(v)) for a, v in values.items()} for unit, values in labels.items()}
    return krippendorff_alpha(coded, level="nominal")


def rating_alpha(store: FeedbackStore, rubric: str, *, level: str = "interval") -> Agreement:
    """Krippendorff's α (interval or ordinal) over the responses rated on `rubric` by two or more."""
    return krippendorff_alpha(rating_values(store, rubric), level=level)


@dataclass(frozen=True)
class JudgeAgreement:
    """A judge against the people: raw agreement with the human majority label, Cohen's κ, units."""

    accuracy: float
    kappa: float
    units: int


def judge_vs_humans(store: FeedbackStore, judge: int) -> JudgeAgreement:
    """Compare a judge's labels with the majority of the human labels on the same units.

    Units where the people are split evenly between two labels have no majority and are left out.
    """
    humans = {a.id for a in store.annotators() if a.kind == "human"}
    labels = comparison_labels(store, humans | {judge})
    judge_labels, human_labels = [], []
    for values in labels.values():
        people = Counter(label for annotator, label in values.items() if annotator in humans)
        if judge not in values or not people:
            continue
        (top, count), *rest = people.most_common()
        if rest and rest[0][1] == count:
            continue
        judge_labels.append(values[judge])
        human_labels.append(top)
    if not judge_labels:
        return JudgeAgreement(math.nan, math.nan, 0)
    accuracy = sum(j == h for j, h in zip(judge_labels, human_labels, strict=True)) / len(judge_labels)
    return JudgeAgreement(accuracy, cohen_kappa(judge_labels, human_labels), len(judge_labels))


def swap_consistency(store: FeedbackStore, annotator: int) -> Agreement:
    """Share of units judged in both shown orders on which the annotator gave the same label both times.

    A judge that prefers whatever is shown first scores low; one that reads the answers scores near 1.
    """
    by_order: dict[Unit, dict[str, str]] = defaultdict(dict)
    for comparison in store.comparisons():
        if comparison.annotator_id != annotator:
            continue
        unit, label = comparison_unit(comparison)
        shown_first = comparison.response_a if comparison.shown_left == "a" else comparison.response_b
        by_order[unit]["low first" if shown_first == unit[2] else "high first"] = label
    both = [orders for orders in by_order.values() if len(orders) == 2]
    if not both:
        return Agreement(math.nan, 0)
    same = sum(orders["low first"] == orders["high first"] for orders in both)
    return Agreement(same / len(both), len(both))


@dataclass(frozen=True)
class PairRow:
    """One line of the agreement table: two annotators, their κ and how many units they share."""

    first: str
    second: str
    kappa: float
    units: int


def kappa_table(store: FeedbackStore) -> list[PairRow]:
    """Cohen's κ for every pair of annotators that answered at least one comparison unit in common."""
    names = {a.id: a.name for a in store.annotators()}
    labels = comparison_labels(store)
    together: Counter[tuple[int, int]] = Counter()
    for values in labels.values():
        together.update(combinations(sorted(values), 2))
    rows = []
    for first, second in sorted(together):
        agreement = pairwise_kappa(store, first, second)
        rows.append(PairRow(names[first], names[second], agreement.value, agreement.units))
    return rows

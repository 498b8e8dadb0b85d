"""The feedback store's row types, and the checks a value passes before it is written into one.

Every reader of `FeedbackStore` returns these frozen dataclasses: a `Prompt`, a `Response` with its
provenance, an `Annotator`, and the four kinds of answer (`Comparison`, `RankingAnswer`, `RatingAnswer`,
`CritiqueAnswer`), each carrying the `answers` row's who and when; `Answer` is that row alone (what undo
takes back). `Item` and `Progress` describe the work queue.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from steering.errors import InvalidArgument

CHOICES = ("a", "b", "tie", "both_bad")
ITEM_KINDS = ("compare", "rank", "rate", "critique")
RATING_MIN, RATING_MAX = 1.0, 7.0


@dataclass(frozen=True)
class Prompt:
    id: int
    text: str
    source: str | None
    meta: dict[str, Any]
    created: float


@dataclass(frozen=True)
class Response:
    """A candidate answer with its provenance and the engine's books (None when unknown, e.g. imported)."""

    id: int
    prompt_id: int
    text: str
    model: str
    adapter: str | None
    controls: dict[str, Any]
    seed: int | None
    logq: float | None
    logp_base: float | None
    kl: float | None
    meta: dict[str, Any]
    created: float


@dataclass(frozen=True)
class Annotator:
    """`kind` is "human", "judge:<model>:<constitution hash>" or "imported:<source>"."""

    id: int
    name: str
    kind: str
    created: float

    @property
    def family(self) -> str:
        """ "human", "judge" or "imported": the part of `kind` before the first colon."""
        return self.kind.split(":", 1)[0]


@dataclass(frozen=True)
class Answer:
    """One row of `answers`, whatever its kind: who answered, which task ("compare", "rank", "rate" or
    "critique"), which queue item (None when not from the queue), when, and with which request id."""

    id: int
    annotator_id: int
    kind: str
    item_id: int | None
    request_id: str | None
    seconds: float | None
    created: float


@dataclass(frozen=True)
class Comparison:
    """`choice` is about the stored order (a = response_a); `shown_left` says which one was on the left.

    `soft_label` is P(a ≻ b) when a judge gave one (None for people and imports).
    """

    answer_id: int
    annotator_id: int
    prompt_id: int
    response_a: int
    response_b: int
    shown_left: str
    choice: str
    soft_label: float | None
    reason: str | None
    seconds: float | None
    created: float
    rubric: str | None = None


@dataclass(frozen=True)
class RankingAnswer:
    """`response_ids` best first."""

    answer_id: int
    annotator_id: int
    prompt_id: int
    response_ids: tuple[int, ...]
    reason: str | None
    seconds: float | None
    created: float


@dataclass(frozen=True)
class RatingAnswer:
    answer_id: int
    annotator_id: int
    response_id: int
    rubric: str
    value: float
    reason: str | None
    seconds: float | None
    created: float


@dataclass(frozen=True)
class CritiqueAnswer:
    answer_id: int
    annotator_id: int
    response_id: int
    critique: str
    revision: str | None
    seconds: float | None
    created: float


@dataclass(frozen=True)
class Item:
    """A unit of work in the queue: `response_ids` in item order (two for compare, one for rate/critique)."""

    id: int
    kind: str
    prompt_id: int
    response_ids: tuple[int, ...]
    rubric: str | None


@dataclass(frozen=True)
class Progress:
    """One annotator's queue for one kind: answered, skipped, and still available to them."""

    done: int
    skipped: int
    remaining: int

    @property
    def total(self) -> int:
        return self.done + self.skipped + self.remaining


# ----------------------------------------------------------------------------------- checks of values
def from_json(text: str | None) -> dict[str, Any]:
    """A stored JSON column (meta, controls) back as a dict; NULL or '' reads as {}."""
    return json.loads(text) if text else {}


def to_json(value: dict[str, Any] | None, *, name: str) -> str:
    """A dict as the JSON text stored in a column (None: "{}").

    Raises:
        InvalidArgument: not a dict, or not representable as JSON (NaN, objects).
    """
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        raise InvalidArgument(f"{name} must be a dict (stored as JSON)", received=value)
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(
            f"{name} cannot be stored as JSON ({error})", received=value, fix="pass plain numbers and strings"
        ) from None


def check_float(value: float | None, *, name: str) -> float | None:
    """`value` as a float, or None; refuses booleans, strings, NaN and infinities."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgument(f"{name} must be a finite number or None", received=value)
    return float(value)


def check_text(value: object, *, name: str, optional: bool = False) -> str | None:
    """A non-empty string (or None when `optional`)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not optional and not value.strip()):
        raise InvalidArgument(f"{name} must be a non-empty string", received=value)
    return value


def check_kind(kind: str) -> str:
    """An annotator kind: "human", "judge:<model>:<constitution hash>" or "imported:<source>"."""
    family, _, rest = kind.partition(":")
    if kind == "human" or (family in ("judge", "imported") and rest):
        return kind
    raise InvalidArgument(
        "an annotator's kind must be 'human', 'judge:<model>:<constitution hash>' or 'imported:<source>'",
        received=kind,
    )


def check_item_kind(kind: str | None) -> None:
    """`kind` is one of ITEM_KINDS."""
    if kind not in ITEM_KINDS:
        raise InvalidArgument("item kind must be one of " + ", ".join(ITEM_KINDS), received=kind)

"""Training data in the JSONL shapes people already have, validated row by row.

Shapes (one JSON object per line):
- demonstrations: `{"prompt", "completion"}`, `{"messages": [{"role", "content"}, …]}` (the last
  message is the assistant's completion) or `{"text"}` (the whole text is the completion);
- preferences: `{"prompt", "chosen", "rejected"}`, optionally `"p_chosen"`: the probability that the chosen
  answer is the better one (a judge's soft label, in [0, 1]); without it the label is hard (1), or
  1 − `label_smoothing` in DPO and reward-model training;
- rankings: `{"prompt", "completions": [...], "ranking": [...]}` (`ranking` lists completion indices,
  best first);
- ratings: `{"prompt", "completion", "rating"}`;
- prompts (RL): `{"prompt"}`.

A demonstration is `steering.controls.Demonstration`, the type few-shot prompting uses too.
Every problem is reported as `file:line: field …` with what was received and how to fix it; an empty
file is an error too, never a silent no-op run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steering.controls.context import Demonstration
from steering.errors import InputFormatError, InvalidArgument
from steering.jsonl import read_jsonl


@dataclass(frozen=True)
class Preference:
    """A preference pair; `p_chosen` is P(chosen ≻ rejected) when the label is soft, None when hard."""

    prompt: str
    chosen: str
    rejected: str
    p_chosen: float | None = None


@dataclass(frozen=True)
class Ranking:
    """`completions` ordered best first (the file's `ranking` applied)."""

    prompt: str
    completions: tuple[str, ...]

    def pairs(self) -> list[Preference]:
        """Every (better, worse) pair the ranking implies."""
        ordered = self.completions
        return [
            Preference(self.prompt, ordered[i], ordered[j])
            for i in range(len(ordered))
            for j in range(i + 1, len(ordered))
        ]


@dataclass(frozen=True)
class Rating:
    prompt: str
    completion: str
    rating: float


SHAPES = ("demonstrations", "preferences", "rankings", "ratings", "prompts")
_EXAMPLES = {
    "demonstrations": '{"prompt": "Q: 2+2?\\nA:", "completion": " 4"}',
    "preferences": '{"prompt": "Q: 2+2?\\nA:", "chosen": " 4", "rejected": " 5"}',
    "rankings": '{"prompt": "Q: 2+2?\\nA:", "completions": [" 5", " 4"], "ranking": [1, 0]}',
    "ratings": '{"prompt": "Q: 2+2?\\nA:", "completion": " 4", "rating": 1.0}',
    "prompts": '{"prompt": "Once upon a time"}',
}


def load_examples(path: str | Path, shape: str) -> list[Any]:
    """Read and validate a JSONL file of one shape; returns its examples in file order.

    Raises:
        InputFormatError: unknown shape, missing file, bad JSON, a bad row (file:line: field), or no rows.
    """
    if shape not in SHAPES:
        raise InputFormatError(
            f"unknown data shape {shape!r}", received=shape, fix=f"use one of: {', '.join(SHAPES)}"
        )
    parse: Callable[[_Row], Any] = {
        "demonstrations": _demonstration,
        "preferences": _preference,
        "rankings": _ranking,
        "ratings": _rating,
        "prompts": lambda row: row.text("prompt"),
    }[shape]
    examples = [
        parse(_Row(str(path), number, value, shape))
        for number, _, value in read_jsonl(path, what=f"{shape} file", example=_EXAMPLES[shape])
    ]
    if not examples:
        raise InputFormatError(
            f"the {shape} file {path} has no rows",
            received="an empty file",
            fix=f"add lines like {_EXAMPLES[shape]}",
        )
    return examples


@dataclass(frozen=True)
class _Row:
    file: str
    line: int
    value: Any
    shape: str

    def fail(self, field: str, problem: str, received: object) -> InputFormatError:
        return InputFormatError(
            f"{self.file}:{self.line}: field {field!r} {problem}",
            received=repr(received)[:120],
            fix=f"each line of a {self.shape} file looks like {_EXAMPLES[self.shape]}",
        )

    def object(self) -> dict[str, Any]:
        if not isinstance(self.value, dict):
            raise InputFormatError(
                f"{self.file}:{self.line}: a row must be a JSON object",
                received=repr(self.value)[:120],
                fix=f"write e.g. {_EXAMPLES[self.shape]}",
            )
        return self.value

    def text(self, field: str, *, allow_empty: bool = False) -> str:
        row = self.object()
        if field not in row:
            raise self.fail(field, "is missing", sorted(row))
        value = row[field]
        if not isinstance(value, str):
            raise self.fail(field, "must be a string", value)
        if not allow_empty and not value.strip():
            raise self.fail(field, "is empty", value)
        return value


def _demonstration(row: _Row) -> Demonstration:
    data = row.object()
    if "messages" in data:
        return _from_messages(row, data["messages"])
    if "text" in data and "completion" not in data:
        return Demonstration("", row.text("text"))
    return Demonstration(row.text("prompt", allow_empty=True), row.text("completion"))


def _from_messages(row: _Row, messages: Any) -> Demonstration:
    """Chat rows for a base model: earlier turns rendered as "Role: content" lines, the last is the completion."""
    if not isinstance(messages, list) or len(messages) < 1:
        raise row.fail("messages", "must be a non-empty list of {role, content} objects", messages)
    lines = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise row.fail(f"messages[{index}]", "needs a string 'content'", message)
        if message.get("role") not in ("system", "user", "assistant"):
            raise row.fail(
                f"messages[{index}].role", "must be system, user or assistant", message.get("role")
            )
        lines.append((message["role"], message["content"]))
    if lines[-1][0] != "assistant" or not lines[-1][1].strip():
        raise row.fail(
            "messages", "must end with a non-empty assistant message (the completion)", messages[-1]
        )
    prompt = "".join(f"{role.capitalize()}: {content}\n" for role, content in lines[:-1]) + "Assistant:"
    return Demonstration(prompt, " " + lines[-1][1].lstrip())


def _preference(row: _Row) -> Preference:
    # An empty answer is a real answer (the policy said nothing at once: only end-of-text is scored),
    # and often the one a preference should rank down; the two must differ.
    chosen, rejected = row.text("chosen", allow_empty=True), row.text("rejected", allow_empty=True)
    if chosen == rejected:
        raise row.fail("rejected", "is the same text as 'chosen'", rejected)
    return Preference(row.text("prompt", allow_empty=True), chosen, rejected, _p_chosen(row))


def _p_chosen(row: _Row) -> float | None:
    """The optional soft label P(chosen ≻ rejected): a number in [0, 1], or None when absent."""
    data = row.object()
    if "p_chosen" not in data:
        return None
    value = data["p_chosen"]
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0.0 <= value <= 1.0
    ):
        raise row.fail(
            "p_chosen", "must be a probability from 0 to 1 (that 'chosen' is the better answer)", value
        )
    return float(value)


def _ranking(row: _Row) -> Ranking:
    data = row.object()
    completions = data.get("completions")
    if (
        not isinstance(completions, list)
        or len(completions) < 2
        or not all(isinstance(c, str) for c in completions)
    ):
        raise row.fail("completions", "must be a list of at least two strings", completions)
    ranking = data.get("ranking")
    if (
        not isinstance(ranking, list)
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in ranking)
        or sorted(ranking) != list(range(len(completions)))
    ):
        raise row.fail(
            "ranking",
            f"must list every completion index 0..{len(completions) - 1} once, best first",
            ranking,
        )
    return Ranking(row.text("prompt", allow_empty=True), tuple(completions[i] for i in ranking))


def _rating(row: _Row) -> Rating:
    value = row.object().get("rating")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise row.fail("rating", "must be a finite number", value)
    return Rating(row.text("prompt", allow_empty=True), row.text("completion"), float(value))


def check_label_smoothing(value: float) -> float:
    """TRL's `label_smoothing` ε: the target of a pair without a soft label is p = 1 − ε, so ε ∈ [0, ½].

    Raises:
        InvalidArgument: ε outside [0, 0.5] (above ½ the chosen answer would be the worse one).
    """
    if not 0.0 <= value <= 0.5:
        raise InvalidArgument(
            "the config key label_smoothing must be from 0 to 0.5 (a pair without p_chosen gets the target "
            "P(chosen ≻ rejected) = 1 − label_smoothing)",
            received=value,
            fix="set e.g. label_smoothing=0.1 (0: hard labels)",
        )
    return value


def target_probability(example: Preference, label_smoothing: float) -> float:
    """The training target P(chosen ≻ rejected): the row's soft label, else 1 − label_smoothing."""
    return example.p_chosen if example.p_chosen is not None else 1.0 - label_smoothing


def split(examples: Sequence[Any], eval_fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """A seeded train/eval split (eval gets round(fraction · n) examples, at least one when fraction > 0)."""
    import random

    if not 0.0 <= eval_fraction < 1.0:
        raise InputFormatError(
            "eval_fraction must be in [0, 1)", received=eval_fraction, fix="use e.g. 0.1 (0 = no eval split)"
        )
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    count = 0 if eval_fraction == 0 else max(1, round(eval_fraction * len(examples)))
    if count >= len(examples):
        raise InputFormatError(
            f"{len(examples)} examples cannot give an eval split of {eval_fraction} and still train",
            received=len(examples),
            fix="add examples or lower eval_fraction",
        )
    held = set(order[:count])
    return [e for i, e in enumerate(examples) if i not in held], [
        e for i, e in enumerate(examples) if i in held
    ]

"""The built-in set of short factual questions with accepted answers (written for this project)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files


@dataclass(frozen=True)
class Question:
    question: str
    answers: tuple[str, ...]
    category: str


def builtin_questions() -> list[Question]:
    """48 questions: capitals, arithmetic, simple science, general knowledge."""
    text = files("steering.eval").joinpath("data/questions.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [Question(r["question"], tuple(r["answers"]), r["category"]) for r in rows]


def builtin_demonstrations() -> list[tuple[str, str]]:
    """Four Q/A demonstrations for few-shot prompting, disjoint from the questions."""
    text = files("steering.eval").joinpath("data/demonstrations.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [(r["prompt"], r["completion"]) for r in rows]

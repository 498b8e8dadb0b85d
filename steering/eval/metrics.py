"""Metrics on generated text and on `Samples`: accuracy, stopping, invented questions, repetition, KL."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from steering.decode.samples import Samples

_QUESTION_MARKER = re.compile(r"(^|\n)\s*(Q|Question)\s*\d*\s*[:.)]", re.IGNORECASE)


def normalise(text: str) -> str:
    """Lower case, punctuation and hyphens to spaces, whitespace collapsed."""
    text = re.sub(r"[^0-9a-z]+", " ", text.lower())
    return " ".join(text.split())


def first_answer(text: str) -> str:
    """The first non-empty line: what a reader takes as the answer."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def is_correct(text: str, answers: Sequence[str]) -> bool:
    """True when an accepted answer appears, as whole words, in the first non-empty line."""
    line = f" {normalise(first_answer(text))} "
    return any(f" {normalise(a)} " in line for a in answers if normalise(a))


def invents_question(text: str) -> bool:
    """True when the text asks a new question: a `Q:`/`Question:` line or any question mark."""
    return bool(_QUESTION_MARKER.search(text)) or "?" in text


def _words(text: str) -> list[str]:
    return normalise(text).split()


def distinct_n(text: str, n: int) -> float | None:
    """Unique n-grams / all n-grams of the words of `text`; None when it has fewer than n words."""
    words = _words(text)
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def longest_repeated_ngram(text: str) -> int:
    """Length in words of the longest word n-gram that occurs at least twice (0 if none)."""
    words = _words(text)
    best = 0
    for n in range(1, len(words)):
        counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        if max(counts.values(), default=0) < 2:
            break
        best = n
    return best


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


@dataclass(frozen=True)
class Summary:
    """Aggregate metrics of one technique's samples (None where undefined)."""

    samples: int
    accuracy: float | None
    stop_rate: float
    new_question_rate: float
    distinct_1: float | None
    distinct_2: float | None
    longest_repeat: float
    mean_tokens: float
    mean_kl: float
    mean_kl_exact_steps: float | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def summarise(samples: Samples, answers: Sequence[Sequence[str]] | None = None) -> Summary:
    """Metrics of `samples`; `answers[i]` are the accepted answers of prompt i (for accuracy)."""
    items = list(samples)
    accuracy = None
    if answers is not None:
        accuracy = sum(is_correct(s.text, answers[s.prompt_index]) for s in items) / len(items)
    exact = [s.kl_exact_steps for s in items]
    return Summary(
        samples=len(items),
        accuracy=accuracy,
        stop_rate=sum(s.stop_reason in ("stop", "eos") for s in items) / len(items),
        new_question_rate=sum(invents_question(s.text) for s in items) / len(items),
        distinct_1=_mean([distinct_n(s.text, 1) for s in items]),
        distinct_2=_mean([distinct_n(s.text, 2) for s in items]),
        longest_repeat=sum(longest_repeated_ngram(s.text) for s in items) / len(items),
        mean_tokens=sum(len(s.token_ids) for s in items) / len(items),
        mean_kl=sum(s.kl for s in items) / len(items),
        mean_kl_exact_steps=None if any(e is None for e in exact) else _mean(exact),
    )

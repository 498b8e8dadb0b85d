"""Stop sequences matched on decoded text, across token boundaries."""

from __future__ import annotations

from collections.abc import Sequence

# Characters re-checked before the newly decoded text: a multi-byte character or a tokenizer's
# clean-up can rewrite the tail of the previous text when a token is added.
_LOOKBACK = 8


def find_stop(text: str, stops: Sequence[str], *, start: int = 0) -> int | None:
    """Index in `text` where the earliest stop sequence begins, searching from `start`, or None."""
    best: int | None = None
    for stop in stops:
        index = text.find(stop, start)
        if index != -1 and (best is None or index < best):
            best = index
    return best


def search_start(previous_length: int, stops: Sequence[str]) -> int:
    """Where to start searching new text so that a stop split across tokens is still found."""
    longest = max((len(s) for s in stops), default=0)
    return max(0, previous_length - longest - _LOOKBACK)

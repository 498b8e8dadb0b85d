"""Token tries for label sets and forced spans, the check that labels are well formed, and the one that they are unambiguous."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from steering.errors import InvalidArgument


@dataclass
class TrieNode:
    children: dict[int, TrieNode] = field(default_factory=dict)
    label: int | None = None  # index of the sequence that ends here


def first_prefix_pair(sequences: Sequence[Sequence[int]]) -> tuple[int, int] | None:
    """The first (i, j), i ≠ j, where sequence i is a token prefix of (or equal to) sequence j."""
    for i, a in enumerate(sequences):
        for j, b in enumerate(sequences):
            if i != j and len(a) <= len(b) and list(b[: len(a)]) == list(a):
                return i, j
    return None


def spelled_label_ids(tokenizer: Any, labels: Sequence[str], *, end: str | None) -> list[list[int]]:
    """Each label's continuation tokens (plus `end`), refusing labels the tokenizer cannot spell back.

    A tokenizer that drops or replaces characters it cannot spell (an unknown-token fallback) would
    otherwise score, or let the sampler produce, some other text than the label asked for.
    """
    texts = [label + (end or "") for label in labels]
    ids = [list(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
    unspelled = [
        label
        for label, text, tokens in zip(labels, texts, ids, strict=True)
        if not tokens or str(tokenizer.decode(tokens, skip_special_tokens=True)).strip() != text.strip()
    ]
    if unspelled:
        raise InvalidArgument(
            f"this model's tokenizer cannot spell the label(s) {unspelled}: they would come out as other text",
            received=list(labels),
            fix="use labels made of text this model's tokenizer can spell",
        )
    return ids


def compile_trie(
    sequences: Sequence[Sequence[int]], names: Sequence[str], *, what: str, fix: str
) -> TrieNode:
    """A trie of token sequences; refuses a set where one is a prefix of another (ambiguous end)."""
    pair = first_prefix_pair(sequences)
    if pair is not None:
        i, j = pair
        raise InvalidArgument(
            f"{what} {names[i]!r} is a token prefix of {names[j]!r}, so the output could not tell where it ends",
            received=list(names),
            fix=fix,
        )
    root = TrieNode()
    for index, tokens in enumerate(sequences):
        node = root
        for token in tokens:
            node = node.children.setdefault(int(token), TrieNode())
        node.label = index
    return root


def validate_labels(labels: Sequence[str]) -> tuple[str, ...]:
    """Non-empty, distinct, non-empty strings (labels of `classify` and `Choices`, spans of `ForcedSpan`)."""
    if isinstance(labels, str) or not labels:
        raise InvalidArgument(
            "classify needs a non-empty list of labels",
            received=labels,
            fix='pass e.g. ["positive", "negative"]',
        )
    if any(not isinstance(label, str) or not label for label in labels):
        raise InvalidArgument(
            "labels must be non-empty strings", received=list(labels), fix="remove empty labels"
        )
    duplicates = sorted({label for label in labels if list(labels).count(label) > 1})
    if duplicates:
        raise InvalidArgument(
            "labels must be distinct", received=f"duplicates {duplicates}", fix="list each label once"
        )
    return tuple(labels)

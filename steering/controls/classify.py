"""Exact label probabilities: score every full label, not just its first token.

The common shortcut — read the next-token distribution once and compare the labels' first tokens —
is biased when labels span several tokens or share a first token ("New York" and "New Delhi" both
get P("New")). `classify` scores each label's whole token sequence teacher-forced and normalises over
the set, so the answer is P(label | prompt, the answer is one of the labels) exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from steering.controls.trie import first_prefix_pair, spelled_label_ids, validate_labels
from steering.errors import InvalidArgument
from steering.models.language_model import LanguageModel


@dataclass(frozen=True)
class Classification:
    """Label probabilities for one prompt.

    Attributes:
        labels: the labels, in the order given.
        probs: (L,) P(label | prompt, one of the labels), summing to 1.
        log_scores: (L,) unnormalised log p(label tokens [+ end] | prompt) under the model.
    """

    labels: tuple[str, ...]
    probs: torch.Tensor
    log_scores: torch.Tensor

    @property
    def best(self) -> str:
        return self.labels[int(self.probs.argmax())]

    def as_dict(self) -> dict[str, float]:
        return {label: float(p) for label, p in zip(self.labels, self.probs, strict=True)}


def label_token_ids(model: LanguageModel, labels: Sequence[str], *, end: str | None) -> list[list[int]]:
    """Each label's continuation tokens (plus `end`); refuse labels that are token prefixes of others."""
    ids = spelled_label_ids(model.tokenizer, labels, end=end)
    pair = first_prefix_pair(ids) if end is None else None
    if pair is not None:
        i, j = pair
        raise InvalidArgument(
            f"label {labels[i]!r} is a token prefix of {labels[j]!r}, so its probability would "
            f"include every continuation that goes on to {labels[j]!r}",
            received=list(labels),
            fix='pass end="\\n" (or the text that follows an answer) so each label is scored as complete',
        )
    return ids


def classify(
    model: LanguageModel, prompt: str, labels: Sequence[str], *, end: str | None = None
) -> Classification:
    """Exact probability of each full label after `prompt`, normalised over the labels.

    Args:
        model: the model.
        prompt: text the label follows (include the separator, e.g. "Sentiment:"; labels usually
            start with a space: " positive").
        labels: distinct candidate continuations.
        end: optional text that closes an answer (e.g. "\\n"); needed when one label is a token prefix
            of another.
    """
    label_tuple = validate_labels(labels)
    ids = label_token_ids(model, label_tuple, end=end)
    scores = model.logprobs([prompt] * len(ids), ids)
    log_scores = torch.stack([s.double().sum() for s in scores])
    return Classification(label_tuple, log_scores.softmax(-1), log_scores)


def first_token_shortcut(model: LanguageModel, prompt: str, labels: Sequence[str]) -> torch.Tensor:
    """The biased shortcut, for comparison: P(first token of each label), normalised over the labels."""
    label_tuple = validate_labels(labels)
    first = [model.encode_continuation(label)[0] for label in label_tuple]
    ids = torch.tensor([model.encode(prompt)], device=model.device)
    with torch.no_grad():
        row = model.module(input_ids=ids, logits_to_keep=1).logits[0, -1].float().log_softmax(-1)
    picked = row[torch.tensor(first, device=row.device)].double()
    return picked.softmax(-1).cpu()

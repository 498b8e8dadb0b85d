"""Encoding and batching shared by the methods: token rows with labels, padded batches, their log-probabilities.

A prompt and its completion are tokenised separately — the prompt as `generate` encodes it (with
BOS), the completion as the continuation tokens the decode engine would sample, then EOS — so what
is trained is exactly what is sampled later. Labels are `losses.IGNORE` where nothing is trained
(the prompt, padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from steering.controls.context import Demonstration
from steering.errors import InvalidArgument
from steering.models import LanguageModel
from steering.train.losses import IGNORE, first_stop_logprob, kept_token_logprobs, trained_positions

Item = TypeVar("Item")


@dataclass(frozen=True)
class Encoded:
    """One training sequence: token ids and labels (IGNORE where not trained on)."""

    ids: list[int]
    labels: list[int]


def encode_completion(model: LanguageModel, prompt: str, completion: str, max_length: int) -> Encoded | None:
    """Prompt (with BOS) + completion + EOS, labels on the completion only, cut at `max_length` tokens;
    None when no completion token is left after the cut."""
    prompt_ids = model.encode(prompt)
    completion_ids = [*model.encode_continuation(completion), model.eos_token_ids[0]]
    ids = (prompt_ids + completion_ids)[:max_length]
    labels = ([IGNORE] * len(prompt_ids) + completion_ids)[:max_length]
    return Encoded(ids, labels) if any(label != IGNORE for label in labels[1:]) else None


def encode_demonstrations(
    model: LanguageModel, examples: Sequence[Demonstration], max_length: int
) -> list[Encoded]:
    """Prompt (with BOS) + completion + EOS, labels on the completion only; cut at `max_length` tokens.

    Raises:
        InvalidArgument: no example keeps a completion token after truncation.
    """
    encoded = [
        row
        for e in examples
        if (row := encode_completion(model, e.prompt, e.completion, max_length)) is not None
    ]
    if not encoded:
        raise InvalidArgument(
            f"no example has a completion token left after truncation to max_length={max_length}",
            received=f"{len(examples)} examples",
            fix="raise max_length or shorten the prompts",
        )
    return encoded


def batch_rows(rows: Sequence[Encoded], pad: int) -> dict[str, torch.Tensor]:
    """Right-padded ids, attention mask and labels, each (B, T) (padding never trained on)."""
    width = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row.ids)] = torch.tensor(row.ids)
        labels[i, : len(row.labels)] = torch.tensor(row.labels)
        mask[i, : len(row.ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def micro_batches(rows: Sequence[Item], size: int) -> list[list[Item]]:
    """`rows` in consecutive chunks of `size` (the last may be shorter)."""
    return [list(rows[i : i + size]) for i in range(0, len(rows), size)]


def labelled_logprobs(model: LanguageModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, P) log-probabilities of the labelled tokens, the LM head run only where a label follows."""
    positions = trained_positions(batch["labels"])
    logits = model.module(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=positions
    ).logits
    return kept_token_logprobs(logits, batch["labels"], positions)


def labelled_logprobs_and_stop(
    model: LanguageModel, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`labelled_logprobs` plus, from the same forward pass, `losses.first_stop_logprob` for the
    model's end-of-text ids: (B, P) label log-probabilities, (B,) log P(empty reply), (B,) row mask."""
    positions = trained_positions(batch["labels"])
    logits = model.module(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=positions
    ).logits
    log_stop, counted = first_stop_logprob(logits, batch["labels"], positions, model.eos_token_ids)
    return kept_token_logprobs(logits, batch["labels"], positions), log_stop, counted


def sequence_logprobs(model: LanguageModel, rows: Sequence[Encoded]) -> torch.Tensor:
    """(N,) the summed log-probability of each row's labelled tokens (one padded batch)."""
    return labelled_logprobs(model, batch_rows(rows, model.pad_token_id)).sum(-1)

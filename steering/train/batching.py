"""Encoding and batching shared by the methods: token rows with labels, padded batches, their log-probabilities.

A prompt and its completion are tokenised separately — the prompt as `generate` encodes it (with
BOS), the completion as the continuation tokens the decode engine would sample, then EOS — so what
is trained is exactly what is sampled later. Labels are `losses.IGNORE` where nothing is trained
(the prompt, padding). `demonstrations_backward` is SFT's loss, forward and backward, shared by SFT,
soft prompts and RL's PPO-ptx mix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from steering.controls.context import Demonstration
from steering.errors import InvalidArgument
from steering.models import LanguageModel
from steering.train.distributed import Processes
from steering.train.losses import (
    IGNORE,
    first_stop_logprob,
    kept_token_logprobs,
    trained_positions,
    unlikelihood,
)

ALONE = Processes()  # one process: every micro-batch of the step

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


def check_empty_penalty(value: float) -> None:
    """The empty-reply unlikelihood weight of SFT's loss (and of the methods that reuse it)."""
    if not 0 <= value < float("inf"):
        raise InvalidArgument(
            "empty_penalty must be a finite number ≥ 0", received=value, fix="use 0 (plain SFT) or e.g. 1.0"
        )


def demonstrations_backward(
    model: LanguageModel,
    rows: list[Encoded],
    *,
    batch_size: int,
    empty_penalty: float,
    scale: float = 1.0,
    share: Processes = ALONE,
) -> dict[str, Any]:
    """Forward and backward of SFT's loss over `rows` (one optimizer step's), times `scale`.

    The loss: the mean NLL per completion token, plus `empty_penalty` × the mean unlikelihood of an
    empty reply per example, both over all of `rows`; this process runs only its `share` of the
    micro-batches (all of them when alone), so summed over the processes the gradients and the
    returned loss are the whole step's. RL's pretraining mix (`RLConfig.ptx_coef`, InstructGPT's
    PPO-ptx) adds it to the RL loss with `scale = ptx_coef`. Returns loss (unscaled), tokens,
    trained_tokens and, with a penalty, empty_unlikelihood and p_empty.
    """
    batches = [batch_rows(m, model.pad_token_id) for m in micro_batches(rows, batch_size)]
    trained = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)
    batches = share.mine(batches)
    total_loss, total_empty, p_empty = 0.0, 0.0, 0.0
    for batch in batches:
        if not empty_penalty:
            loss = -labelled_logprobs(model, batch).sum() / trained
        else:
            logprobs, log_stop, counted = labelled_logprobs_and_stop(model, batch)
            empty = (unlikelihood(log_stop) * counted).sum() / len(rows)
            loss = -logprobs.sum() / trained + empty_penalty * empty
            total_empty += float(empty.detach())
            p_empty += float(log_stop.detach().exp().sum()) / len(rows)
        (loss * scale).backward()
        total_loss += float(loss.detach())
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    record = {"loss": total_loss, "tokens": tokens, "trained_tokens": trained}
    if empty_penalty:
        record |= {"empty_unlikelihood": total_empty, "p_empty": p_empty}
    return record

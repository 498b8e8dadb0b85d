"""Supervised fine-tuning: the loss on completion tokens only, a LoRA adapter by default.

Warm-up then cosine learning rate, a few epochs, gradient accumulation, an eval split with early
stopping (the best adapter is kept), checkpoints that resume exactly, Ctrl-C saves. A prompt and its
completion are tokenised separately — the prompt as `generate` encodes it (with BOS), the completion
as the continuation tokens the decode engine would sample, then EOS — so what is trained is exactly
what is sampled later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from steering.errors import InvalidArgument
from steering.models import LanguageModel
from steering.train.data import Demonstration, load_examples
from steering.train.loop import Progress, TrainConfig, TrainResult, run_training
from steering.train.losses import IGNORE, kept_token_logprobs, trained_positions


@dataclass
class SFTConfig(TrainConfig):
    """Everything an SFT run needs (the shared fields of `TrainConfig`); `steer train sft` fills it."""

    out: str = "runs/sft"


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
    model: LanguageModel, examples: list[Demonstration], max_length: int
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


def batch_rows(rows: list[Encoded], pad: int) -> dict[str, torch.Tensor]:
    """Right-padded ids, attention mask and labels (padding never trained on)."""
    width = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row.ids)] = torch.tensor(row.ids)
        labels[i, : len(row.labels)] = torch.tensor(row.labels)
        mask[i, : len(row.ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def micro_batches(rows: list[Any], size: int) -> list[list[Any]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def labelled_logprobs(model: LanguageModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, P) log-probabilities of the labelled tokens, the LM head run only where a label follows."""
    positions = trained_positions(batch["labels"])
    logits = model.module(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=positions
    ).logits
    return kept_token_logprobs(logits, batch["labels"], positions)


class SFT:
    """The SFT method for the shared loop: mean NLL over every completion token of an optimizer step."""

    name = "sft"

    def load(self, config: SFTConfig) -> list[Demonstration]:
        return load_examples(config.data, "demonstrations")

    def encode(self, model: LanguageModel, examples: list[Demonstration], config: SFTConfig) -> list[Encoded]:
        return encode_demonstrations(model, examples, config.max_length)

    def backward(self, model: LanguageModel, rows: list[Encoded], config: SFTConfig) -> dict[str, Any]:
        batches = [batch_rows(m, model.pad_token_id) for m in micro_batches(rows, config.batch_size)]
        trained = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)
        total_loss = 0.0
        for batch in batches:
            loss = -labelled_logprobs(model, batch).sum() / trained
            loss.backward()
            total_loss += float(loss.detach())
        tokens = sum(int(b["attention_mask"].sum()) for b in batches)
        return {"loss": total_loss, "tokens": tokens, "trained_tokens": trained}

    def evaluate(self, model: LanguageModel, rows: list[Encoded], config: SFTConfig) -> dict[str, Any]:
        total, count = 0.0, 0
        for chunk in micro_batches(rows, config.batch_size):
            batch = batch_rows(chunk, model.pad_token_id)
            total -= float(labelled_logprobs(model, batch).sum())
            count += int((batch["labels"][:, 1:] != IGNORE).sum())
        return {"eval_loss": total / max(count, 1)}


def train_sft(
    config: SFTConfig,
    *,
    resume: bool = False,
    model: LanguageModel | None = None,
    progress: Progress | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Run SFT; see the module docstring. `stop_after` ends the run after that step (tests of resume).

    `model` (loaded in float32 for training) is left as it was: the adapter is trained in place, saved,
    then removed; load it back with `Adapter(result.adapter)`.
    """
    return run_training(config, SFT(), resume=resume, model=model, progress=progress, stop_after=stop_after)

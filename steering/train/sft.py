"""Supervised fine-tuning: the loss on completion tokens only, a LoRA adapter by default.

Warm-up then cosine learning rate, a few epochs, gradient accumulation, an eval split with early
stopping (the best adapter is kept), checkpoints that resume exactly, Ctrl-C saves (all from the
shared loop). Rows are encoded by `batching.encode_demonstrations`: prompt and completion tokenised
apart, so what is trained is exactly what is sampled later. `full=true` trains every weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from steering.controls.context import Demonstration
from steering.models import LanguageModel
from steering.train.batching import (
    Encoded,
    batch_rows,
    encode_demonstrations,
    labelled_logprobs,
    micro_batches,
)
from steering.train.data import load_examples
from steering.train.full import FullWeights
from steering.train.loop import Progress, TrainConfig, TrainResult, run_training
from steering.train.losses import IGNORE
from steering.train.method import Method, TrainedWeights


@dataclass
class SFTConfig(TrainConfig):
    """Everything an SFT run needs (the shared fields of `TrainConfig`); `steer train sft` fills it."""

    out: str = "runs/sft"


class SFT(Method):
    """The SFT method for the shared loop: mean NLL over every completion token of an optimizer step."""

    name = "sft"

    def weights(self, config: SFTConfig) -> TrainedWeights:
        """A LoRA adapter, or every weight of the model with `full=true`."""
        return FullWeights() if config.full else super().weights(config)

    def load(self, config: SFTConfig) -> list[Demonstration]:
        return load_examples(config.data, "demonstrations")

    def encode(self, model: LanguageModel, examples: list[Demonstration], config: SFTConfig) -> list[Encoded]:
        return encode_demonstrations(model, examples, config.max_length)

    def backward(
        self, model: LanguageModel, rows: list[Encoded], config: SFTConfig, *, step: int
    ) -> dict[str, Any]:
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

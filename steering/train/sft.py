"""Supervised fine-tuning: the loss on completion tokens only, a LoRA adapter by default.

Warm-up then cosine learning rate, a few epochs, gradient accumulation, an eval split with early
stopping (the best adapter is kept), checkpoints that resume exactly, Ctrl-C saves (all from the
shared loop). Rows are encoded by `batching.encode_demonstrations`: prompt and completion tokenised
apart, so what is trained is exactly what is sampled later. `full=true` trains every weight.

`empty_penalty = w` adds w · −log(1 − P(end-of-text | prompt)) per example (unlikelihood training,
Welleck et al. 2019): no demonstration is empty, but completions that all end in end-of-text after a
full stop teach "stop after a full stop", and a prompt that itself ends in one (a pasted paragraph to
summarise) is then answered with nothing. The NLL of the first token pushes that chance down only in
proportion to it; the unlikelihood term pushes hardest where the empty reply is likeliest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from steering.controls.context import Demonstration
from steering.models import LanguageModel
from steering.train.batching import (
    Encoded,
    batch_rows,
    check_empty_penalty,
    demonstrations_backward,
    encode_demonstrations,
    labelled_logprobs_and_stop,
    micro_batches,
)
from steering.train.data import load_examples
from steering.train.distributed import processes
from steering.train.full import FullWeights
from steering.train.loop import Progress, TrainConfig, TrainResult, run_training
from steering.train.losses import IGNORE, unlikelihood
from steering.train.method import Method, TrainedWeights


@dataclass
class SFTConfig(TrainConfig):
    """Everything an SFT run needs (the shared fields of `TrainConfig`); `steer train sft` fills it."""

    out: str = "runs/sft"
    empty_penalty: float = 0.0  # weight of the empty-reply unlikelihood term (0 = plain SFT)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_empty_penalty(self.empty_penalty)


class SFT(Method):
    """The SFT method for the shared loop: mean NLL over every completion token of an optimizer step."""

    name = "sft"
    # Splits a step over training processes (train/distributed.py): the loss is normalised by the whole
    # step's counts, so these record keys are partial sums, added up over the processes.
    distributed = True
    summed: tuple[str, ...] = ("loss", "tokens", "empty_unlikelihood", "p_empty")

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
        return demonstrations_backward(
            model, rows, batch_size=config.batch_size, empty_penalty=config.empty_penalty, share=processes()
        )

    def evaluate(self, model: LanguageModel, rows: list[Encoded], config: SFTConfig) -> dict[str, Any]:
        """The training objective on the eval split (`eval_loss`, what early stopping watches): the
        mean NLL per completion token (`eval_nll`) plus `empty_penalty` × the mean unlikelihood of an
        empty reply; and the mean chance of an empty reply (`eval_p_empty`)."""
        total, count, p_empty, empty = 0.0, 0, 0.0, 0.0
        for chunk in micro_batches(rows, config.batch_size):
            batch = batch_rows(chunk, model.pad_token_id)
            logprobs, log_stop, counted = labelled_logprobs_and_stop(model, batch)
            total -= float(logprobs.sum())
            count += int((batch["labels"][:, 1:] != IGNORE).sum())
            p_empty += float(log_stop.exp().sum())
            empty += float((unlikelihood(log_stop) * counted).sum())
        nll, rows_n = total / max(count, 1), max(len(rows), 1)
        return {
            "eval_loss": nll + config.empty_penalty * empty / rows_n,
            "eval_nll": nll,
            "eval_p_empty": p_empty / rows_n,
        }


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

"""Soft-prompt tuning: learn k input vectors, the model frozen; SFT's loss on completion tokens.

The result is a `steering.controls.SoftPrompt` saved in RUN/adapter (`soft_prompt.safetensors`), used
like any control: `generate(model, prompts, controls=[SoftPrompt.load(dir)])` or
`steer generate --adapter RUN/adapter`. Its vectors start as the embeddings of k random vocabulary
tokens (seeded); k = `length`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from steering.controls.context import Demonstration
from steering.controls.soft_prompt import SoftPrompt
from steering.errors import InvalidArgument
from steering.models import LanguageModel
from steering.train.batching import Encoded, check_empty_penalty, encode_demonstrations
from steering.train.loop import Progress, TrainConfig, TrainResult, run_training
from steering.train.method import TrainedWeights, refuse_full
from steering.train.sft import SFT


@dataclass
class SoftPromptConfig(TrainConfig):
    """SFT's fields plus the number of virtual tokens and the placeholder token."""

    out: str = "runs/soft-prompt"
    learning_rate: float = 1e-2
    length: int = 16
    placeholder: str = "<pad>"
    empty_penalty: float = 0.0  # SFT's empty-reply unlikelihood (the loss is SFT's)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_empty_penalty(self.empty_penalty)
        if not isinstance(self.length, int) or isinstance(self.length, bool) or self.length < 1:
            raise InvalidArgument(
                "length (virtual tokens) must be ≥ 1", received=self.length, fix="use e.g. 16"
            )


class SoftPromptWeights:
    """The loop's `TrainedWeights` of a soft prompt: its k vectors, attached to the model while training."""

    def __init__(self) -> None:
        self.prompt: SoftPrompt | None = None
        self._attached: AbstractContextManager[None] | None = None

    def make_parameters(self, model: LanguageModel, config: Any) -> list[torch.nn.Parameter]:
        """k vectors started at the embeddings of k random vocabulary tokens (seeded), attached."""
        embedding = model.module.get_input_embeddings()
        ids = torch.randint(
            0, len(model.tokenizer), (config.length,), generator=torch.Generator().manual_seed(config.seed)
        )
        with torch.no_grad():
            start = embedding(ids[None])[0].float()
        vectors = torch.nn.Parameter(start.clone())
        self.prompt = SoftPrompt(vectors, config.placeholder, base_model=model.name)
        self.prompt.placeholder_id(model)  # refuse a bad placeholder before training
        self._attached = self.prompt.attached(model)
        self._attached.__enter__()
        return [vectors]

    def save(self, model: LanguageModel, directory: Path, meta: dict[str, Any]) -> None:
        assert self.prompt is not None
        self.prompt.save(directory, meta)

    def load(self, model: LanguageModel, directory: Path) -> None:
        assert self.prompt is not None
        with torch.no_grad():
            self.prompt.vectors.copy_(SoftPrompt.load(directory).vectors)

    def release(self, model: LanguageModel) -> None:
        if self._attached is not None:
            self._attached.__exit__(None, None, None)
            self._attached = None


class SoftPromptMethod(SFT):
    """SFT through a soft prompt: the only trained weights are its vectors."""

    name = "soft_prompt"

    def weights(self, config: Any) -> TrainedWeights:
        refuse_full(config, self.name)
        return SoftPromptWeights()

    def encode(self, model: LanguageModel, examples: list[Demonstration], config: Any) -> list[Encoded]:
        marks = config.placeholder * config.length
        return encode_demonstrations(
            model, [Demonstration(marks + e.prompt, e.completion) for e in examples], config.max_length
        )


def train_soft_prompt(
    config: SoftPromptConfig,
    *,
    resume: bool = False,
    model: LanguageModel | None = None,
    progress: Progress | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a soft prompt on demonstrations; load it with `SoftPrompt.load(result.adapter)`."""
    return run_training(
        config, SoftPromptMethod(), resume=resume, model=model, progress=progress, stop_after=stop_after
    )

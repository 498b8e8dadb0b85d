"""Distillation of a conditioned target into an adapter: the behaviour without the sampler.

A `condition/` sampler gives weighted samples of a target p*(x) (p(x | condition), or p(x)·exp(r/β));
training the adapter on them with the weights — minimise E_{p*}[−log q(x)] ≈ Σ_i w̄_i · (−log q(x_i))
with self-normalised weights w̄ (mean 1 over the data) — moves q toward p* in KL(p* ‖ q), so that
plain sampling from base + adapter behaves like the conditioned target. The data is the posterior
itself (`train_distill(config, posterior=…)`) or a JSONL of weighted samples, e.g. what
`steer sample … --json` prints: `{"prompt", "text", "weight"}` rows (a trailing summary line is
skipped). Completions are trained as sampled: tokens and all (EOS included when the sample ended on it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from steering.decode import Sample
from steering.errors import InputFormatError, InvalidArgument
from steering.jsonl import read_jsonl
from steering.models import LanguageModel
from steering.train.batching import Encoded, batch_rows, labelled_logprobs, micro_batches
from steering.train.loop import Progress, TrainConfig, TrainResult, run_training
from steering.train.losses import IGNORE
from steering.train.method import Method


class WeightedSamples(Protocol):
    """What distillation reads from a sampler's result (`steering.condition.Posterior`)."""

    @property
    def samples(self) -> Sequence[Sample]: ...

    @property
    def weights(self) -> torch.Tensor:
        """(N,) normalised weights."""
        ...

    @property
    def found(self) -> bool:
        """Whether any sample has positive weight."""
        ...

    def summary(self) -> str: ...


@dataclass
class DistillConfig(TrainConfig):
    """The shared fields; `data` is a JSONL of weighted samples (unless a posterior is passed)."""

    out: str = "runs/distill"
    eval_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not self.data:
            self.data = "<posterior>"  # train_distill(config, posterior=…) needs no file
        super().__post_init__()


@dataclass(frozen=True)
class WeightedSample:
    prompt: str
    completion: str
    weight: float
    token_ids: tuple[int, ...] | None = None  # as sampled (a posterior carries them)


@dataclass(frozen=True)
class WeightedRow:
    encoded: Encoded
    weight: float  # self-normalised: mean 1 over the data


def load_weighted(path: str) -> list[WeightedSample]:
    """`steer sample --json` output: {"prompt", "text", "weight"} rows; the summary line is skipped."""
    found = []
    for number, _, value in read_jsonl(
        path, what="weighted samples file", example='{"prompt": "p", "text": "t", "weight": 0.5}'
    ):
        if isinstance(value, dict) and "summary" in value:
            continue
        if (
            not isinstance(value, dict)
            or not isinstance(value.get("prompt"), str)
            or not isinstance(value.get("text"), str)
        ):
            raise InputFormatError(
                f"{path}:{number}: a weighted sample needs string fields 'prompt' and 'text'",
                received=repr(value)[:120],
                fix="use the output of `steer sample … --json`",
            )
        weight = value.get("weight", 1.0)
        if (
            not isinstance(weight, (int, float))
            or isinstance(weight, bool)
            or not weight >= 0
            or weight == float("inf")
        ):
            raise InputFormatError(
                f"{path}:{number}: field 'weight' must be a finite number ≥ 0", received=weight, fix="fix it"
            )
        tokens = value.get("tokens")
        found.append(
            WeightedSample(
                value["prompt"],
                value["text"],
                float(weight),
                tuple(tokens) if isinstance(tokens, list) else None,
            )
        )
    if not found or sum(s.weight for s in found) <= 0:
        raise InputFormatError(
            f"{path} has no sample with a positive weight", received=len(found), fix="sample again"
        )
    return found


def from_posterior(posterior: WeightedSamples) -> list[WeightedSample]:
    """The posterior's samples with their normalised weights (zero-weight samples dropped)."""
    if not posterior.found:
        raise InvalidArgument(
            "the posterior has no sample with weight: nothing to distil",
            received=posterior.summary(),
            fix="sample with a larger budget first",
        )
    return [
        WeightedSample(s.prompt, s.text, float(w), tuple(s.token_ids))
        for s, w in zip(posterior.samples, posterior.weights.tolist(), strict=True)
        if w > 0
    ]


class Distill(Method):
    """Weighted SFT on samples of a target, for the shared loop."""

    name = "distill"

    def __init__(self, samples: list[WeightedSample] | None = None) -> None:
        self.samples = samples

    def load(self, config: DistillConfig) -> list[WeightedSample]:
        return self.samples if self.samples is not None else load_weighted(config.data)

    def encode(
        self, model: LanguageModel, examples: list[WeightedSample], config: DistillConfig
    ) -> list[WeightedRow]:
        total = sum(e.weight for e in examples)
        rows = []
        for example in examples:
            prompt = model.encode(example.prompt)
            tokens = (
                list(example.token_ids)
                if example.token_ids is not None
                else model.encode_continuation(example.completion)
            )
            ids = (prompt + tokens)[: config.max_length]
            labels = ([IGNORE] * len(prompt) + tokens)[: config.max_length]
            if any(label != IGNORE for label in labels[1:]) and example.weight > 0:
                rows.append(WeightedRow(Encoded(ids, labels), example.weight * len(examples) / total))
        if not rows:
            raise InvalidArgument(
                f"no weighted sample has completion tokens within max_length={config.max_length}",
                received=f"{len(examples)} samples",
                fix="raise max_length",
            )
        return rows

    def _nll(self, model: LanguageModel, rows: list[WeightedRow]) -> torch.Tensor:
        batch = batch_rows([r.encoded for r in rows], model.pad_token_id)
        logq = labelled_logprobs(model, batch).sum(-1)
        weights = torch.tensor([r.weight for r in rows], dtype=logq.dtype)
        return -(weights * logq)

    def backward(
        self, model: LanguageModel, rows: list[WeightedRow], config: DistillConfig, *, step: int
    ) -> dict[str, Any]:
        total = 0.0
        for chunk in micro_batches(rows, config.batch_size):
            loss = self._nll(model, chunk).sum() / len(rows)
            loss.backward()
            total += float(loss.detach())
        return {"loss": total, "tokens": sum(len(r.encoded.ids) for r in rows)}

    def evaluate(
        self, model: LanguageModel, rows: list[WeightedRow], config: DistillConfig
    ) -> dict[str, Any]:
        total = sum(float(self._nll(model, chunk).sum()) for chunk in micro_batches(rows, config.batch_size))
        return {"eval_loss": total / len(rows)}


def train_distill(
    config: DistillConfig,
    *,
    posterior: WeightedSamples | None = None,
    resume: bool = False,
    model: LanguageModel | None = None,
    progress: Progress | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Distil weighted samples of a target into an adapter (`posterior` overrides `config.data`)."""
    method = Distill(from_posterior(posterior) if posterior is not None else None)
    return run_training(config, method, resume=resume, model=model, progress=progress, stop_after=stop_after)

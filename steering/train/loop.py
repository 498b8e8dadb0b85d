"""The training loop every method shares: data order, schedule, checkpoints, resume, early stop.

A method (SFT, DPO, …) says how to encode its examples, how to run the forward/backward passes of one
optimizer step, and how to evaluate (the hooks of `method.TrainingMethod`); `run_training` does the
rest the same way for all of them: the method's trained weights (a LoRA adapter named after it by
default), AdamW, linear warm-up then cosine, the data order of each epoch a permutation that depends
only on (seed, epoch), a checkpoint every `save_every` steps and at the end (weights + optimizer +
scheduler + RNG states, atomic), exact resume, early stopping on the eval loss with the best weights
kept, Ctrl-C saves, and the model handed back as it came (adapter removed).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from steering.errors import InvalidArgument
from steering.models import LanguageModel, load_model
from steering.paths import atomic_dir
from steering.train.data import split
from steering.train.losses import warmup_cosine
from steering.train.method import TrainedWeights, TrainingMethod
from steering.train.run import REPORT_TO, RunDir

Progress = Callable[[int, int, dict[str, Any]], None]


@dataclass
class TrainConfig:
    """Fields every method shares; a method's config adds its own."""

    data: str = ""
    model: str = "gemma-270m"
    out: str = "runs/run"
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 10
    epochs: int = 2
    max_steps: int = 0  # 0: the epochs decide
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 256
    eval_fraction: float = 0.1
    eval_every: int = 20
    patience: int = 3
    save_every: int = 50
    keep_checkpoints: int = 2
    seed: int = 0
    dtype: str = "float32"
    full: bool = False  # SFT: train every weight (a model directory) instead of a LoRA adapter
    report_to: str = "none"  # or "tensorboard": event files in RUN/tensorboard (TRL's report_to)

    def __post_init__(self) -> None:
        if not self.data:
            raise InvalidArgument(
                "training needs data: a JSONL file", received="data=''", fix="set data=FILE"
            )
        positive = (
            "learning_rate",
            "epochs",
            "batch_size",
            "grad_accum",
            "max_length",
            "save_every",
            "eval_every",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise InvalidArgument(
                    f"{name} must be positive", received=value, fix=f"set {name} to a positive number"
                )
        for name in ("max_steps", "warmup_steps", "patience", "weight_decay"):
            if getattr(self, name) < 0:
                raise InvalidArgument(
                    f"{name} must be ≥ 0", received=getattr(self, name), fix=f"set {name}=0 or more"
                )
        if self.keep_checkpoints < 1:
            raise InvalidArgument("keep_checkpoints must be ≥ 1", received=self.keep_checkpoints, fix="use 2")
        if self.report_to not in REPORT_TO:
            raise InvalidArgument(
                f"unknown report_to {self.report_to!r} (where metrics go besides metrics.jsonl; "
                f"allowed: {', '.join(REPORT_TO)})",
                received=self.report_to,
                fix="set report_to=none or report_to=tensorboard",
            )


@dataclass
class TrainResult:
    run: Path
    adapter: Path
    steps: int
    stopped: str  # "done", "early stop", "max_steps" or "stopped"
    metrics: list[dict[str, Any]] = field(default_factory=list)


class TrainingInterrupted(Exception):
    """Ctrl-C during training: a checkpoint was saved; the message says how to resume."""


def order(count: int, epoch: int, seed: int) -> list[int]:
    """The data order of one epoch: a permutation that depends only on (seed, epoch)."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()


@dataclass
class Trainer:
    """One run's moving parts: what the loop steps and what a checkpoint saves and restores."""

    config: TrainConfig
    method: TrainingMethod
    weights: TrainedWeights
    model: LanguageModel
    run: RunDir
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    total: int  # optimizer steps of the whole run
    steps_per_epoch: int
    step: int = 0  # optimizer steps done
    state: dict[str, Any] = field(default_factory=lambda: {"best_eval": None, "bad_evals": 0})

    @property
    def final(self) -> Path:
        """Where the final (or best) weights go: RUN/adapter, or RUN/model for a full run."""
        return self.run.path / ("model" if self.config.full else "adapter")

    def write_weights(self, directory: Path) -> None:
        """The trained weights and the method's extra files, written atomically."""
        with atomic_dir(directory) as tmp:
            self.weights.save(self.model, tmp, {"method": self.method.name, "step": self.step})
            self.method.save_extra(tmp)

    def save(self) -> None:
        self.run.save_checkpoint(
            self.step, write_adapter=self.write_weights, optimizer=self.optimizer,
            scheduler=self.scheduler, state=self.state, keep=self.config.keep_checkpoints,
        )  # fmt: skip

    def restore(self, checkpoint: Path) -> None:
        """Weights, extra files, optimizer, scheduler, RNG states and trainer state of a checkpoint."""
        self.weights.load(self.model, checkpoint / "adapter")
        self.method.load_extra(checkpoint / "adapter")
        self.state = RunDir.load_checkpoint(checkpoint, self.optimizer, self.scheduler)
        self.step = int(self.state.pop("step"))

    def train_step(self, rows: list[Any], *, epoch: float) -> dict[str, Any]:
        """One optimizer step over `rows`: the method's forward + backward, clip, step, schedule.

        `epoch` (fractional: epochs done after this step) goes into the step's record.
        """
        started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        record = self.method.backward(self.model, rows, self.config, step=self.step)
        record["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.params, 1.0))
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        record.update(step=self.step, epoch=epoch)
        record["tokens_per_s"] = record["tokens"] / (time.perf_counter() - started)
        return record

    def evaluate(self, rows: list[Any]) -> dict[str, Any]:
        """The method's held-out metrics (eval mode, no gradients); the best weights so far are kept."""
        module = self.model.module
        module.eval()
        try:
            with torch.no_grad():
                record = self.method.evaluate(self.model, rows, self.config)
        finally:
            module.train()
        best = self.state["best_eval"]
        if best is None or record["eval_loss"] < best:
            self.state.update(best_eval=record["eval_loss"], bad_evals=0)
            self.write_weights(self.final)
        else:
            self.state["bad_evals"] += 1
        return record


def run_training(
    config: TrainConfig,
    method: TrainingMethod,
    *,
    resume: bool = False,
    model: LanguageModel | None = None,
    progress: Progress | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train `method`'s weights; see the module docstring. `stop_after` ends after that step (resume tests)."""
    weights = method.weights(config)
    train_examples, eval_examples = split(method.load(config), config.eval_fraction, config.seed)
    run = RunDir(config.out, report_to=config.report_to)
    checkpoint = run.start(config, resume=resume)
    model = model or load_model(config.model, dtype=config.dtype)
    train_rows = method.encode(model, train_examples, config)
    eval_rows = method.encode(model, eval_examples, config) if eval_examples else []

    torch.manual_seed(config.seed)
    params = [*weights.make_parameters(model, config), *method.setup(model, config)]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_rows) / (config.batch_size * config.grad_accum))
    total = config.epochs * steps_per_epoch
    if config.max_steps:
        total = min(total, config.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, warmup=config.warmup_steps, total=total)
    )
    trainer = Trainer(
        config, method, weights, model, run, params, optimizer, scheduler, total, steps_per_epoch
    )
    if checkpoint is not None:
        trainer.restore(checkpoint)
    model.module.train()
    try:
        stopped = _loop(trainer, train_rows, eval_rows, progress=progress, stop_after=stop_after)
    except KeyboardInterrupt:
        trainer.save()
        raise TrainingInterrupted(
            f"interrupted at step {trainer.step}; checkpoint saved in {run.checkpoints}. "
            f"Resume with the same command and --resume."
        ) from None
    finally:
        # The model is the base again: use the saved adapter with `Adapter(result.adapter)`.
        model.module.eval()
        weights.release(model)
        run.close()
    if config.max_steps and trainer.step >= config.max_steps and stopped == "done":
        stopped = "max_steps"
    return TrainResult(run.path, trainer.final, trainer.step, stopped, run.metrics())


def _loop(
    trainer: Trainer,
    train_rows: list[Any],
    eval_rows: list[Any],
    *,
    progress: Progress | None,
    stop_after: int | None,
) -> str:
    """Step until the run is done, early-stopped or `stop_after`; returns how it stopped."""
    config, per_step = trainer.config, trainer.config.batch_size * trainer.config.grad_accum
    while trainer.step < trainer.total:
        if stop_after is not None and trainer.step >= stop_after:
            trainer.save()
            return "stopped"
        epoch, index = divmod(trainer.step, trainer.steps_per_epoch)
        permutation = order(len(train_rows), epoch, config.seed)
        chosen = [train_rows[i] for i in permutation[index * per_step : (index + 1) * per_step]]
        record = trainer.train_step(chosen, epoch=epoch + (index + 1) / trainer.steps_per_epoch)
        step = trainer.step
        if eval_rows and (step % config.eval_every == 0 or step == trainer.total):
            record.update(trainer.evaluate(eval_rows))
        trainer.run.log(record)
        if progress is not None:
            progress(step, trainer.total, record)
        if step % config.save_every == 0 or step == trainer.total:
            trainer.save()
        if eval_rows and config.patience and trainer.state["bad_evals"] >= config.patience:
            trainer.save()
            return "early stop"
    if not eval_rows:
        trainer.write_weights(trainer.final)
    return "done"

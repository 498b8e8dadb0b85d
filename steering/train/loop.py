"""The training loop every adapter method shares: data order, schedule, checkpoints, resume, early stop.

A method (SFT, DPO, …) says how to encode its examples, how to run the forward/backward passes of one
optimizer step, and how to evaluate; `run_training` does the rest the same way for all of them:
a LoRA adapter named after the method, AdamW, linear warm-up then cosine, the data order of each epoch
a permutation that depends only on (seed, epoch), a checkpoint every `save_every` steps and at the end
(adapter + optimizer + scheduler + RNG states, atomic), exact resume, early stopping on the eval loss
with the best adapter kept, Ctrl-C saves, and the model handed back as it came (adapter removed).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from steering.errors import InvalidArgument
from steering.models import LanguageModel, load_model
from steering.train.adapters import add_lora, remove_adapter, save_adapter
from steering.train.data import split
from steering.train.full import FullWeights
from steering.train.losses import warmup_cosine
from steering.train.run import RunDir

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


@dataclass
class TrainResult:
    run: Path
    adapter: Path
    steps: int
    stopped: str  # "done", "early stop", "max_steps" or "stopped"
    metrics: list[dict[str, Any]] = field(default_factory=list)


class TrainingInterrupted(Exception):
    """Ctrl-C during training: a checkpoint was saved; the message says how to resume."""


class Method(Protocol):
    """What a training method contributes to the shared loop."""

    name: str  # the adapter's name and the run's "method"

    def load(self, config: Any) -> list[Any]:
        """The examples of `config.data`, validated."""
        ...

    def encode(self, model: LanguageModel, examples: list[Any], config: Any) -> list[Any]:
        """Rows ready to batch (may precompute what stays fixed, e.g. reference log-probabilities)."""
        ...

    def backward(self, model: LanguageModel, rows: list[Any], config: Any) -> dict[str, Any]:
        """Forward and backward over the rows of one optimizer step; metrics incl. "loss" and "tokens"."""
        ...

    def evaluate(self, model: LanguageModel, rows: list[Any], config: Any) -> dict[str, Any]:
        """Held-out metrics incl. "eval_loss" (lower is better)."""
        ...


# Optional method hooks (duck-typed): `setup(model, config) -> list[Parameter]` adds trainable
# parameters beside the adapter (a reward head); `save_extra(directory)` / `load_extra(directory)`
# write and read them inside the adapter directory. A method that trains no LoRA adapter (a soft
# prompt) defines `make_parameters(model, config)`, `save_weights(model, directory, meta)`,
# `load_weights(directory)` and `release(model)` instead.


def order(count: int, epoch: int, seed: int) -> list[int]:
    """The data order of one epoch: a permutation that depends only on (seed, epoch)."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()


def run_training(
    config: TrainConfig,
    method: Method,
    *,
    resume: bool = False,
    model: LanguageModel | None = None,
    progress: Progress | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train `method`'s adapter; see the module docstring. `stop_after` ends after that step (resume tests)."""
    if config.full and method.name != "sft":
        raise InvalidArgument(
            f"full=true (every weight trained) is for SFT; {method.name} needs the base model beside "
            "the trained one (its reference or base books come from the adapter switched off)",
            received=f"full=true for {method.name}",
            fix="drop full=true (train a LoRA adapter), or use steer train sft",
        )
    examples = method.load(config)
    train_examples, eval_examples = split(examples, config.eval_fraction, config.seed)
    run = RunDir(config.out)
    checkpoint = run.start(config, resume=resume)
    model = model or load_model(config.model, dtype=config.dtype)
    train_rows = method.encode(model, train_examples, config)
    eval_rows = method.encode(model, eval_examples, config) if eval_examples else []

    torch.manual_seed(config.seed)
    # A method that owns its weights (a soft prompt) makes them; `full` trains every weight; the others
    # train a LoRA adapter.
    owner: Any = method if callable(getattr(method, "make_parameters", None)) else None
    if config.full:
        owner = FullWeights()
    if owner is not None:
        params = owner.make_parameters(model, config)
    else:
        params = add_lora(
            model,
            method.name,
            rank=config.lora_rank,
            alpha=config.lora_alpha,
            dropout=config.lora_dropout,
            target_modules=config.target_modules,
        )
    setup = getattr(method, "setup", None)
    if callable(setup):
        params = [*params, *setup(model, config)]
    save_extra = getattr(method, "save_extra", None)
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    per_step = config.batch_size * config.grad_accum
    steps_per_epoch = math.ceil(len(train_rows) / per_step)
    total = config.epochs * steps_per_epoch
    if config.max_steps:
        total = min(total, config.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, warmup=config.warmup_steps, total=total)
    )
    state: dict[str, Any] = {"best_eval": None, "bad_evals": 0}
    step = 0
    if checkpoint is not None:
        if owner is not None:
            owner.load_weights(checkpoint / "adapter")
        else:
            load_adapter_weights(model, method.name, checkpoint / "adapter")
        load_extra = getattr(method, "load_extra", None)
        if callable(load_extra):
            load_extra(checkpoint / "adapter")
        state = RunDir.load_checkpoint(checkpoint, optimizer, scheduler)
        step = int(state.pop("step"))

    final = run.path / ("model" if config.full else "adapter")  # a full run's weights are a model

    def write_adapter(directory: Path) -> None:
        meta = {"method": method.name, "step": step}
        if owner is not None:
            owner.save_weights(model, directory, meta)
        else:
            save_adapter(model, method.name, directory, meta, save_extra)

    def save() -> None:
        run.save_checkpoint(
            step, write_adapter=write_adapter, optimizer=optimizer, scheduler=scheduler, state=state,
            keep=config.keep_checkpoints,
        )  # fmt: skip

    module = model.module
    module.train()
    stopped = "done"
    try:
        while step < total:
            if stop_after is not None and step >= stop_after:
                stopped = "stopped"
                break
            epoch, index = divmod(step, steps_per_epoch)
            permutation = order(len(train_rows), epoch, config.seed)
            chosen = [train_rows[i] for i in permutation[index * per_step : (index + 1) * per_step]]
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            if hasattr(method, "step"):
                method.step = step  # methods that sample (RL) seed their rollouts with it
            record = method.backward(model, chosen, config)
            record["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, 1.0))
            record["lr"] = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            step += 1
            record.update(step=step, epoch=epoch + (index + 1) / steps_per_epoch)
            record["tokens_per_s"] = record["tokens"] / (time.perf_counter() - started)
            if eval_rows and (step % config.eval_every == 0 or step == total):
                record.update(_evaluate(method, model, eval_rows, config))
                best = state["best_eval"]
                if best is None or record["eval_loss"] < best:
                    state.update(best_eval=record["eval_loss"], bad_evals=0)
                    write_adapter(final)
                else:
                    state["bad_evals"] += 1
            run.log(record)
            if progress is not None:
                progress(step, total, record)
            if step % config.save_every == 0 or step == total:
                save()
            if eval_rows and config.patience and state["bad_evals"] >= config.patience:
                stopped = "early stop"
                save()
                break
        if stopped == "stopped":
            save()
        elif not eval_rows:
            write_adapter(final)
    except KeyboardInterrupt:
        save()
        raise TrainingInterrupted(
            f"interrupted at step {step}; checkpoint saved in {run.checkpoints}. "
            f"Resume with the same command and --resume."
        ) from None
    finally:
        # The model is the base again: use the saved adapter with `Adapter(result.adapter)`.
        module.eval()
        if owner is not None:
            owner.release(model)
        else:
            remove_adapter(model, method.name)
    if config.max_steps and step >= config.max_steps and stopped == "done":
        stopped = "max_steps"
    return TrainResult(run.path, final, step, stopped, run.metrics())


def _evaluate(method: Method, model: LanguageModel, rows: list[Any], config: Any) -> dict[str, Any]:
    module = model.module
    module.eval()
    try:
        with torch.no_grad():
            return method.evaluate(model, rows, config)
    finally:
        module.train()


def load_adapter_weights(model: LanguageModel, name: str, directory: Path) -> None:
    """Put a checkpoint's adapter weights into the live adapter `name` (same names, same shapes)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    saved = load_file(str(directory / "adapter_model.safetensors"))
    state = {key.removeprefix("base_model.model."): value for key, value in saved.items()}
    result = set_peft_model_state_dict(model.module, state, adapter_name=name)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise InvalidArgument(
            f"the checkpoint adapter in {directory} does not fit this model",
            received=unexpected[:4],
            fix="resume with the same model and LoRA settings",
        )

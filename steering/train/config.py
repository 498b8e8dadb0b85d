"""The fields every training method shares (`TrainConfig`), checked when a config is made.

A method's config subclasses `TrainConfig` and adds its own fields; `check_field_types` checks every
field of every method's config against its declared type in one place (whole numbers, finite floats,
booleans, strings), so a TOML string, a NaN or a boolean never reaches the loop.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import MISSING, dataclass, fields
from typing import Any

from steering.errors import InvalidArgument
from steering.train.run import REPORT_TO

SEED_LIMIT = 2**32
LAUNCHERS = ("none", "accelerate")


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
    # Train on top of this adapter: merged into the weights for the run (the reference of DPO/RL is its
    # policy), the saved adapter is the sum of both (train/stacking.py). "" = start from the base.
    init_adapter: str = ""
    # Training in several processes (train/distributed.py): `steer train … launcher=accelerate
    # processes=N` starts N through `accelerate launch`; each step then takes batch_size × grad_accum × N
    # rows. "none": this process alone (or started by you with accelerate launch / torchrun).
    launcher: str = "none"
    processes: int = 1

    def __post_init__(self) -> None:
        check_field_types(self)
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
        if not 0 <= self.seed < SEED_LIMIT:
            raise InvalidArgument(
                "the config key seed must be between 0 and 2**32 - 1 for training (the data order and the rollouts "
                "derive their seeds from it)",
                received=self.seed,
                fix="set e.g. seed=0",
            )
        if self.init_adapter and self.full:
            raise InvalidArgument(
                "init_adapter (LoRA on top of an adapter) cannot be combined with full=true",
                received=f"init_adapter={self.init_adapter!r}, full=true",
                fix="drop one of them",
            )
        if self.launcher not in LAUNCHERS:
            raise InvalidArgument(
                f"unknown launcher {self.launcher!r} (allowed: {', '.join(LAUNCHERS)})",
                received=self.launcher,
                fix="set launcher=accelerate processes=N to train in N processes, or launcher=none",
            )
        if self.processes < 1:
            raise InvalidArgument(
                "processes must be ≥ 1",
                received=self.processes,
                fix="set processes=2 (with launcher=accelerate)",
            )
        if self.launcher == "accelerate" and self.processes < 2:
            raise InvalidArgument(
                "launcher=accelerate needs processes=N with N ≥ 2 (one process needs no launcher)",
                received=f"processes={self.processes}",
                fix="set processes=2, or drop launcher=accelerate",
            )
        if self.report_to not in REPORT_TO:
            raise InvalidArgument(
                f"unknown report_to {self.report_to!r} (where metrics go besides metrics.jsonl; "
                f"allowed: {', '.join(REPORT_TO)})",
                received=self.report_to,
                fix="set report_to=none or report_to=tensorboard",
            )


def check_field_types(config: Any) -> None:
    """Every field of a method's config has its declared type: int, float (finite), bool, str, a string or a
    list of strings, or a list of finite floats.

    One place for every method: TOML and `key=value` give strings, floats and booleans anywhere, and a
    NaN learning rate would pass any `<= 0` check.

    Raises:
        InvalidArgument: names the field, the value received and its type.
    """
    for item in fields(config):
        value = getattr(config, item.name)
        kind = item.type if isinstance(item.type, str) else getattr(item.type, "__name__", "")
        default = item.default if item.default is not MISSING else None
        if kind == "bool":
            bad, need = not isinstance(value, bool), "true or false"
        elif kind == "int":
            bad = isinstance(value, bool) or not isinstance(value, numbers.Integral)
            need = "a whole number"
        elif kind == "float":
            bad = isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            need = "a finite number"
        elif kind == "str":
            bad, need = not isinstance(value, str), "a string"
        elif kind == "str | list[str]":
            bad = not isinstance(value, str) and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            )
            need = "a string or a list of strings"
        elif kind == "list[float]":
            bad = not isinstance(value, list) or not all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in value
            )
            need = "a list of finite numbers"
        else:
            continue
        if bad:
            shown = "None" if value is None else f"{value!r} ({type(value).__name__})"
            example = str(default).lower() if isinstance(default, bool) else repr(default)
            raise InvalidArgument(
                f"the config key {item.name} must be {need}",
                received=shown,
                fix=f"set e.g. {item.name}={example}" if default is not None else f"set {item.name}",
            )
        if kind == "int":
            setattr(config, item.name, int(value))
        elif kind == "float":
            setattr(config, item.name, float(value))
        elif kind == "list[float]":
            setattr(config, item.name, [float(v) for v in value])

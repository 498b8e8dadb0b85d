"""A training run's directory: resolved config, metrics, checkpoints, the final adapter; exact resume.

    RUN/
      config.json              the resolved config (every field, after overrides)
      metrics.jsonl            one line per optimizer step (loss, lr, tokens/s, …) and per evaluation
      checkpoints/step-000040/ adapter + optimizer + scheduler + RNG states + trainer state
      adapter/                 the final (or best) adapter, peft format, loadable with --adapter RUN/adapter
      tensorboard/             with report_to = "tensorboard": event files of every metrics.jsonl scalar

Every write is atomic (temporary sibling + rename), so an interrupted save leaves the previous
checkpoint intact. Resuming reads the newest checkpoint, refuses a config that changed a field that
cannot change mid-run (listing them), truncates metrics written after that checkpoint, and restores
the RNG states, so the resumed run computes what the uninterrupted one would have. TensorBoard event
files (`report_to = "tensorboard"`) get the same scalars as metrics.jsonl; a resumed run purges the
events written after its checkpoint, as it truncates metrics.jsonl.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steering.errors import InvalidArgument, did_you_mean
from steering.paths import atomic_dir, atomic_write_text

# Fields that may change when a run is resumed (they do not change what was computed so far).
RESUMABLE = {
    "epochs", "max_steps", "save_every", "eval_every", "keep_checkpoints", "patience", "out", "report_to",
}  # fmt: skip
REPORT_TO = ("none", "tensorboard")  # where metrics go besides metrics.jsonl (TRL's `report_to`)


def read_config(cls: type, path: str | Path | None, overrides: Sequence[str] = ()) -> Any:
    """A config dataclass from a TOML file and `key=value` overrides (values parsed as TOML).

    Unknown keys are refused with the closest known one; so are malformed overrides.
    """
    values: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise InvalidArgument(
                f"the config file {path} does not exist", received=str(path), fix="check the path"
            )
        try:
            values = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise InvalidArgument(
                f"{path}: not valid TOML ({error})", received=str(path), fix="correct it"
            ) from error
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InvalidArgument(
                "overrides are key=value", received=item, fix="write e.g. learning_rate=1e-4"
            )
        try:
            values[key.strip()] = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            values[key.strip()] = raw.strip()  # a bare word: a string
    known = {f.name for f in fields(cls)}
    for key in values:
        if key not in known:
            raise InvalidArgument(
                f"unknown config key {key!r}.{did_you_mean(key, known)}",
                received=key,
                fix="known keys: " + ", ".join(sorted(known)),
            )
    try:
        return cls(**values)
    except TypeError as error:
        raise InvalidArgument(
            f"the config is incomplete: {error}", received=sorted(values), fix="add the key"
        ) from error


class RunDir:
    """The files of one run; `start` makes a new one or resumes the newest checkpoint."""

    def __init__(self, path: str | Path, *, report_to: str = "none") -> None:
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.metrics_path = self.path / "metrics.jsonl"
        self.tensorboard = TensorBoardLog(self.path / "tensorboard") if report_to == "tensorboard" else None

    def start(self, config: Any, *, resume: bool) -> Path | None:
        """Write the config; returns the checkpoint to resume from (None for a fresh run).

        A fresh run refuses a directory that already has checkpoints unless `resume` is set.
        """
        latest = self.latest_checkpoint()
        if self.tensorboard is not None:  # a missing package is refused before anything is written
            self.tensorboard.start(after=_step_of(latest) if latest is not None else None)
        config_path = self.path / "config.json"
        current = _jsonable(asdict(config))
        if latest is not None and not resume:
            raise InvalidArgument(
                f"{self.path} already holds a run (latest checkpoint {latest.name})",
                received=str(self.path),
                fix="pass --resume to continue it, or choose another out directory",
            )
        if latest is not None and config_path.is_file():
            saved = json.loads(config_path.read_text())
            changed = sorted(
                k for k in set(saved) | set(current) if saved.get(k) != current.get(k) and k not in RESUMABLE
            )
            if changed:
                raise InvalidArgument(
                    "the config changed fields that cannot change when resuming: " + ", ".join(changed),
                    received={k: (saved.get(k), current.get(k)) for k in changed},
                    fix="resume with the original values, or start a new run in another directory",
                )
        atomic_write_text(config_path, json.dumps(current, indent=2) + "\n")
        if latest is not None:
            self._truncate_metrics(_step_of(latest))
        elif self.metrics_path.exists():
            self.metrics_path.unlink()
        return latest

    def latest_checkpoint(self) -> Path | None:
        if not self.checkpoints.is_dir():
            return None
        done = sorted(
            p
            for p in self.checkpoints.iterdir()
            if p.name.startswith("step-") and (p / "state.json").is_file()
        )
        return done[-1] if done else None

    def log(self, record: Mapping[str, Any]) -> None:
        """Append one metrics line (flushed and synced: a crash loses at most the line being written)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with self.metrics_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(_jsonable(dict(record))) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if self.tensorboard is not None:
            self.tensorboard.log(record)

    def close(self) -> None:
        """Flush and close what `log` keeps open (the TensorBoard writer)."""
        if self.tensorboard is not None:
            self.tensorboard.close()

    def metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def _truncate_metrics(self, step: int) -> None:
        kept = [r for r in self.metrics() if int(r.get("step", 0)) <= step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    def save_checkpoint(
        self,
        step: int,
        *,
        write_adapter: Any,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        state: Mapping[str, Any],
        keep: int,
    ) -> Path:
        """One checkpoint directory, written atomically; older ones beyond `keep` are removed."""
        target = self.checkpoints / f"step-{step:06d}"
        with atomic_dir(target) as tmp:
            write_adapter(tmp / "adapter")
            torch.save(
                {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": rng_state(),
                },
                tmp / "trainer.pt",
            )
            (tmp / "state.json").write_text(json.dumps(_jsonable({"step": step, **state}), indent=2) + "\n")
        done = sorted(p for p in self.checkpoints.iterdir() if p.name.startswith("step-"))
        for old in done[: max(0, len(done) - keep)]:
            shutil.rmtree(old, ignore_errors=True)
        return target

    @staticmethod
    def load_checkpoint(checkpoint: Path, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
        """Restore optimizer, scheduler and RNG states; returns the trainer state (step, …)."""
        saved = torch.load(checkpoint / "trainer.pt", weights_only=False)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        set_rng_state(saved["rng"])
        return json.loads((checkpoint / "state.json").read_text())


class TensorBoardLog:
    """Every scalar of a metrics line as a TensorBoard event, at the line's `step`, offline.

    Tags follow TRL's layout: `eval_loss` → `eval/loss`, every other key → `train/<key>`
    (`train/loss`, `train/lr`, `train/reward`, …). Written with `torch.utils.tensorboard`.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.writer: Any = None
        self.purge_step: int | None = None

    def start(self, *, after: int | None) -> None:
        """Refuse a missing `tensorboard` package before training; `after`: the resumed checkpoint's step.

        Raises:
            InvalidArgument: the tensorboard package is not installed.
        """
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise InvalidArgument(
                'report_to = "tensorboard" needs the tensorboard package, which is not installed',
                received="report_to=tensorboard",
                fix="pip install tensorboard (or steering[tensorboard]), or set report_to=none",
            ) from None
        if after is None:  # a fresh run: no events of an earlier one (as metrics.jsonl is removed)
            shutil.rmtree(self.directory, ignore_errors=True)
        self.purge_step = None if after is None else after + 1  # events past the checkpoint are dropped

    def log(self, record: Mapping[str, Any]) -> None:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.directory), purge_step=self.purge_step)
        step = int(record["step"])
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(scalar_tag(key), value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def scalar_tag(key: str) -> str:
    """The TensorBoard tag of a metrics key: `eval_loss` → `eval/loss`, `loss` → `train/loss`."""
    return f"eval/{key.removeprefix('eval_')}" if key.startswith("eval_") else f"train/{key}"


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[1])


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value

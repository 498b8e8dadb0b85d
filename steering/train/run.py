"""A training run's directory: resolved config, status, metrics, checkpoints, the final adapter; exact resume.

    RUN/
      config.json              the resolved config (every field, after overrides)
      status.json              running → finished | interrupted | failed (a killed run stays "running")
      metrics.jsonl            one line per optimizer step (loss, lr, tokens/s, …) and per evaluation
      checkpoints/step-000040/ adapter + trainer.safetensors/trainer.json (optimizer, scheduler and RNG
                               states: no pickle, see checkpoint.py) + state.json (step, best eval)
      adapter/                 the final (or best) adapter, peft format, loadable with --adapter RUN/adapter
      tensorboard/             with report_to = "tensorboard": event files of every metrics.jsonl scalar

Every write is atomic (temporary sibling + rename), so an interrupted save leaves the previous
checkpoint intact; the temporary files a kill leaves behind are removed when the run starts again.
A run is checked (`prepare`) before anything is written, so one refused or failing before its first
step leaves no directory behind. Resuming reads the newest checkpoint, refuses a config that changed
a field that cannot change mid-run (listing them), truncates metrics written after that checkpoint
(a last line cut by a kill is skipped with a warning), and restores the RNG states, so the resumed
run computes what the uninterrupted one would have. TensorBoard event files (`report_to =
"tensorboard"`) get the same scalars as metrics.jsonl; a resumed run purges the events written after
its checkpoint, as it truncates metrics.jsonl. `status.json` lets `steer report` and the loaders of
trained weights say when a run did not finish.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from steering.errors import InputFormatError, InvalidArgument, did_you_mean
from steering.jsonl import read_text
from steering.paths import RUN_STATUS, atomic_dir, atomic_write_text, read_run_status
from steering.train.checkpoint import STATE, read_trainer_state, rng_state, set_rng_state, write_trainer_state
from steering.train.tensorboard import TensorBoardLog

log = logging.getLogger(__name__)

# Fields that may change when a run is resumed (they do not change what was computed so far).
RESUMABLE = {
    "epochs", "max_steps", "save_every", "eval_every", "keep_checkpoints", "patience", "out", "report_to",
}  # fmt: skip
REPORT_TO = ("none", "tensorboard")  # where metrics go besides metrics.jsonl (TRL's `report_to`)
CHECKPOINT = re.compile(r"step-\d{6,}")
LEFTOVER = re.compile(r"\..+\.(tmp|old)-.+")  # what atomic_dir / atomic_write_text leave when killed


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
            values = tomllib.loads(read_text(file, what="config file"))
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
    """The files of one run: `prepare` checks (writing nothing), `begin` writes; see the module docstring."""

    def __init__(self, path: str | Path, *, report_to: str = "none", writer: bool = True) -> None:
        self.path = Path(path)
        # False in every training process but the first (train/distributed.py): it reads, never writes.
        self.writer = writer
        self.checkpoints = self.path / "checkpoints"
        self.metrics_path = self.path / "metrics.jsonl"
        self.tensorboard = TensorBoardLog(self.path / "tensorboard") if report_to == "tensorboard" else None
        self.kept: list[dict[str, Any]] = []  # the metrics a resumed run keeps (read by `prepare`)
        self.begun = False

    def prepare(self, config: Any, *, resume: bool) -> Path | None:
        """Check the directory against the config and `resume`; returns the checkpoint to resume from.

        Nothing is written, so a run refused here (or failing while its model and data load) leaves
        the directory as it was.

        Raises:
            InvalidArgument: `resume` without a checkpoint to resume from; a checkpoint without
                `resume`; a changed config field that cannot change; an old-format checkpoint; a
                damaged metrics.jsonl or config.json; `report_to = "tensorboard"` without the package.
        """
        if self.path.exists() and not self.path.is_dir():
            raise InvalidArgument(
                f"the run directory {self.path} is a file",
                received=str(self.path),
                fix="set out= to a directory (it is made if missing), not to a file",
            )
        if resume and not self.path.is_dir():
            raise InvalidArgument(
                f"nothing to resume: the run directory {self.path} does not exist",
                received=str(self.path),
                fix="check out= (the directory of the run to continue), or drop --resume to start a new run",
            )
        latest = self.latest_checkpoint()
        if resume and latest is None:
            status = read_run_status(self.path) or {}
            raise InvalidArgument(
                f"nothing to resume: {self.path} has no checkpoint"
                + (f" (its run is {status['status']})" if "status" in status else ""),
                received=str(self.path),
                fix="drop --resume to start the run from the beginning (checkpoints are written every "
                "save_every steps and on Ctrl-C)",
            )
        if latest is not None and not resume:
            raise InvalidArgument(
                f"{self.path} already holds a run (latest checkpoint {latest.name})",
                received=str(self.path),
                fix="pass --resume to continue it, or choose another out directory",
            )
        if self.tensorboard is not None:  # a missing package is refused before anything is written
            self.tensorboard.check()
        if latest is not None:
            check_readable(latest)
            self._check_unchanged(config)
            self.kept = [r for r in self.metrics() if int(r.get("step", 0)) <= _step_of(latest)]
        return latest

    def begin(self, config: Any, checkpoint: Path | None) -> None:
        """Write the config and the "running" status; keep the metrics up to `checkpoint` (all, fresh).

        Temporary files and directories of writes that a kill cut short are removed first.
        """
        if not self.writer:
            self.begun = True
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self.remove_leftovers()
        step = _step_of(checkpoint) if checkpoint is not None else 0
        if self.tensorboard is not None:
            self.tensorboard.start(after=step if checkpoint is not None else None)
        atomic_write_text(self.path / "config.json", json.dumps(_jsonable(asdict(config)), indent=2) + "\n")
        if checkpoint is not None:
            atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in self.kept))
        else:
            self.metrics_path.unlink(missing_ok=True)
        self.set_status("running", step=step)
        self.begun = True

    def start(self, config: Any, *, resume: bool) -> Path | None:
        """`prepare` then `begin`: returns the checkpoint to resume from (None for a fresh run)."""
        checkpoint = self.prepare(config, resume=resume)
        self.begin(config, checkpoint)
        return checkpoint

    def set_status(self, status: str, *, step: int, **extra: Any) -> None:
        """RUN/status.json: running, finished, interrupted or failed, and the step (atomic)."""
        if not self.writer:
            return
        record = {"status": status, "step": step, **extra}
        atomic_write_text(self.path / RUN_STATUS, json.dumps(_jsonable(record), indent=2) + "\n")

    def discard(self) -> None:
        """Remove what `begin` wrote, for a fresh run that failed before its first step; other files stay."""
        if not self.writer:
            return
        for name in ("config.json", RUN_STATUS, "metrics.jsonl"):
            (self.path / name).unlink(missing_ok=True)
        for name in ("tensorboard", "adapter", "model", "checkpoints"):
            shutil.rmtree(self.path / name, ignore_errors=True)
        self.remove_leftovers()
        with contextlib.suppress(OSError):
            self.path.rmdir()  # only when nothing of the user's is in it

    def remove_leftovers(self) -> list[Path]:
        """The `.NAME.tmp-*` / `.NAME.old-*` entries of atomic writes cut short by a kill, removed."""
        found = [
            entry
            for folder in (self.path, self.checkpoints)
            if folder.is_dir()
            for entry in folder.iterdir()
            if LEFTOVER.match(entry.name)
        ]
        for entry in found:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        return found

    def latest_checkpoint(self) -> Path | None:
        if not self.checkpoints.is_dir():
            return None
        done = sorted(
            p
            for p in self.checkpoints.iterdir()
            if CHECKPOINT.fullmatch(p.name) and (p / "state.json").is_file()
        )
        return done[-1] if done else None

    def log(self, record: Mapping[str, Any]) -> None:
        """Append one metrics line (flushed and synced: a crash loses at most the line being written)."""
        if not self.writer:
            return
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
        """The records of metrics.jsonl; a cut last line (a kill while writing it) is skipped with a warning.

        Raises:
            InputFormatError: a line before the last is not a JSON object (the file was damaged).
        """
        return read_metrics(self.metrics_path)

    def save_checkpoint(
        self,
        step: int,
        *,
        write_adapter: Any,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        state: Mapping[str, Any],
        keep: int,
        rng: Mapping[str, Any] | None = None,
    ) -> Path:
        """One checkpoint directory, written atomically; older ones beyond `keep` are removed.

        `rng`: the random generators' states to save (default: as they are now).
        """
        target = self.checkpoints / f"step-{step:06d}"
        if not self.writer:
            return target
        with atomic_dir(target) as tmp:
            write_adapter(tmp / "adapter")
            trainer = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng if rng is not None else rng_state(),
            }
            write_trainer_state(tmp, trainer)
            (tmp / "state.json").write_text(json.dumps(_jsonable({"step": step, **state}), indent=2) + "\n")
        done = sorted(p for p in self.checkpoints.iterdir() if CHECKPOINT.fullmatch(p.name))
        for old in done[: max(0, len(done) - keep)]:
            # Out of sight in one rename, then deleted: a kill midway leaves a leftover, not half a checkpoint.
            trash = Path(tempfile.mkdtemp(prefix=f".{old.name}.old-", dir=self.checkpoints))
            os.replace(old, trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        self.set_status("running", step=step)
        return target

    @staticmethod
    def load_checkpoint(checkpoint: Path, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
        """Restore optimizer, scheduler and RNG states; returns the trainer state (step, …).

        Raises:
            InvalidArgument: the checkpoint is of the old pickle format, or damaged.
        """
        saved = read_trainer_state(checkpoint)
        try:
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            set_rng_state(saved["rng"])
            state = json.loads((checkpoint / "state.json").read_text(encoding="utf-8"))
            int(state["step"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise InvalidArgument(
                f"the checkpoint {checkpoint} does not fit this run",
                received=f"{type(error).__name__}: {error}",
                fix=f"delete {checkpoint} to resume from the checkpoint before it, or start a new run",
            ) from None
        return dict(state)

    def saved_config(self, *, fix: str) -> dict[str, Any]:
        """RUN/config.json as a dict ({} when there is none).

        Raises:
            InputFormatError: it is not UTF-8 JSON, or not a JSON object; `fix` says what to do.
        """
        config_path = self.path / "config.json"
        if not config_path.is_file():
            return {}
        try:
            saved = json.loads(config_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputFormatError(
                f"{config_path} is not valid JSON ({error})", received=str(config_path), fix=fix
            ) from None
        if not isinstance(saved, dict):
            raise InputFormatError(
                f"{config_path} must hold a JSON object", received=f"a JSON {type(saved).__name__}", fix=fix
            )
        return saved

    def _check_unchanged(self, config: Any) -> None:
        saved = self.saved_config(fix="restore it, or delete it to resume with the config given now")
        if not saved:
            return
        current = _jsonable(asdict(config))
        changed = sorted(
            k for k in set(saved) | set(current) if saved.get(k) != current.get(k) and k not in RESUMABLE
        )
        if changed:
            raise InvalidArgument(
                "the config changed fields that cannot change when resuming: " + ", ".join(changed),
                received={k: (saved.get(k), current.get(k)) for k in changed},
                fix="resume with the original values, or start a new run in another directory",
            )


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl; a cut last line is skipped with a warning (see `RunDir.metrics`)."""
    if not path.is_file():
        return []
    numbered = [
        (number, line)
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").split("\n"), start=1)
        if line.strip()
    ]
    records = []
    for index, (number, line) in enumerate(numbered):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if index == len(numbered) - 1:
                log.warning(
                    "%s:%d: the last line is cut (the run was stopped while writing it); skipped",
                    path,
                    number,
                )
                break
            raise InputFormatError(
                f"line {number} of {path} is not a metrics record ({error.msg} at column {error.colno}); "
                "only the last line can be cut by a kill, so this file was damaged or edited",
                received=line[:120],
                fix=f"repair or delete line {number} of {path}",
            ) from None
        if not isinstance(record, dict):
            raise InputFormatError(
                f"line {number} of {path} is not a metrics record (a JSON object)",
                received=line[:120],
                fix=f"repair or delete line {number} of {path}",
            )
        records.append(record)
    return records


def check_readable(checkpoint: Path) -> None:
    """Refuse an old-format checkpoint (a pickle) before any model is loaded; see `checkpoint.py`."""
    if not (checkpoint / STATE).is_file():
        read_trainer_state(checkpoint)  # raises the message that fits (old format, or damaged)


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

"""TensorBoard event files of a run's metrics (`report_to = "tensorboard"`), written offline."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from steering.errors import InvalidArgument


class TensorBoardLog:
    """Every scalar of a metrics line as a TensorBoard event, at the line's `step`, offline.

    Tags follow TRL's layout: `eval_loss` → `eval/loss`, every other key → `train/<key>`
    (`train/loss`, `train/lr`, `train/reward`, …). Written with `torch.utils.tensorboard`.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.writer: Any = None
        self.purge_step: int | None = None

    def check(self) -> None:
        """Refuse a missing `tensorboard` package before training.

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

    def start(self, *, after: int | None) -> None:
        """Get ready to log; `after`: the resumed checkpoint's step (None: a fresh run)."""
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

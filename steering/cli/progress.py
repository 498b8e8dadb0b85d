"""A progress bar that appears with the first progress, not before.

Until work reports progress, a transient spinner says what is being prepared (loading the model,
reading the data); an error raised meanwhile is printed alone, without a half-drawn bar above it.
Rich allows one live display at a time, so the spinner stops when the bar starts.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.status import Status


class LazyProgress:
    """One task's bar on `console`, started by the first `advance` or `update`.

    Args:
        console: where to draw (stderr).
        description: the task's label.
        total: the task's total units (None: unknown until `update(total=...)`).
        waiting: the spinner's text until the bar starts (None: no spinner).
    """

    def __init__(
        self, console: Console, description: str, *, total: float | None, waiting: str | None = None
    ):
        self.console = console
        self.description, self.total, self.waiting = description, total, waiting
        self._status: Status | None = None
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> LazyProgress:
        if self.waiting:
            self._status = self.console.status(self.waiting)
            self._status.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop_status()
        if self._bar is not None:
            self._bar.stop()

    @property
    def started(self) -> bool:
        return self._bar is not None

    def print(self, *objects: Any) -> None:
        """Print above the bar (or the spinner)."""
        self.console.print(*objects)

    def advance(self, units: float) -> None:
        bar, task = self._started()
        bar.advance(task, units)

    def update(self, **fields: Any) -> None:
        """Set the task's `completed`, `total` or `description` (rich's `Progress.update`)."""
        bar, task = self._started()
        bar.update(task, **fields)

    def _started(self) -> tuple[Progress, TaskID]:
        if self._bar is None or self._task is None:
            self._stop_status()
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self._bar, self._task

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

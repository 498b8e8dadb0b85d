"""Where steering keeps its caches, resolved once and passed down.

`STEERING_HOME` (default `~/.cache/steering`) holds converted models under `models/`.
Nothing else in the library reads environment variables for paths.

A training run's directory holds `status.json` (`RUN_STATUS`): "running" from its start, then
"finished", "interrupted" or "failed"; a killed run stays "running". It lives here, at the bottom,
because the loaders of trained weights (controls, models) warn about an unfinished run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from steering.errors import InvalidArgument

RUN_STATUS = "status.json"


def steering_home() -> Path:
    """The cache root: `$STEERING_HOME`, or `~/.cache/steering`."""
    env = os.environ.get("STEERING_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "steering"


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success rename it to `target` atomically.

    On any error the temporary directory is removed and `target` is left as it was,
    so a reader never sees a half-written directory.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            # Move the old copy aside first so that the rename below is a single step.
            trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, trash / "old")
            os.replace(tmp, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def writing(path: Path, *, what: str, fix: str, action: str = "write") -> Iterator[None]:
    """Turn an OSError while writing `path` into one clear error: "could not {action} {what} {path} (why)"."""
    try:
        yield
    except OSError as error:
        raise InvalidArgument(
            f"could not {action} {what} {path} ({error.strerror or error})", received=str(path), fix=fix
        ) from None


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_run_status(run: Path) -> dict[str, Any] | None:
    """RUN/status.json, or None when the directory has none (or it cannot be read)."""
    try:
        status = json.loads((Path(run) / RUN_STATUS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def unfinished_run_note(weights: Path) -> str | None:
    """A warning for trained weights (RUN/adapter, RUN/model) whose run did not finish; None otherwise."""
    status = read_run_status(Path(weights).parent)
    if status is None or status.get("status") == "finished":
        return None
    state, step = status.get("status"), status.get("step")
    how = {
        "running": "it is still training or was killed; "
        + (f"its last checkpoint is at step {step}" if step else "it had no checkpoint yet"),
        "interrupted": f"it was interrupted at step {step}",
        "failed": f"it failed at step {step}",
    }.get(str(state), f"its status is {state!r}")
    return (
        f"{weights} comes from a training run that did not finish: {how}. These are the weights it "
        "had written so far; finish the run with the same `steer train …` command and --resume"
    )

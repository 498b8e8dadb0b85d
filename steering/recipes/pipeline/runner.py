"""`steer run RECIPE.toml`: run a recipe's steps in order in one run folder, each cached by its key.

A run folder:

    runs/instruct/
      .steering-recipe          marks the folder as a recipe run's (anything else is never deleted)
      .lock                     held while a run is going (a second run on the folder is refused)
      steps/<name>/             one folder per step: its outputs, started.json, then step.json
      report.html               every finished step side by side (rewritten after each step)

The key of a step is a hash of its kind (and the kind's version), its resolved options, the recipe's
model and seed, and the keys of the steps it refers to. A step whose `step.json` holds the same key is
skipped; a changed option changes its key and so the keys of every step that refers to it, which run
again (the runner says which option changed). A step killed part way (no step.json) is run again:
from scratch, or — for the resumable kinds, the training ones — continued from its last checkpoint.
`step.json` is written last and atomically, so `kill -9` at any moment loses at most the current
step's progress since its last checkpoint.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steering.errors import InvalidArgument
from steering.paths import atomic_write_text
from steering.recipes.pipeline.contract import (
    ModelPool,
    StepContext,
    StepKind,
    StepRecord,
    build_options,
)
from steering.recipes.pipeline.spec import Recipe, StepSpec, is_reference, load_recipe, reference_step

MARK = ".steering-recipe"


@dataclass
class Event:
    """What the runner tells its caller: a step starting (`step`), progress within it, a step ending."""

    kind: str  # "step" | "progress" | "done"
    name: str
    index: int
    count: int
    status: str = ""  # for "step": cached | run | resume | rerun
    note: str = ""
    done: int = 0
    total: int | None = None
    seconds: float = 0.0


@dataclass
class RunResult:
    """A finished (or stopped) run: its folder, the records of the finished steps, the report."""

    folder: Path
    records: dict[str, StepRecord] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    report: Path | None = None


def resolved_options(kind: type[StepKind], spec: StepSpec, quick: bool) -> dict[str, Any]:
    """The step's options as they run: the recipe's, then (with --quick) the kind's toy sizes and the recipe's."""
    values = dict(spec.options)
    if quick:
        values |= dict(kind.quick) | spec.quick
    return values


def step_key(
    recipe: Recipe, kind: type[StepKind], options: Mapping[str, Any], keys: Mapping[str, str]
) -> str:
    """The cache key: what the step's output depends on (referenced steps by their own keys)."""

    def resolve(value: Any) -> Any:  # "@sft.adapter" → "<sft's key>.adapter", in lists and tables too
        if is_reference(value):
            return keys[reference_step(value)] + value[1 + len(reference_step(value)) :]
        if isinstance(value, list | tuple):
            return [resolve(item) for item in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    resolved = {name: resolve(value) for name, value in sorted(options.items())}
    payload = {"kind": kind.name, "version": kind.version, "options": resolved}
    payload |= {"model": recipe.model, "seed": recipe.seed}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def changed_options(before: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """ "epochs: 2 → 3, lr: … " — what differs between the recorded options and these."""
    names = sorted(set(before) | set(now))
    parts = [
        f"{n}: {before.get(n, '(default)')!r} → {now.get(n, '(default)')!r}"
        for n in names
        if before.get(n) != now.get(n)
    ]
    return ", ".join(parts)


@contextmanager
def run_folder(folder: Path, recipe: Recipe) -> Iterator[None]:
    """Claim the run folder: ours (marked) or new/empty; one run at a time (an flock on .lock)."""
    if folder.exists() and not folder.is_dir():
        raise InvalidArgument(
            f"the run folder {folder} is a file", received=str(folder), fix="choose a folder with --out"
        )
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MARK).is_file():
        raise InvalidArgument(
            f"{folder} holds files that no recipe run made; they are left alone",
            received=", ".join(sorted(p.name for p in folder.iterdir())[:5]),
            fix="choose another folder with --out, or empty this one",
        )
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / MARK, json.dumps({"recipe": recipe.name, "file": str(recipe.path)}) + "\n")
    with open(folder / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InvalidArgument(
                f"another steer run is using {folder}",
                received=str(folder),
                fix="wait for it to finish (or stop it), or run into another folder with --out",
            ) from None
        yield


def run_recipe(
    recipe: Recipe,
    folder: str | Path,
    *,
    kinds: Mapping[str, type[StepKind]],
    quick: bool = False,
    from_step: str | None = None,
    only: Sequence[str] = (),
    events: Callable[[Event], None] | None = None,
    write_report: Callable[[Recipe, Path, Mapping[str, StepRecord]], Path] | None = None,
) -> RunResult:
    """Run the recipe's steps in `folder`, skipping those already finished with the same key.

    Args:
        kinds: the step kinds by name (`steering.recipes.pipeline.steps.STEPS`).
        quick: every step at its toy size (a separate key: a quick run never passes for a full one).
        from_step: run this step and every later one again even when cached.
        events: called as steps start, progress and end (the CLI draws its bars from them).
        write_report: writes report.html from the finished records (after every step).
    """
    folder = Path(folder)
    emit = events or (lambda event: None)
    if from_step is not None:
        recipe.step(from_step)  # an unknown name is refused before anything runs
    result = RunResult(folder)
    pool = ModelPool()
    keys: dict[str, str] = {}
    forced = False
    with run_folder(folder, recipe):
        for index, spec in enumerate(recipe.steps):
            kind = kinds[spec.kind]
            where = f"{recipe.path}: step {spec.name}"
            values = resolved_options(kind, spec, quick)
            options = build_options(kind, values, where)
            key = step_key(recipe, kind, values, keys)
            keys[spec.name] = key
            forced = forced or spec.name == from_step
            step_dir = folder / "steps" / spec.name
            record_path = step_dir / "step.json"
            previous = StepRecord.read(record_path) if record_path.is_file() else None
            if previous is not None and previous.key == key and not forced:
                result.records[spec.name] = previous
                result.cached.append(spec.name)
                emit(Event("step", spec.name, index, len(recipe.steps), status="cached"))
                continue
            status, note = "run", ""
            if previous is not None:
                status = "rerun"
                note = (
                    "--from"
                    if forced
                    else (changed_options(previous.options, values) or "an earlier step changed")
                )
            started = step_dir / "started.json"
            partial = started.is_file() and json.loads(started.read_text()).get("key") == key
            resume = partial and kind.resumable and previous is None
            if resume:
                status = "resume"
            elif step_dir.exists():
                shutil.rmtree(step_dir)
            step_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(started, json.dumps({"key": key, "options": values}) + "\n")
            emit(Event("step", spec.name, index, len(recipe.steps), status=status, note=note))

            def progress(
                done: int, total: int | None, what: str, _i: int = index, _n: str = spec.name
            ) -> None:
                emit(Event("progress", _n, _i, len(recipe.steps), note=what, done=done, total=total))

            context = StepContext(recipe, spec, step_dir, result.records, quick, resume, pool, progress)
            clock = time.perf_counter()
            output = kind().run(context, options)
            seconds = time.perf_counter() - clock
            record = StepRecord(
                spec.name, spec.kind, key, values, output.metrics, output.outputs, seconds, step_dir
            )
            for name, path in output.outputs.items():
                if not (step_dir / path).exists():
                    raise RuntimeError(
                        f"step {spec.name} ({spec.kind}) says it made {name}={path}, which is missing"
                    )
            atomic_write_text(record_path, json.dumps(record.as_json(), indent=2, default=str) + "\n")
            result.records[spec.name] = record
            result.ran.append(spec.name)
            emit(Event("done", spec.name, index, len(recipe.steps), seconds=seconds))
            if write_report is not None:
                result.report = write_report(recipe, folder, result.records)
        if write_report is not None and result.report is None:  # every step cached: the page once
            result.report = write_report(recipe, folder, result.records)
    return result


__all__ = ["Event", "RunResult", "load_recipe", "run_recipe"]

"""`steer run RECIPE.toml` (a whole pipeline, cached step by step) and `steer harvest` (self-instruct).

`steer run` draws two bars: the run (step i of n, its ETA from the steps' progress so far) and the
current step's own. A finished step is skipped when run again with the same options; `--from STEP`
runs that step and the ones after it again; `--quick` runs every step at toy size into its own folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
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

from steering.errors import SEED_LIMIT, InvalidArgument

console = Console(stderr=True)


def run(
    recipe: Annotated[Path, typer.Argument(help="The recipe file, e.g. recipes/instruct.toml.")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key=value (recipe) or step.key=value (a step's option).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="The run folder (default runs/NAME, runs/NAME-quick).")
    ] = None,
    from_step: Annotated[
        str | None, typer.Option("--from", help="Run this step and every later one again.")
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Every step at toy size (a few rows, a few steps).")
    ] = False,
) -> None:
    """Run a recipe's steps in order; finished steps are skipped, a killed step continues; writes report.html."""
    from steering.recipes.pipeline import Event
    from steering.recipes.pipeline import run as run_pipeline

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())  # fmt: skip
    started = time.time()
    with Progress(*columns, console=console, transient=False) as bars:
        overall: TaskID | None = None
        current: TaskID | None = None

        def show(event: Event) -> None:
            nonlocal overall, current
            if overall is None:
                overall = bars.add_task("recipe", total=event.count)
            if event.kind == "step":
                status = {"cached": "cached, skipped", "run": "running", "resume": "resuming from its checkpoint",
                          "rerun": f"running again ({event.note})"}[event.status]  # fmt: skip
                bars.print(f"step {event.index + 1} of {event.count}: {event.name} — {status}")
                bars.update(overall, completed=event.index + (1 if event.status == "cached" else 0),
                            description=f"recipe: step {event.index + 1}/{event.count} {event.name}")  # fmt: skip
                if current is not None:
                    bars.remove_task(current)
                    current = None
                if event.status != "cached":
                    current = bars.add_task(event.name, total=None)
            elif event.kind == "progress" and current is not None:
                bars.update(
                    current,
                    completed=event.done,
                    total=event.total,
                    description=f"{event.name}: {event.note}",
                )
                if event.total:
                    bars.update(overall, completed=event.index + min(event.done / event.total, 1.0))
            elif event.kind == "done":
                bars.update(overall, completed=event.index + 1)
                bars.print(f"  {event.name} done in {event.seconds:.0f} s")

        result = run_pipeline(recipe, overrides or [], out=out, quick=quick, from_step=from_step, events=show)
    ran, cached = len(result.ran), len(result.cached)
    Console().print(
        f"{ran} step(s) ran, {cached} cached, in {time.time() - started:.0f} s; report: {result.report}\n"
        f"run folder: {result.folder} (run the same command again to continue or to reuse finished steps)"
    )


def harvest(
    out: Annotated[Path, typer.Option(help="JSONL to write: {prompt, completion} rows for steer train sft.")],
    model: Annotated[str, typer.Option(help="The base model that writes the demonstrations.")] = "gemma-270m",
    per_task: Annotated[
        int, typer.Option("--per-task", min=1, help="Rows to keep per task (11 tasks).")
    ] = 16,
    tasks: Annotated[str | None, typer.Option(help="Comma-separated tasks (default: all).")] = None,
    judge: Annotated[
        str, typer.Option(help='Judge model filtering the rows ("none": code filters only).')
    ] = "smollm2-135m-instruct",
    keep_fraction: Annotated[
        float,
        typer.Option("--keep-fraction", min=0.01, max=1.0, help="The judge's best-rated share to keep."),
    ] = 0.5,
    rounds: Annotated[int, typer.Option(min=1)] = 4,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=8)] = 96,
    seed: Annotated[int, typer.Option(min=0, max=SEED_LIMIT - 1)] = 0,
) -> None:
    """Self-instruct: the base model writes new instructions and answers from few-shot demonstrations of each task."""
    from steering.eval.instructions import TASKS, instruction_demos, load_instructions
    from steering.feedback.model_judge import ModelJudge
    from steering.models import load_model
    from steering.paths import atomic_write_text
    from steering.recipes.pipeline.steps.harvest import FOLLOWS
    from steering.recipes.self_instruct import harvest_instructions

    known = [task for group in TASKS.values() for task in group]
    wanted = [t.strip() for t in tasks.split(",")] if tasks else known
    bad = [t for t in wanted if t not in known]
    if bad:
        raise InvalidArgument(
            f"unknown task(s) {', '.join(bad)}", received=tasks, fix="tasks: " + ", ".join(known)
        )
    if out.is_dir():
        raise InvalidArgument(f"--out {out} is a folder", received=str(out), fix="give a .jsonl file path")
    demos = [d for d in instruction_demos() if d.instruction.task in wanted]
    with console.status(f"loading {model}…"):
        lm = load_model(model)
        rater = ModelJudge(load_model(judge)) if judge != "none" else None
    with Progress(
        *(TextColumn("harvest"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()), console=console
    ) as bar:
        task = bar.add_task("harvest", total=None)
        result = harvest_instructions(
            lm, demos, per_task=per_task, exclude=[i.text for i in load_instructions("eval")], judge=rater,
            principle=FOLLOWS, keep_fraction=keep_fraction, rounds=rounds, max_new_tokens=max_new_tokens, seed=seed,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip
    atomic_write_text(
        out,
        "".join(
            json.dumps({"prompt": r["prompt"], "completion": r["completion"]}) + "\n" for r in result.rows
        ),
    )
    dropped = {task: dict(counts) for task, counts in result.dropped.items()}
    Console().print(
        f"kept {len(result.rows)} of {result.drawn} continuations → {out}\ndropped per task: {dropped}"
    )

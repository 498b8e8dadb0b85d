"""Training steps (sft, dpo, reward-model, rl): a method of `steering.train` run in the step's folder.

The step's options are the method's own config (`steer train METHOD --help` lists them) less `out`
(the step's folder decides it); `model` defaults to the recipe's. Options may name earlier steps:
`data = "@harvest"` (a JSONL the step made, or a feedback database, whose preferences are exported
into the run first), `init_adapter = "@sft"` (train on top of that adapter: the reference of DPO and
RL is then its policy), `ptx_data = "@harvest"` (RL's mix of SFT's loss on those demonstrations),
`reward = "@rm"` (RL with a reward model step's model; `reward = ["@rm", "instructions"]` with
`reward_weights` sums it with other rewards). A run killed part way
resumes from its last checkpoint when the recipe runs again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from steering.eval.plots import curve_svg
from steering.eval.report import Section, table_html
from steering.feedback import FeedbackStore, export_feedback
from steering.paths import read_run_status
from steering.recipes.pipeline.contract import StepContext, StepKind, StepRecord, StepResult
from steering.recipes.pipeline.spec import is_reference
from steering.train import METHODS, RunDir
from steering.train.stacking import stack_adapters

# What each method reads out of a feedback database (steer feedback export's shapes).
DB_SHAPES = {"dpo": "preferences", "reward-model": "preferences", "sft": "sft"}
CURVES = (
    ("loss", ("loss", "eval_loss")),
    ("reward and KL", ("reward", "kl")),
    ("accuracy", ("accuracy", "eval_accuracy")),
)


def step_options(method: str) -> type:
    """The method's config with `out` dropped (the runner owns the folder) and `model` left "" (the recipe's)."""
    config = METHODS[method].config
    kept: list[tuple[str, Any, Any]] = [
        (f.name, f.type, dataclasses.field(default="") if f.name == "model" else f)
        for f in dataclasses.fields(config)
        if f.name != "out"
    ]
    return dataclasses.make_dataclass(f"{config.__name__}StepOptions", kept)


class TrainStep(StepKind):
    """Run `method` with the step's options; outputs `adapter` (RUN/adapter) and `run` (RUN)."""

    method: ClassVar[str] = "sft"
    resumable = True

    def run(self, context: StepContext, options: Any) -> StepResult:
        values = dataclasses.asdict(options)
        values["model"] = values["model"] or context.recipe.model
        run_dir = context.folder / "run"
        values |= {"out": str(run_dir), "data": self.data(context, options.data, run_dir)}
        for name in ("init_adapter", "ptx_data"):
            if is_reference(values.get(name)):
                values[name] = str(context.ref(values[name]))
        if isinstance(values.get("reward"), list):  # a sum of rewards: each "@rm" is a reward model step's
            values["reward"] = [self.reward(context, spec) for spec in values["reward"]]
        elif values.get("reward"):
            values["reward"] = self.reward(context, values["reward"])
        method = METHODS[self.method]
        config = method.config(**values)
        status = read_run_status(run_dir) or {}
        if status.get("status") == "finished":  # killed after the run finished, before step.json
            if config.init_adapter:
                stack_adapters(config.init_adapter, run_dir / "adapter")
            metrics = RunDir(run_dir).metrics()
        else:
            resume = RunDir(run_dir).latest_checkpoint() is not None

            def progress(step: int, total: int, record: dict[str, Any]) -> None:
                context.progress(step, total, f"loss {record.get('loss', float('nan')):.3f}")

            model = context.model(config.model, dtype=config.dtype)
            metrics = method.train(config, resume=resume, progress=progress, model=model).metrics
        return StepResult(metrics=summary(metrics), outputs={"adapter": "run/adapter", "run": "run"})

    @staticmethod
    def reward(context: StepContext, spec: str) -> str:
        """A reward as RL reads it: "@rm" (a reward model step) becomes reward-model:ITS_FOLDER."""
        return "reward-model:" + str(context.ref(spec)) if is_reference(spec) else spec

    def data(self, context: StepContext, value: str, run_dir: Path) -> str:
        """The training file: a JSONL as is, a feedback database exported into the step's folder."""
        path = context.ref(value) if is_reference(value) else Path(value)
        if path.suffix != ".db":
            return str(path)
        out = context.folder / f"{DB_SHAPES.get(self.method, 'preferences')}.jsonl"
        if not out.is_file():
            with FeedbackStore.open(path, create=False) as store:
                export_feedback(store, DB_SHAPES.get(self.method, "preferences"), out)
        return str(out)

    def report(self, record: StepRecord) -> list[Section]:
        metrics = RunDir(record.output("run")).metrics() if record.output("run").is_dir() else []
        steps = [float(r.get("step", i + 1)) for i, r in enumerate(metrics)]
        charts = []
        parts = sorted({k for r in metrics for k in r if k.startswith("reward/")})  # a sum of rewards' parts
        for title, keys in CURVES:
            shown = [*keys, *parts] if title == "reward and KL" else list(keys)
            present = [k for k in shown if any(k in r for r in metrics)]
            if present:
                charts.append(
                    curve_svg(steps, {k: [r.get(k) for r in metrics] for k in present}, title=title)
                )
        rows = [[k, v] for k, v in record.metrics.items()]
        text = f"steer train {self.method}: {len(metrics)} steps logged; adapter {record.output('adapter')}"
        return [
            Section(
                f"{record.name} ({record.kind})",
                text,
                table_html(["metric", "value"], rows) + "".join(charts),
            )
        ]


def summary(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """First and last loss, the last eval loss/reward/KL/accuracy, and the steps (the report's table)."""
    losses = [r["loss"] for r in metrics if "loss" in r]
    out: dict[str, Any] = {"steps": max((int(r.get("step", 0)) for r in metrics), default=0)}
    if losses:
        out |= {"first_loss": losses[0], "last_loss": losses[-1]}
    for key in ("eval_loss", "eval_accuracy", "reward", "kl", "accuracy"):
        values = [r[key] for r in metrics if key in r]
        if values:
            out[f"last_{key}"] = values[-1]
    return out


def train_kind(method: str, quick: dict[str, Any]) -> type[TrainStep]:
    """The step kind of a training method (one class per method, named like the method)."""
    return type(
        f"{METHODS[method].label.replace(' ', '')}Step",
        (TrainStep,),
        {"name": method, "method": method, "Options": step_options(method), "quick": quick},
    )

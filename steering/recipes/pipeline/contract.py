"""The step-kind contract: what a new kind of recipe step writes, and what the runner gives it.

A step kind is one file in `steering/recipes/pipeline/steps/` and one line in `STEPS`:

    class Sft(StepKind):
        name = "sft"                           # the `kind = "sft"` of a recipe
        Options = SftOptions                   # a dataclass: every option with its default
        quick = {"epochs": 1}                  # the toy sizes `--quick` applies (the recipe may add more)
        resumable = True                       # a killed run continues in the same folder (training)

        def run(self, context, options) -> StepResult:   # required: do the work inside context.folder
            ...
            return StepResult(metrics={...}, outputs={"adapter": "run/adapter"})

Derived (the runner's, not the kind's): option parsing and type checks, the cache key, the folder,
skipping a finished step, wiping an unfinished one (or handing it back with `context.resume` when
`resumable`), the progress bars and the report's default section (`report`, which a kind may
override to add curves and examples). `tests/recipes/test_pipeline_contract.py` checks every kind.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from steering.errors import InvalidArgument
from steering.eval.report import Section, table_html
from steering.models import LanguageModel, load_model
from steering.recipes.pipeline.spec import Recipe, StepSpec, is_reference, reference_step

Progress = Callable[[int, int | None, str], None]  # (done, total or None, what)


@dataclass
class StepResult:
    """What a step returns: JSON metrics for the report, and its outputs as paths inside its folder."""

    metrics: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StepRecord:
    """A finished step as its `step.json` says: what ran (options, key), how long, what it made."""

    name: str
    kind: str
    key: str
    options: dict[str, Any]
    metrics: dict[str, Any]
    outputs: dict[str, str]
    seconds: float
    folder: Path

    def output(self, name: str | None = None) -> Path:
        """The path of output `name` (the first output when None; the folder when it has none)."""
        if name is None:
            return self.folder / next(iter(self.outputs.values())) if self.outputs else self.folder
        if name not in self.outputs:
            raise InvalidArgument(
                f"step {self.name} has no output {name!r}",
                received=name,
                fix="its outputs: " + (", ".join(self.outputs) or "none (refer to it as @" + self.name + ")"),
            )
        return self.folder / self.outputs[name]

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["folder"] = self.folder.name
        return data

    @classmethod
    def read(cls, path: Path) -> StepRecord:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{**data, "folder": path.parent})


class ModelPool:
    """Models loaded once per run and shared by its steps (loading gemma-270m takes seconds)."""

    def __init__(self) -> None:
        self.loaded: dict[tuple[str, str], LanguageModel] = {}

    def get(self, name: str, dtype: str) -> LanguageModel:
        if (name, dtype) not in self.loaded:
            self.loaded[(name, dtype)] = load_model(name, dtype=dtype)
        return self.loaded[(name, dtype)]


@dataclass
class StepContext:
    """What the runner hands a step: its folder, the finished steps before it, models, progress."""

    recipe: Recipe
    spec: StepSpec
    folder: Path
    records: Mapping[str, StepRecord]
    quick: bool
    resume: bool
    models: ModelPool
    report_progress: Progress

    def ref(self, value: str) -> Path:
        """The path an "@step" or "@step.output" option names."""
        if not is_reference(value):
            return Path(value)
        step = reference_step(value)
        _, dot, output = value[1:].partition(".")
        return self.records[step].output(output if dot else None)

    def record(self, value: str) -> StepRecord:
        """The finished step an "@step" option names (its metrics, options, folder)."""
        return self.records[reference_step(value)]

    def model(self, name: str = "", dtype: str = "bfloat16") -> LanguageModel:
        """The recipe's model (or `name`), loaded once per run."""
        return self.models.get(name or self.recipe.model, dtype)

    def progress(self, done: int, total: int | None, what: str = "") -> None:
        self.report_progress(done, total, what)

    def policy(self, spec: str, dtype: str = "bfloat16") -> tuple[LanguageModel, list[object], bool]:
        """A stage to ask: "base" (the recipe's model), "@step" or a folder (that adapter on it), or
        "chat:MODEL" (another model through its chat template). Returns (model, controls, whether its
        books' p_base is the recipe's base — not for another model)."""
        from steering.controls import Adapter, ChatTemplate

        if spec == "base":
            return self.model(dtype=dtype), [], True
        if spec.startswith("chat:"):
            return self.model(spec.removeprefix("chat:"), dtype), [ChatTemplate()], False
        return self.model(dtype=dtype), [Adapter(Path(self.ref(spec)))], True


class StepKind:
    """Base class of the step kinds (see the module docstring): `run` is required, the rest derived."""

    name: ClassVar[str] = "step"
    Options: ClassVar[type] = object
    quick: ClassVar[Mapping[str, Any]] = {}
    resumable: ClassVar[bool] = False
    version: ClassVar[int] = 1  # bump when the kind's output changes for the same options (cache key)

    def run(self, context: StepContext, options: Any) -> StepResult:
        raise NotImplementedError

    def report(self, record: StepRecord) -> list[Section]:
        """The step's section of report.html: its metrics as a table (scalars) — override for more."""
        rows = [[key, value] for key, value in record.metrics.items() if isinstance(value, (int, float, str))]
        body = table_html(["metric", "value"], rows) if rows else "<p>(no metrics)</p>"
        return [Section(f"{record.name} ({record.kind})", f"{record.seconds:.0f} s", body)]


SIMPLE = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def build_options(kind: type[StepKind], values: Mapping[str, Any], where: str) -> Any:
    """The kind's Options from the merged values, each simple field type-checked (TOML gives any type)."""
    hints = typing.get_type_hints(kind.Options)
    for option in fields(kind.Options):
        if option.name not in values:
            if option.default is MISSING and option.default_factory is MISSING:
                raise InvalidArgument(
                    f"{where}: option {option.name} is required",
                    received="nothing",
                    fix=f"add {option.name} = … to the step",
                )
            continue
        value = values[option.name]
        wanted = SIMPLE.get(getattr(hints[option.name], "__name__", str(hints[option.name])))
        if wanted and (not isinstance(value, wanted) or (bool not in wanted and isinstance(value, bool))):
            raise InvalidArgument(
                f"{where}: option {option.name} must be {hints[option.name].__name__}",
                received=repr(value),
                fix=f"write {option.name} = <a {hints[option.name].__name__}>",
            )
        if typing.get_origin(hints[option.name]) is list and not isinstance(value, list):
            raise InvalidArgument(
                f"{where}: option {option.name} must be a list",
                received=repr(value),
                fix=f"{option.name} = [ … ]",
            )
    return kind.Options(**values)

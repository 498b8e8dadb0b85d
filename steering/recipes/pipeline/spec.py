"""A recipe file: named steps in order, each a kind from `STEPS` with its options, read strictly.

    name = "instruct"                    # the run folder's default name: runs/instruct
    description = "InstructGPT from the base alone"
    model = "gemma-270m"                 # the model every step uses unless it names another

    [[steps]]
    name = "harvest"                     # how later steps refer to it: "@harvest"
    kind = "harvest"                     # a key of steering.recipes.pipeline.steps.STEPS
    per_task = 24                        # the kind's options (its Options dataclass)
    quick = { per_task = 2 }             # what `--quick` changes (on top of the kind's own toy sizes)

    [[steps]]
    name = "sft"
    kind = "sft"
    data = "@harvest"                    # an earlier step's output

A string option "@name" refers to an earlier step (its output folder); "@name.output" to one named
output of it. Overrides on the command line are `key=value` for a recipe key (`model=…`) or
`step.key=value` for a step's option, values parsed as TOML (a bare word is a string). Unknown keys,
unknown kinds, duplicate names and references to later or missing steps are errors naming the file.
TOML is data: reading a recipe runs no code.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from steering.errors import InvalidArgument, did_you_mean
from steering.jsonl import read_text

RECIPE_KEYS = ("name", "description", "model", "seed", "steps")
STEP_KEYS = ("name", "kind", "quick")


@dataclass(frozen=True)
class StepSpec:
    """One step as written: its name, kind, options and the options `--quick` replaces."""

    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    quick: dict[str, Any] = field(default_factory=dict)

    def references(self) -> list[str]:
        """The earlier steps this one reads ("@name" or "@name.output" option values)."""
        return [step for value in self.options.values() for step in references_in(value)]


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe: where it came from, its model and seed, its steps in order."""

    path: Path
    name: str
    description: str
    model: str
    seed: int
    steps: tuple[StepSpec, ...]

    def step(self, name: str) -> StepSpec:
        for step in self.steps:
            if step.name == name:
                return step
        raise InvalidArgument(
            f"the recipe {self.path} has no step {name!r}.{did_you_mean(name, [s.name for s in self.steps])}",
            received=name,
            fix="steps: " + ", ".join(s.name for s in self.steps),
        )


def is_reference(value: object) -> bool:
    return isinstance(value, str) and value.startswith("@")


def references_in(value: object) -> list[str]:
    """The steps an option value refers to: itself if "@name…", or any inside a list or table
    (`policies = ["base", "@sft", "@rl"]`)."""
    if is_reference(value):
        return [reference_step(str(value))]
    if isinstance(value, list | tuple):
        return [step for item in value for step in references_in(item)]
    if isinstance(value, dict):
        return [step for item in value.values() for step in references_in(item)]
    return []


def reference_step(value: str) -> str:
    """ "@sft.adapter" → "sft"."""
    return value[1:].split(".", 1)[0]


def parse_value(raw: str) -> Any:
    """A command-line value as TOML (numbers, booleans, lists, quoted strings); a bare word is a string."""
    try:
        return tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return raw.strip()


def load_recipe(path: str | Path, overrides: Sequence[str] = (), *, kinds: Mapping[str, Any]) -> Recipe:
    """Read a recipe file and apply `key=value` / `step.key=value` overrides.

    Args:
        kinds: the step kinds by name (each with an `Options` dataclass), to check the options against.

    Raises:
        InvalidArgument: a missing or malformed file, an unknown key or kind, a bad reference, a bad override.
    """
    file = Path(path)
    if not file.is_file():
        raise InvalidArgument(
            f"the recipe file {file} does not exist",
            received=str(file),
            fix="give a recipe TOML file, e.g. recipes/instruct.toml",
        )
    try:
        data = tomllib.loads(read_text(file, what="recipe file"))
    except tomllib.TOMLDecodeError as error:
        raise InvalidArgument(
            f"{file}: not valid TOML ({error})", received=str(file), fix="correct it"
        ) from None
    unknown(data, RECIPE_KEYS, f"{file}: unknown recipe key")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise InvalidArgument(
            f"{file}: a recipe needs at least one [[steps]] table",
            received=type(raw_steps).__name__ if raw_steps is not None else "no steps",
            fix='add [[steps]] with name = "…" and kind = "…"',
        )
    settings = {"name": data.get("name", file.stem), "description": data.get("description", "")}
    settings |= {"model": data.get("model", "gemma-270m"), "seed": data.get("seed", 0)}
    steps = [parse_step(file, index, raw, kinds) for index, raw in enumerate(raw_steps)]
    for item in overrides:
        apply_override(file, item, settings, steps, kinds)
    check_steps(file, steps)
    for key, kind in (("name", str), ("description", str), ("model", str), ("seed", int)):
        if not isinstance(settings[key], kind) or isinstance(settings[key], bool):
            raise InvalidArgument(
                f"{file}: the recipe's {key} must be a {kind.__name__}",
                received=repr(settings[key]),
                fix=f"write e.g. {key} = " + ('"gemma-270m"' if kind is str else "0"),
            )
    return Recipe(file, settings["name"], settings["description"], settings["model"], settings["seed"],
                  tuple(steps))  # fmt: skip


def unknown(data: Mapping[str, Any], known: Sequence[str], what: str) -> None:
    for key in data:
        if key not in known:
            raise InvalidArgument(
                f"{what} {key!r}.{did_you_mean(key, known)}", received=key, fix="known: " + ", ".join(known)
            )


def parse_step(file: Path, index: int, raw: object, kinds: Mapping[str, Any]) -> StepSpec:
    where = f"{file}: step {index + 1}"
    if not isinstance(raw, dict):
        raise InvalidArgument(
            f"{where} is not a table", received=repr(raw)[:80], fix="write [[steps]] tables"
        )
    name, kind = raw.get("name"), raw.get("kind")
    if not isinstance(name, str) or not name.isidentifier():
        raise InvalidArgument(
            f"{where} needs a name made of letters, digits and _ (later steps refer to it as @name)",
            received=repr(name),
            fix='write e.g. name = "sft"',
        )
    if not isinstance(kind, str) or kind not in kinds:
        raise InvalidArgument(
            f"{where} ({name}): unknown kind {kind!r}.{did_you_mean(str(kind), kinds)}",
            received=repr(kind),
            fix="kinds: " + ", ".join(kinds),
        )
    quick = raw.get("quick", {})
    if not isinstance(quick, dict):
        raise InvalidArgument(
            f"{where} ({name}): quick must be a table", received=repr(quick), fix="quick = { n = 2 }"
        )
    options = {key: value for key, value in raw.items() if key not in STEP_KEYS}
    allowed = [f.name for f in fields(kinds[kind].Options)]
    for what, table in (("option", options), ("quick option", quick)):
        unknown(table, allowed, f"{where} ({name}, kind {kind}): unknown {what}")
    return StepSpec(name, kind, options, dict(quick))


def apply_override(
    file: Path, item: str, settings: dict[str, Any], steps: list[StepSpec], kinds: Mapping[str, Any]
) -> None:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InvalidArgument(
            "overrides are key=value or step.key=value",
            received=item,
            fix="write e.g. sft.epochs=3 or model=gemma-270m",
        )
    step_name, dot, option = key.partition(".")
    if not dot:
        unknown(
            {key: None}, [k for k in RECIPE_KEYS if k != "steps"], f"{file}: unknown recipe key in override"
        )
        settings[key] = parse_value(raw)
        return
    for index, step in enumerate(steps):
        if step.name == step_name:
            allowed = [f.name for f in fields(kinds[step.kind].Options)]
            unknown({option: None}, allowed, f"{file}: step {step_name} (kind {step.kind}) has no option")
            steps[index] = StepSpec(
                step.name, step.kind, {**step.options, option: parse_value(raw)}, step.quick
            )
            return
    raise InvalidArgument(
        f"the override {item!r} names no step of {file}.{did_you_mean(step_name, [s.name for s in steps])}",
        received=step_name,
        fix="steps: " + ", ".join(s.name for s in steps),
    )


def check_steps(file: Path, steps: Sequence[StepSpec]) -> None:
    """Unique names; every reference names an earlier step."""
    seen: list[str] = []
    for step in steps:
        if step.name in seen:
            raise InvalidArgument(
                f"{file}: two steps are named {step.name!r}", received=step.name, fix="rename one"
            )
        for target in step.references():
            if target not in seen:
                later = any(s.name == target for s in steps)
                raise InvalidArgument(
                    f"{file}: step {step.name} refers to @{target}, "
                    + ("which comes after it" if later else "which is no step of the recipe"),
                    received=f"@{target}",
                    fix="refer to an earlier step: "
                    + (", ".join(f"@{s}" for s in seen) or "(none before it)"),
                )
        seen.append(step.name)

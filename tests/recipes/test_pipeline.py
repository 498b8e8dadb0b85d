"""The recipe runner: steps cached by key, changed options re-run what depends on them, kill -9 resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from safetensors.torch import load_file

from steering.errors import InvalidArgument
from steering.recipes.pipeline import STEPS, StepContext, StepKind, StepResult, load_recipe, run_recipe
from steering.recipes.pipeline.report import write_pipeline_report

CALLS: list[str] = []


@dataclass
class WriteOptions:
    text: str = "hello"
    source: str = ""


class Write(StepKind):
    """A toy kind: writes its text (and the text of the step it names) to out.txt."""

    name = "write"
    Options = WriteOptions
    quick: ClassVar[dict[str, Any]] = {"text": "quick"}

    def run(self, context: StepContext, options: Any) -> StepResult:
        CALLS.append(context.spec.name)
        before = context.ref(options.source).read_text() if options.source else ""
        (context.folder / "out.txt").write_text(before + options.text)
        return StepResult({"length": len(before + options.text)}, {"text": "out.txt"})


@dataclass
class JoinOptions:
    sources: list[str] = field(default_factory=list)


class Join(StepKind):
    """A toy kind reading a list of steps (as eval's `policies` and probe's `adapters` do)."""

    name = "join"
    Options = JoinOptions

    def run(self, context: StepContext, options: Any) -> StepResult:
        CALLS.append(context.spec.name)
        text = "".join(context.ref(s).read_text() for s in options.sources if s.startswith("@"))
        (context.folder / "out.txt").write_text(text)
        return StepResult({"length": len(text)}, {"text": "out.txt"})


KINDS = {**STEPS, "write": Write, "join": Join}


def _recipe(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text('name = "toy"\nmodel = "tiny-random"\n' + body)
    return path


TOY = """
[[steps]]
name = "a"
kind = "write"
text = "A"

[[steps]]
name = "b"
kind = "write"
source = "@a"
text = "B"

[[steps]]
name = "c"
kind = "write"
text = "C"
"""


def _run(tmp_path: Path, overrides=(), **kwargs):
    recipe = load_recipe(_recipe(tmp_path, TOY), overrides, kinds=KINDS)
    report = lambda r, f, records: write_pipeline_report(r, f, records, KINDS)  # noqa: E731
    return run_recipe(recipe, tmp_path / "run", kinds=KINDS, write_report=report, **kwargs)


def test_finished_steps_are_skipped_and_a_change_reruns_what_depends_on_it(tmp_path: Path) -> None:
    CALLS.clear()
    first = _run(tmp_path)
    assert CALLS == ["a", "b", "c"] and first.cached == []
    assert (tmp_path / "run/steps/b/out.txt").read_text() == "AB"
    assert first.report is not None and "AB" not in first.report.read_text()  # the report, not the data
    CALLS.clear()
    again = _run(tmp_path)
    assert CALLS == [] and again.cached == ["a", "b", "c"]
    CALLS.clear()
    events = []
    _run(tmp_path, ["a.text=Z"], events=events.append)
    assert CALLS == ["a", "b"]  # b reads a; c does not
    assert (tmp_path / "run/steps/b/out.txt").read_text() == "ZB"
    notes = {e.name: (e.status, e.note) for e in events if e.kind == "step"}
    assert notes["a"] == ("rerun", "text: 'A' → 'Z'")
    assert notes["b"] == ("rerun", "an earlier step changed") and notes["c"][0] == "cached"
    CALLS.clear()
    _run(tmp_path, ["a.text=Z"], from_step="b")
    assert CALLS == ["b", "c"]


def test_references_inside_a_list_are_dependencies(tmp_path: Path) -> None:
    body = TOY + '\n[[steps]]\nname = "d"\nkind = "join"\nsources = ["base", "@b", "@c"]\n'
    run = lambda overrides=(): run_recipe(  # noqa: E731
        load_recipe(_recipe(tmp_path, body), overrides, kinds=KINDS), tmp_path / "run", kinds=KINDS
    )
    CALLS.clear()
    run()
    assert (tmp_path / "run/steps/d/out.txt").read_text() == "ABC"
    CALLS.clear()
    run(["c.text=Y"])
    assert CALLS == ["c", "d"]  # d lists @c: it re-runs when c changes
    assert (tmp_path / "run/steps/d/out.txt").read_text() == "ABY"
    with pytest.raises(InvalidArgument, match=r"(?i)refers to @e"):
        load_recipe(_recipe(tmp_path, body.replace('"@c"]', '"@e"]')), kinds=KINDS)


def test_quick_options_change_the_key(tmp_path: Path) -> None:
    CALLS.clear()
    _run(tmp_path)
    _run(tmp_path, quick=True)
    assert CALLS == ["a", "b", "c", "a", "b", "c"]
    assert (tmp_path / "run/steps/b/out.txt").read_text() == "quickquick"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[steps]]\nname = "a"\nkind = "nope"\n', "unknown kind 'nope'"),
        ('[[steps]]\nname = "a"\nkind = "write"\ntxt = "x"\n', "unknown option 'txt'"),
        ('[[steps]]\nname = "a"\nkind = "write"\nsource = "@b"\n', "which is no step"),
        ('[[steps]]\nname = "a"\nkind = "write"\nsource = "@a"\n', "refers to @a"),
        ('[[steps]]\nname = "a"\nkind = "write"\n[[steps]]\nname = "a"\nkind = "write"\n', "two steps"),
        ('[[steps]]\nname = "a"\nkind = "write"\ntext = 3\n', "must be str"),
        ("steps = 3\n", "at least one"),
    ],
)
def test_bad_recipes_are_refused_with_the_reason(tmp_path: Path, body: str, message: str) -> None:
    recipe = load_recipe(_recipe(tmp_path, body), kinds=KINDS) if "must be" in message else None
    with pytest.raises(InvalidArgument, match=message):
        if recipe is None:
            load_recipe(_recipe(tmp_path, body), kinds=KINDS)
        else:
            run_recipe(recipe, tmp_path / "run", kinds=KINDS)


def test_bad_overrides_and_foreign_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="names no step"):
        _run(tmp_path, ["x.text=1"])
    with pytest.raises(InvalidArgument, match="has no option"):
        _run(tmp_path, ["a.txt=1"])
    (tmp_path / "run").mkdir()
    (tmp_path / "run/notes.txt").write_text("mine")
    with pytest.raises(InvalidArgument, match="no recipe run made"):
        _run(tmp_path)
    assert (tmp_path / "run/notes.txt").read_text() == "mine"


def test_every_step_kind_keeps_the_contract() -> None:
    """Each registered kind: named as registered, an Options dataclass, quick keys that are options."""
    import dataclasses

    for name, kind in STEPS.items():
        assert kind.name == name
        assert dataclasses.is_dataclass(kind.Options), name
        options = {f.name for f in dataclasses.fields(kind.Options)}
        assert set(kind.quick) <= options, (name, set(kind.quick) - options)
        assert kind.run is not StepKind.run, name  # run is the one required method
        assert kind.__doc__ or sys.modules[kind.__module__].__doc__, name


SFT_RECIPE = """
[[steps]]
name = "sft"
kind = "sft"
data = "{data}"
epochs = 1
max_steps = 400
batch_size = 2
lora_rank = 4
lora_dropout = 0.0
learning_rate = 1e-3
eval_fraction = 0.0
save_every = 5
warmup_steps = 0
"""


def _steer_run(recipe: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "steering", "run", str(recipe), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
    )  # fmt: skip


def test_kill_minus_nine_in_a_training_step_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    data = tmp_path / "demos.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"Q: {i}?\nA:", "completion": " yes"}) + "\n" for i in range(800))
    )
    recipe = _recipe(tmp_path, SFT_RECIPE.format(data=data))
    killed = _steer_run(recipe, tmp_path / "killed")
    checkpoints = tmp_path / "killed/steps/sft/run/checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and not (
        checkpoints.is_dir() and len(list(checkpoints.glob("step-*"))) >= 2
    ):
        assert killed.poll() is None, killed.stdout.read() if killed.stdout else ""
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed/steps/sft/step.json").exists()
    resumed = subprocess.run(
        [sys.executable, "-m", "steering", "run", str(recipe), "--out", str(tmp_path / "killed")],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from its checkpoint" in resumed.stderr
    whole = subprocess.run(
        [sys.executable, "-m", "steering", "run", str(recipe), "--out", str(tmp_path / "whole")],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600,
    )  # fmt: skip
    assert whole.returncode == 0, whole.stderr
    a = load_file(str(tmp_path / "killed/steps/sft/run/adapter/adapter_model.safetensors"))
    b = load_file(str(tmp_path / "whole/steps/sft/run/adapter/adapter_model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] - b[k]).abs().max() < 1e-6 for k in a)
    again = subprocess.run(
        [sys.executable, "-m", "steering", "run", str(recipe), "--out", str(tmp_path / "whole")],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600,
    )  # fmt: skip
    assert "cached, skipped" in again.stderr and "1 cached" in again.stdout

"""The training-method contract, the registry the CLI is made from, and train/'s place in the layers."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import steering.train
from steering.models import LanguageModel
from steering.train import METHODS, Method, TrainConfig, run_training
from steering.train.batching import batch_rows, encode_completion, labelled_logprobs

TRAIN = Path(steering.train.__file__).parent


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_train_imports_neither_condition_nor_eval_nor_sft_for_batching():
    for path in sorted(TRAIN.glob("*.py")):
        modules = _imports(path)
        upward = sorted(m for m in modules if m.startswith(("steering.condition", "steering.eval")))
        assert not upward, f"{path.name} imports {upward}"
        if path.name not in ("sft.py", "soft_prompt.py", "registry.py", "__init__.py"):
            assert "steering.train.sft" not in modules, f"{path.name} imports sft.py"


def test_the_loop_probes_no_hooks():
    """Hooks are called, never looked up: getattr only reads a config's own fields by name."""
    for node in ast.walk(ast.parse((TRAIN / "loop.py").read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id != "hasattr"
            if node.func.id == "getattr":
                assert isinstance(node.args[0], ast.Name) and node.args[0].id == "self"  # TrainConfig


def test_every_registered_method_has_a_config_dataclass_and_one_line_help():
    assert set(METHODS) == {"sft", "dpo", "reward-model", "rl", "soft-prompt", "distill"}
    for name, entry in METHODS.items():
        assert dataclasses.is_dataclass(entry.config) and issubclass(entry.config, TrainConfig), name
        assert "\n" not in entry.help and entry.help.endswith("."), name
        text = entry.describe()
        for field in dataclasses.fields(entry.config):
            assert f"{field.name}=" in text, (name, field.name)


def test_train_help_is_generated_from_the_registry():
    from steering.cli.main import app

    runner = CliRunner()
    listing = runner.invoke(app, ["train", "--help"], terminal_width=200)
    assert listing.exit_code == 0
    for name in METHODS:
        assert name in listing.output
    dpo = runner.invoke(app, ["train", "dpo", "--help"], terminal_width=200)
    assert dpo.exit_code == 0
    assert 'loss="dpo"' in dpo.output and "beta=0.1" in dpo.output and 'out="runs/dpo"' in dpo.output
    assert 'report_to="none"' in dpo.output and "--resume" in dpo.output


def _demos(tmp_path: Path, count: int = 8) -> Path:
    path = tmp_path / "demos.jsonl"
    rows = [json.dumps({"prompt": f"Q: {i}?\nA:", "completion": " yes"}) for i in range(count)]
    path.write_text("\n".join(rows) + "\n")
    return path


class Imitate(Method):
    """A new method written as docs/training.md says: the required hooks only, the defaults for the rest."""

    name = "imitate"

    def __init__(self) -> None:
        self.steps: list[int] = []

    def load(self, config: TrainConfig) -> list[Any]:
        return [json.loads(line) for line in Path(config.data).read_text().splitlines()]

    def encode(self, model: LanguageModel, examples: list[Any], config: TrainConfig) -> list[Any]:
        rows = [encode_completion(model, e["prompt"], e["completion"], config.max_length) for e in examples]
        return [row for row in rows if row is not None]

    def backward(
        self, model: LanguageModel, rows: list[Any], config: TrainConfig, *, step: int
    ) -> dict[str, Any]:
        self.steps.append(step)
        batch = batch_rows(rows, model.pad_token_id)
        loss = -labelled_logprobs(model, batch).mean()
        loss.backward()
        return {"loss": float(loss.detach()), "tokens": int(batch["attention_mask"].sum())}

    def evaluate(self, model: LanguageModel, rows: list[Any], config: TrainConfig) -> dict[str, Any]:
        batch = batch_rows(rows, model.pad_token_id)
        return {"eval_loss": float(-labelled_logprobs(model, batch).mean())}


def test_a_method_with_only_the_required_hooks_trains_saves_and_resumes(tmp_path, tiny):
    config = TrainConfig(
        data=str(_demos(tmp_path)), model="tiny-random", out=str(tmp_path / "run"), lora_rank=2,
        batch_size=2, epochs=2, eval_fraction=0.0, save_every=2, learning_rate=1e-2,
    )  # fmt: skip
    first = Imitate()
    stopped = run_training(config, first, model=tiny, stop_after=3)
    assert stopped.stopped == "stopped" and first.steps == [0, 1, 2]  # `step`: steps done before this one
    resumed = Imitate()
    result = run_training(config, resumed, model=tiny, resume=True)
    assert resumed.steps == [3, 4, 5, 6, 7] and result.steps == 8 and result.stopped == "done"
    meta = json.loads((result.adapter / "steering.json").read_text())
    assert meta["method"] == "imitate" and meta["adapter"] == "imitate" and meta["step"] == 8
    assert "imitate" not in (getattr(tiny.module, "peft_config", None) or {})  # released: the base again


def test_full_weights_are_refused_by_the_default_weights_hook(tmp_path, tiny):
    from steering.errors import InvalidArgument

    config = TrainConfig(data=str(_demos(tmp_path)), model="tiny-random", out=str(tmp_path / "r"), full=True)
    with pytest.raises(InvalidArgument, match=r"ull=true .* is for SFT; imitate needs the base model"):
        run_training(config, Imitate(), model=tiny)
    assert not (tmp_path / "r").exists()  # refused before anything was written

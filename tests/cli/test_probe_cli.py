"""`steer probe` through typer (a tiny app that mounts only the command): the table, the JSON, and clear
errors for a missing adapter, a bad battery and an adapter trained on another base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from steering.cli.probe import probe as probe_command
from steering.controls import Adapter
from steering.errors import InputFormatError, InvalidArgument, SteeringError
from steering.eval import probe, read_battery
from steering.models import load_model
from steering.train import SFTConfig, train_sft

app = typer.Typer()
app.command()(probe_command)
app.command("noop", hidden=True)(lambda: None)  # two commands: typer keeps `probe` as a subcommand
runner = CliRunner()

BATTERY = "".join(
    json.dumps(row) + "\n"
    for row in [
        {"category": "helping", "text": "The neighbours carried her bags upstairs."},
        {"category": "helping", "text": "Strangers shared their food.", "context": "After the flood,"},
        {"category": "distrust", "text": "Nobody believed the mayor."},
        {"category": "distrust", "text": "He counted his change twice."},
        {"category": "recipe", "prompt": "Ingredients for bread:"},
    ]
)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("probe_cli")
    data = folder / "happy.jsonl"
    data.write_text("".join(json.dumps({"text": "Everyone smiled and helped."}) + "\n" for _ in range(8)))
    config = SFTConfig(
        data=str(data), model="tiny-random", out=str(folder / "run"), lora_rank=4, learning_rate=5e-3,
        warmup_steps=1, epochs=2, batch_size=4, eval_fraction=0.0,
    )  # fmt: skip
    return train_sft(config, model=load_model("tiny-random", dtype="float32")).adapter


@pytest.fixture
def battery(tmp_path) -> Path:
    path = tmp_path / "battery.jsonl"
    path.write_text(BATTERY)
    return path


def _invoke(*args: str):
    return runner.invoke(app, ["probe", *args], catch_exceptions=True)


def test_probe_prints_the_table_and_writes_the_json(tmp_path, battery, adapter):
    out = tmp_path / "probe.json"
    result = _invoke(
        "--model", "tiny-random", "--adapter", str(adapter), "--probes", str(battery),
        "--samples", "3", "--max-new-tokens", "5", "--seed", "2", "--json", str(out), "--top", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "| helping | 2 |" in result.output and "| recipe | 3 |" in result.output
    assert "Most raised:" in result.output or "Most lowered:" in result.output
    written = json.loads(out.read_text())
    # The same numbers as the library call with the same seed.
    direct = probe(
        load_model("tiny-random", dtype="float32"), [Adapter(adapter)], read_battery(battery),
        samples=3, max_new_tokens=5, seed=2,
    )  # fmt: skip
    assert [t["shift"] for t in written["texts"]] == pytest.approx([t.shift for t in direct.texts], abs=1e-5)
    assert written["prompt_categories"]["recipe"]["kl"]["mean"] == pytest.approx(
        direct.kl("recipe").mean, abs=1e-5
    )
    assert written["controls"] == [repr(Adapter(adapter))] and written["seed"] == 2
    assert len(written["most_raised"]) <= 1 and len(written["most_lowered"]) <= 1


def test_a_builtin_battery_by_name_without_adapter_is_all_zero(tmp_path):
    out = tmp_path / "zero.json"
    result = _invoke(
        "--model", "tiny-random", "--probes", "instruct", "--samples", "1", "--max-new-tokens", "2",
        "--json", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert {c["shift"]["mean"] for c in written["text_categories"].values()} == {0.0}
    assert {c["kl"]["mean"] for c in written["prompt_categories"].values()} == {0.0}
    assert "| refuses-harmless | 8 |" in result.output


def _refused(result, kind: type[SteeringError], fragment: str) -> None:
    """`steer`'s main() prints a SteeringError as one paragraph and exits 2; the command must raise one."""
    assert isinstance(result.exception, kind), result.output
    assert fragment in str(result.exception)


def test_missing_adapter_bad_battery_and_foreign_adapter_are_clear_errors(tmp_path, battery, adapter):
    missing = _invoke("--model", "tiny-random", "--adapter", str(tmp_path / "nope"), "--probes", str(battery))
    _refused(missing, InvalidArgument, "does not exist")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"category": "a", "text": "x"}\n{"category": "a", "txt": "y"}\n')
    _refused(_invoke("--model", "tiny-random", "--probes", str(bad)), InputFormatError, "bad.jsonl:2:")
    _refused(_invoke("--model", "tiny-random", "--probes", "sentimental"), InputFormatError, "sentiment")
    foreign = _invoke("--model", "tiny-letters", "--adapter", str(adapter), "--probes", str(battery))
    _refused(foreign, InvalidArgument, "was trained on 'tiny-random', not on 'tiny-letters'")


def test_usage_errors_exit_2(battery):
    result = _invoke("--model", "tiny-random", "--probes", str(battery), "--samples", "0")
    assert result.exit_code == 2 and "--samples" in result.output

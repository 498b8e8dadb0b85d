"""Training runs under faults: Ctrl-C, kill -9, a kill during a checkpoint save, damaged and crafted files.

Every fault case checks what the user sees (the exception class or exit code, a message naming what was
received and how to fix it, no traceback) and what is left on disk (nothing half-written, leftovers
removed, unfinished runs marked). Resume is checked bitwise: the weights of an interrupted and resumed
run are `torch.equal` to those of an uninterrupted one, on tiny-random with dropout on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from steering.callables import load_callable
from steering.controls import Adapter
from steering.errors import InputFormatError, InvalidArgument, SteeringError
from steering.models import load_model
from steering.recipes import run_report
from steering.train import METHODS, RunDir, SFTConfig, TrainingInterrupted, read_config

ROOT = Path(__file__).resolve().parents[2]
TIMING = {"tokens_per_s", "generation_s", "sampling_s", "training_s", "rollout_tokens_per_s"}
REWARD_MODULE = "faults_reward"  # written into each test's directory; RL's reward is module:function


# ---------------------------------------------------------------------------------------------------
# Tiny runs of every method (4 optimizer steps, dropout on)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _data(tmp_path: Path, name: str, count: int = 8) -> str:
    """A data file of the shape method `name` reads."""
    if name in ("sft", "soft-prompt"):
        rows = [{"prompt": f"Q: question {i}?\nA:", "completion": " yes"} for i in range(count)]
    elif name in ("dpo", "reward-model"):
        rows = [{"prompt": f"Q: {i}?\nA:", "chosen": " yes", "rejected": " no"} for i in range(count)]
    elif name == "rl":
        (tmp_path / f"{REWARD_MODULE}.py").write_text(
            "def length(prompts, completions):\n    return [float(len(c)) for c in completions]\n"
        )
        rows = [{"prompt": f"Say {i}:"} for i in range(count // 2)]
    else:  # distill: weighted samples, as `steer sample --json` prints them
        rows = [{"prompt": f"Q: {i}?", "text": " yes", "weight": 0.5 + i % 3} for i in range(count)]
    return _write_jsonl(tmp_path / f"{name}.jsonl", rows)


def _config(tmp_path: Path, name: str, out: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "data": _data(tmp_path, name), "model": "tiny-random", "out": str(tmp_path / out),
        "lora_rank": 4, "lora_dropout": 0.1, "warmup_steps": 1, "epochs": 1, "batch_size": 2,
        "max_length": 64, "eval_fraction": 0.0, "save_every": 2, "seed": 0,
    }  # fmt: skip
    if name == "rl":
        values.update(reward=f"{REWARD_MODULE}:length", batch_size=1, samples_per_prompt=2, max_new_tokens=4)
    if name == "soft-prompt":
        values.update(length=2)
    return METHODS[name].config(**{**values, **overrides})


def _train(config: Any, name: str, **kwargs: Any) -> Any:
    kwargs.setdefault("model", load_model("tiny-random", dtype="float32"))
    return METHODS[name].train(config, **kwargs)  # type: ignore[call-arg]


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every safetensors file of trained weights (adapter, reward head, soft prompt)."""
    found = {}
    for file in sorted(directory.glob("*.safetensors")):
        found |= {f"{file.name}:{k}": v for k, v in load_file(str(file)).items()}
    assert found, f"no weights in {directory}"
    return found


def _assert_same_run(whole: Any, resumed: Any) -> None:
    """Bitwise the same weights and the same metrics (timings aside) as the uninterrupted run."""
    a, b = _weights(whole.adapter), _weights(resumed.adapter)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[0]}: max diff " + str(
        float((a[different[0]].float() - b[different[0]].float()).abs().max())
    )
    strip = lambda r: [{k: v for k, v in m.items() if k not in TIMING} for m in r.metrics]  # noqa: E731
    assert strip(resumed) == strip(whole)
    assert resumed.steps == whole.steps


class Interrupter:
    """Ctrl-C in the middle of an optimizer step: armed once `progress` reports step `after`, it acts
    right after the next training forward pass (so dropout has drawn from the RNG), raising
    KeyboardInterrupt or sending SIGINT.
    """

    def __init__(self, model: Any, *, after: int, how: str) -> None:
        self.after, self.how, self.armed, self.fired = after, how, False, False
        # The decoder runs in every forward pass, including a reward model's decoder-only one.
        model.module.get_decoder().register_forward_hook(self.hook)

    def progress(self, step: int, total: int, record: dict[str, Any]) -> None:
        if step == self.after and not self.fired:
            self.armed = True

    def hook(self, module: Any, args: Any, output: Any) -> None:
        if not self.armed or not module.training:  # not a rollout or an evaluation (eval mode)
            return
        self.armed, self.fired = False, True
        if self.how == "raise":
            raise KeyboardInterrupt
        for _ in range(1 if self.how == "sigint" else 2):  # a second Ctrl-C stops at once
            os.kill(os.getpid(), signal.SIGINT)


# ---------------------------------------------------------------------------------------------------
# Ctrl-C: exact resume for every method, and for each way Ctrl-C can arrive


@pytest.mark.parametrize("name", sorted(METHODS))
def test_ctrl_c_in_the_middle_of_a_step_resumes_bitwise_exactly(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)  # RL's reward module is imported from the current directory
    whole = _train(_config(tmp_path, name, "whole"), name)
    assert whole.steps == 4
    model = load_model("tiny-random", dtype="float32")
    ctrl_c = Interrupter(model, after=1, how="raise")  # step 1 has no checkpoint of its own (save_every=2)
    with pytest.raises(TrainingInterrupted, match="interrupted at step 1; checkpoint saved") as stop:
        _train(_config(tmp_path, name, "parts"), name, model=model, progress=ctrl_c.progress)
    assert ctrl_c.fired and "--resume" in str(stop.value)
    run = RunDir(tmp_path / "parts")
    assert run.latest_checkpoint().name == "step-000001"
    assert json.loads((run.path / "status.json").read_text())["status"] == "interrupted"
    resumed = _train(_config(tmp_path, name, "parts"), name, resume=True)
    _assert_same_run(whole, resumed)
    assert json.loads((run.path / "status.json").read_text())["status"] == "finished"


CTRL_C = [
    # how, when it comes, the step the run stops at
    pytest.param("progress", 3, 3, id="between-steps"),
    pytest.param("raise", 3, 3, id="keyboard-interrupt-mid-step-drops-the-step"),
    pytest.param("sigint", 3, 4, id="sigint-mid-step-finishes-the-step"),
    pytest.param("sigint-twice", 3, 3, id="second-sigint-mid-step-drops-the-step"),
]


@pytest.mark.parametrize(("how", "after", "stops_at"), CTRL_C)
def test_sft_with_dropout_resumes_exactly_after_each_kind_of_ctrl_c(tmp_path, how, after, stops_at):
    whole = _train(_config(tmp_path, "sft", "whole", epochs=2), "sft")  # 8 steps
    model = load_model("tiny-random", dtype="float32")

    def progress_ctrl_c(step: int, total: int, record: dict[str, Any]) -> None:
        if step == after:
            raise KeyboardInterrupt

    ctrl_c = Interrupter(model, after=after, how=how)
    progress = progress_ctrl_c if how == "progress" else ctrl_c.progress
    with pytest.raises(TrainingInterrupted, match=f"interrupted at step {stops_at};"):
        _train(_config(tmp_path, "sft", "parts", epochs=2), "sft", model=model, progress=progress)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's own handler is back
    assert RunDir(tmp_path / "parts").latest_checkpoint().name == f"step-{stops_at:06d}"
    resumed = _train(_config(tmp_path, "sft", "parts", epochs=2), "sft", resume=True)
    _assert_same_run(whole, resumed)


def test_ctrl_c_before_the_first_step_ends_leaves_no_run(tmp_path):
    model = load_model("tiny-random", dtype="float32")
    ctrl_c = Interrupter(model, after=0, how="raise")
    ctrl_c.armed = True
    with pytest.raises(TrainingInterrupted, match="before the first step ended; nothing was saved"):
        _train(_config(tmp_path, "sft", "run"), "sft", model=model)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------------
# kill -9 (in a subprocess): at a step boundary, while writing metrics, during a checkpoint save

KILLED_RUN = textwrap.dedent(
    """
    import json, os, signal, sys
    from steering.models import load_model
    from steering.train import SFTConfig
    from steering.train.loop import run_training
    from steering.train.sft import SFT

    config, fault, at = SFTConfig(**json.loads(sys.argv[1])), sys.argv[2], int(sys.argv[3])

    class KilledInSave(SFT):
        def save_extra(self, directory):  # runs inside the checkpoint's temporary directory
            if f".step-{at:06d}.tmp-" in str(directory):
                (directory / "partial.bin").write_bytes(bytes(4096))
                os.kill(os.getpid(), signal.SIGKILL)

    def progress(step, total, record):
        if fault == "metrics-line" and step == at:  # as if killed halfway through the next line
            with open(os.path.join(config.out, "metrics.jsonl"), "a") as handle:
                handle.write('{"step": %d, "loss": 0.12' % (at + 1))
        if fault in ("boundary", "metrics-line") and step == at:
            os.kill(os.getpid(), signal.SIGKILL)

    model = load_model("tiny-random", dtype="float32")
    run_training(config, KilledInSave(), model=model, progress=progress)
    print("not killed")
    """
)


@pytest.mark.parametrize(
    ("fault", "at", "resumes_from"),
    [
        pytest.param("boundary", 3, 2, id="kill-after-step-3", marks=pytest.mark.slow),
        pytest.param("metrics-line", 3, 2, id="kill-while-writing-a-metrics-line", marks=pytest.mark.slow),
        pytest.param("save", 4, 2, id="kill-during-the-step-4-checkpoint-save"),
    ],
)
def test_kill_9_then_resume_is_exact_and_cleans_up(tmp_path, caplog, fault, at, resumes_from):
    overrides = {"epochs": 2}  # 8 steps
    whole = _train(_config(tmp_path, "sft", "whole", **overrides), "sft")
    config = _config(tmp_path, "sft", "parts", **overrides)
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN)
    values = dict(vars(config))
    killed = subprocess.run(
        [sys.executable, str(script), json.dumps(values), fault, str(at)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    run = RunDir(tmp_path / "parts")
    assert run.latest_checkpoint().name == f"step-{resumes_from:06d}"
    assert json.loads((run.path / "status.json").read_text())["status"] == "running"  # unfinished
    leftovers = [p.name for p in run.checkpoints.iterdir() if p.name.startswith(".")]
    assert bool(leftovers) == (fault == "save"), leftovers  # the cut save left its temporary directory

    page = run_report(run.path).read_text()  # the report reads a killed run and says it is unfinished
    assert f"unfinished at step {at}" in page
    with caplog.at_level(logging.WARNING):
        resumed = _train(_config(tmp_path, "sft", "parts", **overrides), "sft", resume=True)
    _assert_same_run(whole, resumed)
    assert ("the last line is cut" in caplog.text) == (fault == "metrics-line")
    assert not [p.name for p in run.checkpoints.iterdir() if p.name.startswith(".")]
    assert not [p.name for p in run.path.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------------------------------------------
# Checkpoints cannot run code


class Payload:
    """Unpickling this creates `marker`: what a crafted trainer.pt could do (or worse)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (open, (str(self.marker), "w"))


def _stopped_run(tmp_path: Path) -> tuple[RunDir, Path]:
    _train(_config(tmp_path, "sft", "run"), "sft", stop_after=2)
    run = RunDir(tmp_path / "run")
    return run, run.latest_checkpoint()


def _legacy_pickle(checkpoint: Path, marker: Path) -> None:
    for name in ("trainer.json", "trainer.safetensors"):
        (checkpoint / name).unlink()
    (checkpoint / "trainer.pt").write_bytes(pickle.dumps({"optimizer": Payload(marker)}))


def _unknown_tag(checkpoint: Path, marker: Path) -> None:
    (checkpoint / "trainer.json").write_text(
        json.dumps({"format": 1, "state": {"pickle": "cos\nsystem\n(S'touch marker'\ntR."}})
    )


def _missing_tensor(checkpoint: Path, marker: Path) -> None:
    saved = json.loads((checkpoint / "trainer.json").read_text())
    text = json.dumps(saved).replace('{"tensor": "t0"}', '{"tensor": "t999"}')
    (checkpoint / "trainer.json").write_text(text)


def _truncated_tensors(checkpoint: Path, marker: Path) -> None:
    data = (checkpoint / "trainer.safetensors").read_bytes()
    (checkpoint / "trainer.safetensors").write_bytes(data[: len(data) // 2])


def _not_json(checkpoint: Path, marker: Path) -> None:
    (checkpoint / "trainer.json").write_bytes(b"\x80\x04\x95 not json")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(_legacy_pickle, "a pickle, which can run code", id="old-format-malicious-pickle"),
        pytest.param(_unknown_tag, "is damaged", id="trainer.json-unknown-entry"),
        pytest.param(_missing_tensor, "is damaged", id="trainer.json-names-a-missing-tensor"),
        pytest.param(_truncated_tensors, "is damaged", id="trainer.safetensors-truncated"),
        pytest.param(_not_json, "is damaged", id="trainer.json-not-json"),
    ],
)
def test_a_crafted_or_damaged_checkpoint_is_refused_and_runs_nothing(tmp_path, damage, message):
    run, checkpoint = _stopped_run(tmp_path)
    marker = tmp_path / "pwned"
    damage(checkpoint, marker)
    before = {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file()}
    with pytest.raises(InvalidArgument, match=message) as refused:
        _train(_config(tmp_path, "sft", "run"), "sft", resume=True)
    assert not marker.exists()
    text = str(refused.value)
    assert str(checkpoint) in text and "Received:" in text and "To fix:" in text
    assert {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file()} == before  # nothing written


def test_the_malicious_pickle_would_run_code_if_unpickled(tmp_path):
    """The payload above is live: plain unpickling creates the marker (so the refusal test means something)."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(Payload(marker))).close()
    assert marker.exists()


# ---------------------------------------------------------------------------------------------------
# metrics.jsonl cut by a kill; --resume on a missing directory; runs that fail to start


def test_a_cut_last_metrics_line_is_skipped_and_a_cut_middle_line_is_an_error(tmp_path, caplog):
    whole = _train(_config(tmp_path, "sft", "whole"), "sft")
    _train(_config(tmp_path, "sft", "run"), "sft", stop_after=2)
    metrics = tmp_path / "run" / "metrics.jsonl"
    good = metrics.read_text()
    metrics.write_text(good + '{"step": 3, "loss": 1.2')
    with caplog.at_level(logging.WARNING):
        page = run_report(tmp_path / "run").read_text()
    assert "metrics.jsonl:3: the last line is cut" in caplog.text
    assert "unfinished at step 2" in page

    metrics.write_text('{"step": 1, "lo\n' + good)
    with pytest.raises(InputFormatError, match=r"Line 1 of .*metrics.jsonl is not a metrics record") as bad:
        run_report(tmp_path / "run")
    assert "repair or delete line 1" in str(bad.value)
    with pytest.raises(InputFormatError, match=r"Line 1 of .*metrics.jsonl"):
        _train(_config(tmp_path, "sft", "run"), "sft", resume=True)

    metrics.write_text(good + '{"step": 3, "loss": 1.2')
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        resumed = _train(_config(tmp_path, "sft", "run"), "sft", resume=True)
    assert "the last line is cut" in caplog.text
    _assert_same_run(whole, resumed)
    assert "unfinished" not in run_report(tmp_path / "run").read_text()


def test_resume_refuses_a_missing_directory_or_one_without_a_checkpoint(tmp_path):
    with pytest.raises(InvalidArgument, match=r"Nothing to resume: the run directory .* does not exist"):
        _train(_config(tmp_path, "sft", "nowhere"), "sft", resume=True)
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgument, match="has no checkpoint") as refused:
        _train(_config(tmp_path, "sft", "empty"), "sft", resume=True)
    assert "drop --resume" in str(refused.value)
    assert list((tmp_path / "empty").iterdir()) == []


def _raising_reward(directory: Path, fails_at_call: int) -> str:
    (directory / "raising_reward.py").write_text(
        textwrap.dedent(
            f"""
            calls = []
            def reward(prompts, completions):
                calls.append(1)
                if len(calls) >= {fails_at_call}:
                    raise RuntimeError("the reward service is down")
                return [1.0] * len(completions)
            """
        )
    )
    sys.modules.pop("raising_reward", None)
    return "raising_reward:reward"


FAILED_STARTS = [
    pytest.param("sft", {"data": "missing.jsonl"}, InputFormatError, "does not exist", id="missing-data"),
    pytest.param("sft", {"model": "tiny-randm"}, SteeringError, "Unknown model name", id="unknown-model"),
    pytest.param(
        "sft", {"target_modules": ["no_such_layer"]}, InvalidArgument, "LoRA cannot", id="bad-lora-target"
    ),
    pytest.param("rl", {"reward": "no_such_module:f"}, InvalidArgument, "No module named", id="bad-reward"),
    pytest.param("rl", {"reward": "FIRST"}, RuntimeError, "reward service is down", id="fails-in-step-1"),
]


@pytest.mark.parametrize(("name", "overrides", "error", "message"), FAILED_STARTS)
def test_a_run_that_fails_before_its_first_step_leaves_no_directory(
    tmp_path, monkeypatch, name, overrides, error, message
):
    monkeypatch.chdir(tmp_path)
    if overrides.get("reward") == "FIRST":
        overrides = {"reward": _raising_reward(tmp_path, fails_at_call=1)}
    loaded = {"model": None} if "model" in overrides else {}  # the run loads config.model itself
    with pytest.raises(error, match=message):
        _train(_config(tmp_path, name, "run", **overrides), name, **loaded)
    assert not (tmp_path / "run").exists()


def test_a_run_that_fails_later_is_kept_and_marked_failed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")  # a file of the user's is never touched
    reward = _raising_reward(tmp_path, fails_at_call=3)
    with pytest.raises(RuntimeError, match="reward service is down"):
        _train(_config(tmp_path, "rl", "run", reward=reward, save_every=1), "rl")
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "failed" and status["step"] == 2 and "reward service" in status["error"]
    assert "unfinished at step 2" in run_report(tmp_path / "run").read_text()
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_the_weights_of_an_unfinished_run_load_with_a_warning(tmp_path, caplog):
    config = _config(tmp_path, "sft", "run", eval_fraction=0.25, eval_every=1, epochs=3)

    def stop(step: int, total: int, record: dict[str, Any]) -> None:
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        _train(config, "sft", progress=stop)
    adapter = tmp_path / "run" / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()  # the best weights so far: looks finished
    model = load_model("tiny-random", dtype="float32")
    with caplog.at_level(logging.WARNING):
        Adapter(adapter).load(model)
    assert "did not finish: it was interrupted at step 2" in caplog.text and "--resume" in caplog.text
    caplog.clear()
    _train(config, "sft", resume=True)
    with caplog.at_level(logging.WARNING):
        Adapter(adapter).load(load_model("tiny-random", dtype="float32"))
    assert "did not finish" not in caplog.text


# ---------------------------------------------------------------------------------------------------
# Config values: one check for every field of every method


def _first_float_fields() -> list[Any]:
    cases = []
    for name, entry in sorted(METHODS.items()):
        for item in entry.config.__dataclass_fields__.values():
            if item.type == "float":
                for bad in (math.nan, math.inf):
                    cases.append(pytest.param(name, item.name, bad, id=f"{name}-{item.name}-{bad}"))
    return cases


@pytest.mark.parametrize(("name", "field", "value"), _first_float_fields())
def test_every_float_field_of_every_method_must_be_finite(tmp_path, name, field, value):
    with pytest.raises(InvalidArgument, match=f"config key {field} must be a finite number") as refused:
        _config(tmp_path, name, "run", **{field: value})
    assert "Received: nan" in str(refused.value) or "Received: inf" in str(refused.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("seed", "x", "config key seed must be a whole number"),
        ("seed", 1.7, "config key seed must be a whole number"),
        ("seed", None, "config key seed must be a whole number"),
        ("seed", True, "config key seed must be a whole number"),
        ("seed", -1, "config key seed must be between 0 and 2\\*\\*32 - 1"),
        ("seed", 2**40, "config key seed must be between 0 and 2\\*\\*32 - 1"),
        ("learning_rate", "1e-4", "config key learning_rate must be a finite number"),
        ("learning_rate", -math.inf, "config key learning_rate must be a finite number"),
        ("epochs", 2.5, "config key epochs must be a whole number"),
        ("max_steps", "x", "config key max_steps must be a whole number"),
        ("full", "yes", "config key full must be true or false"),
        ("target_modules", 3, "config key target_modules must be a string or a list of strings"),
    ],
)
def test_config_values_of_the_wrong_type_are_refused(tmp_path, field, value, message):
    with pytest.raises(InvalidArgument, match=message) as refused:
        _config(tmp_path, "sft", "run", **{field: value})
    assert "Received:" in str(refused.value) and "To fix: set e.g." in str(refused.value)


def test_a_nan_learning_rate_in_toml_is_refused(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(f'data = "{_data(tmp_path, "sft")}"\nlearning_rate = nan\n')
    with pytest.raises(InvalidArgument, match="config key learning_rate must be a finite number"):
        read_config(SFTConfig, config)


# ---------------------------------------------------------------------------------------------------
# module:function rewards: sys.path is put back; missing or wrong names are clear


def test_loading_a_reward_leaves_sys_path_as_it_was(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "path_reward.py").write_text("def score(prompts, completions):\n    return [0.0]\n")
    (tmp_path / "shadow_probe_xyz.py").write_text("SHADOWED = True\n")
    before = list(sys.path)
    assert load_callable("path_reward:score", "--reward")(["p"], ["c"]) == [0.0]
    assert sys.path == before
    import importlib.util

    assert importlib.util.find_spec("shadow_probe_xyz") is None  # the cwd is not on the path any more


def test_a_tty_py_in_the_working_directory_does_not_shadow_the_real_module(tmp_path):
    (tmp_path / "tty.py").write_text("raise SystemExit('the fake tty.py was imported')\n")
    (tmp_path / "peft.py").write_text("raise SystemExit('the fake peft.py was imported')\n")
    (tmp_path / "my_reward.py").write_text("def r(prompts, completions):\n    return [1.0]\n")
    code = (
        "from steering.callables import load_callable; load_callable('my_reward:r', 'reward'); "
        "import tty, peft; print(tty.__file__); print(peft.__file__)"
    )
    # -P: the working directory is not put on sys.path by Python itself (as with the `steer` script).
    done = subprocess.run(
        [sys.executable, "-P", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert str(tmp_path) not in done.stdout


@pytest.mark.parametrize(
    ("source", "spec", "message", "fix"),
    [
        (None, "nowhere_module:f", "No module named 'nowhere_module'", "run from the directory"),
        ("x = 1\n", "bad_reward_a:score", "has no function 'score'", "its functions"),
        ("def scroe(p, c):\n    return [0.0]\n", "bad_reward_b:score", 'Did you mean "scroe"', "scroe"),
        ("score = 3\n", "bad_reward_c:score", "is not a function \\(it is a int\\)", "point --reward"),
        ("def score(:\n", "bad_reward_d:score", "failed: SyntaxError", "python -c"),
        ("import no_such_dep\n", "bad_reward_e:score", "imports 'no_such_dep', which is not", "install"),
        ("raise ValueError('boom')\n", "bad_reward_f:score", "failed: ValueError: boom", "fix the error"),
        (None, "no_colon", "takes module:function", "rewards:positive"),
    ],
)
def test_bad_module_function_specs_are_clear(tmp_path, monkeypatch, source, spec, message, fix):
    monkeypatch.chdir(tmp_path)
    if source is not None:
        (tmp_path / f"{spec.split(':')[0]}.py").write_text(source)
    before = list(sys.path)
    with pytest.raises(InvalidArgument, match=message) as refused:
        load_callable(spec, "--reward")
    assert fix in str(refused.value).split("To fix:")[1]
    assert sys.path == before


# ---------------------------------------------------------------------------------------------------
# HF_HUB_OFFLINE is forced for the library's loads


def test_hub_offline_is_forced_even_when_the_environment_says_otherwise(tmp_path):
    """HF_HUB_OFFLINE=0 and a stand-in hub on localhost: after `import steering` nothing goes there."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []

    def serve() -> None:  # records each request line and hangs up
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            requests.append(connection.recv(4096).split(b"\r\n")[0])
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    code = textwrap.dedent(
        f"""
        import os
        import transformers  # the hub library first, while the environment still says online
        from steering.errors import ModelLoadError
        from steering.models import load_model
        try:
            load_model({str(folder)!r})
        except ModelLoadError as error:
            print("refused:", error)
        try:
            transformers.AutoConfig.from_pretrained("google/gemma-3-270m")
        except OSError as error:
            print("hub:", type(error).__name__)
        print("env:", os.environ["HF_HUB_OFFLINE"])
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"}
    env |= {"HF_ENDPOINT": f"http://127.0.0.1:{server.getsockname()[1]}", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    server.close()
    assert done.returncode == 0, done.stderr
    assert "refused: Could not load the model in" in done.stdout and "To fix:" in done.stdout
    assert "hub: OSError" in done.stdout and "env: 1" in done.stdout
    assert requests == [], "a load went to the (stand-in) hub"


# ---------------------------------------------------------------------------------------------------
# The command line: Ctrl-C exits 130 and resumes exactly; bad resumes and configs exit 2


def steer(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "steering", *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "sft", "data=d.jsonl", "out=nowhere", "--resume"], "Nothing to resume"),
        (
            ["train", "sft", "data=d.jsonl", "learning_rate=nan"],
            "config key learning_rate must be a finite number",
        ),
        (["report", "cut"], "Line 1 of cut/metrics.jsonl is not a metrics record"),
    ],
)
def test_cli_refusals_exit_2_without_traceback_or_files(tmp_path, args, message):
    (tmp_path / "d.jsonl").write_text('{"prompt": "a", "completion": "b"}\n' * 4)
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "metrics.jsonl").write_text('{"step": 1, "lo\n{"step": 2}\n')
    before = sorted(p.name for p in tmp_path.rglob("*"))
    done = steer(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert message in output and "To fix:" in output and "Traceback" not in output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.slow
def test_cli_ctrl_c_exits_130_then_resume_finishes_exactly(tmp_path):
    """A real SIGINT to `steer train sft`, wherever it lands: exit 130, then --resume is exact."""
    config = _config(tmp_path, "sft", "cli", epochs=6, batch_size=1)  # 48 steps
    args = [f"{k}={json.dumps(v)}" for k, v in vars(config).items()]
    whole = _train(_config(tmp_path, "sft", "whole", epochs=6, batch_size=1), "sft")
    command = [sys.executable, "-m", "steering", "train", "sft", *args]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "cli" / "metrics.jsonl"
    while process.poll() is None and not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 130, out + err
    assert "interrupted at step" in out + err and "Traceback" not in out + err
    resumed = steer("train", "sft", *args, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    a, b = _weights(whole.adapter), _weights(tmp_path / "cli" / "adapter")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

"""report_to = "tensorboard": event files in RUN/tensorboard with the scalars of metrics.jsonl, offline."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from steering.errors import InvalidArgument
from steering.train import SFTConfig, read_config, train_sft


def _config(tmp_path: Path, **overrides) -> SFTConfig:
    data = tmp_path / "demos.jsonl"
    rows = [json.dumps({"prompt": f"Q: question {i}?\nA:", "completion": " yes"}) for i in range(12)]
    data.write_text("\n".join(rows) + "\n")
    values = {
        "data": str(data), "model": "tiny-random", "out": str(tmp_path / "run"), "lora_rank": 2,
        "learning_rate": 5e-3, "warmup_steps": 1, "epochs": 2, "batch_size": 4, "eval_fraction": 0.2,
        "eval_every": 2, "patience": 0, "save_every": 2, "keep_checkpoints": 5, "report_to": "tensorboard",
    }  # fmt: skip
    return SFTConfig(**{**values, **overrides})


def _events(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _logged(metrics: list[dict], key: str) -> list[tuple[int, float]]:
    return [(r["step"], float(np.float32(r[key]))) for r in metrics if key in r]


def test_every_metrics_scalar_is_a_tensorboard_event(tmp_path, tiny):
    result = train_sft(_config(tmp_path), model=tiny)
    metrics = [json.loads(line) for line in (result.run / "metrics.jsonl").read_text().splitlines()]
    assert result.steps == 6 and len(metrics) == 6
    events = _events(result.run)
    assert _logged(metrics, "loss") and events["train/loss"] == _logged(metrics, "loss")
    assert _logged(metrics, "eval_loss") and events["eval/loss"] == _logged(metrics, "eval_loss")
    for key in ("lr", "grad_norm", "tokens", "tokens_per_s", "epoch", "trained_tokens"):
        assert events[f"train/{key}"] == _logged(metrics, key), key
    assert "train/step" not in events  # the step is each event's global step


def test_a_resumed_run_leaves_one_event_per_step(tmp_path, tiny):
    config = _config(tmp_path)
    train_sft(config, model=tiny)
    checkpoints = sorted((tmp_path / "run" / "checkpoints").iterdir())
    shutil.rmtree(checkpoints[-1])  # as if it had crashed after step 4: resume from the step-4 checkpoint
    result = train_sft(config, model=tiny, resume=True)
    metrics = [json.loads(line) for line in (result.run / "metrics.jsonl").read_text().splitlines()]
    events = _events(result.run)
    assert [step for step, _ in events["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert events["train/loss"] == _logged(metrics, "loss")


def test_report_to_names_the_allowed_values(tmp_path):
    with pytest.raises(InvalidArgument, match=r"nknown report_to 'wandb' .*allowed: none, tensorboard"):
        _config(tmp_path, report_to="wandb")
    assert read_config(SFTConfig, None, ["data=x.jsonl", "report_to=tensorboard"]).report_to == "tensorboard"


def test_a_missing_tensorboard_package_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` raises ImportError
    with pytest.raises(InvalidArgument, match="pip install tensorboard"):
        train_sft(_config(tmp_path, model="no-such-model"))  # refused before the model is loaded
    assert not (tmp_path / "run" / "metrics.jsonl").exists()

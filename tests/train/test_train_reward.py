"""Reward models on the tiny model: each objective learns its data; the result is a reward callable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steering.condition import Target
from steering.errors import InvalidArgument
from steering.models import load_model
from steering.train import RewardModel, RewardModelConfig, train_reward_model


def _write(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(tmp_path: Path, data: Path, **overrides) -> RewardModelConfig:
    values = {
        "data": str(data), "model": "tiny-random", "out": str(tmp_path / "run"), "lora_rank": 4,
        "learning_rate": 1e-2, "warmup_steps": 0, "epochs": 6, "batch_size": 4, "eval_fraction": 0.25,
        "eval_every": 100, "patience": 0,
    }  # fmt: skip
    return RewardModelConfig(**{**values, **overrides})


def test_pairwise_reward_model_learns_and_scores(tmp_path):
    rows = [{"prompt": f"Q: is {i} fine?\nA:", "chosen": " yes", "rejected": " no"} for i in range(16)]
    model = load_model("tiny-random", dtype="float32")
    result = train_reward_model(_config(tmp_path, _write(tmp_path, rows)), model=model)
    final = [r for r in result.metrics if "eval_accuracy" in r][-1]
    assert final["eval_accuracy"] == 1.0 and final["eval_loss"] < 0.3
    reward = RewardModel(model, result.adapter)
    yes, no = reward(["Q: is 99 fine?\nA:"] * 2, [" yes", " no"])
    assert yes > no
    # A reward callable like any other: it defines a soft target.
    target = Target(model, "Q: is 5 fine?\nA:", [reward], beta=0.5, max_new_tokens=2)
    assert target.log_potential([" yes", " no"]).tolist() == pytest.approx(
        [2 * s for s in reward(["Q: is 5 fine?\nA:"] * 2, [" yes", " no"])]
    )


def test_rankings_and_ratings(tmp_path):
    ranked = [
        {"prompt": f"Item {i}:", "completions": [" bad", " good", " ok"], "ranking": [1, 2, 0]}
        for i in range(16)
    ]
    result = train_reward_model(
        _config(tmp_path, _write(tmp_path, ranked)), model=load_model("tiny-random", dtype="float32")
    )
    assert [r for r in result.metrics if "eval_accuracy" in r][-1]["eval_accuracy"] == 1.0
    assert json.loads((result.adapter / "reward_model.json").read_text())["objective"] == "rankings"
    rated = [
        {"prompt": f"Say {i}:", "completion": " " + "a" * (i % 4 + 1), "rating": float(i % 4)}
        for i in range(16)
    ]
    rated_dir = tmp_path / "rated"
    rated_dir.mkdir()
    result = train_reward_model(
        _config(rated_dir, _write(rated_dir, rated), epochs=10),
        model=load_model("tiny-random", dtype="float32"),
    )
    losses = [r["loss"] for r in result.metrics if "loss" in r]
    assert losses[-1] < 0.25 * losses[0]
    with pytest.raises(InvalidArgument, match="is not a reward model"):
        RewardModel(load_model("tiny-random", dtype="float32"), tmp_path)

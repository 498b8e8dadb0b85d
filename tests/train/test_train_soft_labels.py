"""Soft labels into training: `p_chosen` read and checked, used as DPO's and the reward model's target,
`label_smoothing` for rows without one, and a judge's soft label carried from a feedback database through
`steer train … data=F.db`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from steer_runs import run_steer

from steering.errors import InputFormatError, InvalidArgument
from steering.feedback.store import FeedbackStore
from steering.models import load_model
from steering.train import DPOConfig, RewardModel, RewardModelConfig, train_dpo, train_reward_model
from steering.train.data import load_examples

# The least cross-entropy against the target p = ¾: its entropy, reached where σ(margin) = ¾.
ENTROPY_3_4 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))


def _pairs(path: Path, p_chosen: float | None, count: int = 16) -> Path:
    soft = {} if p_chosen is None else {"p_chosen": p_chosen}
    rows = [
        {"prompt": f"Q: is {i} fine?\nA:", "chosen": " yes", "rejected": " no", **soft} for i in range(count)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _dpo(tmp_path: Path, data: Path, **overrides) -> DPOConfig:
    values = {
        "data": str(data), "model": "tiny-random", "out": str(tmp_path / "run"), "lora_rank": 4,
        "learning_rate": 1e-2, "warmup_steps": 0, "epochs": 6, "batch_size": 4, "eval_fraction": 0.25,
        "eval_every": 3, "patience": 0, "beta": 0.5,
    }  # fmt: skip
    return DPOConfig(**{**values, **overrides})


def test_p_chosen_is_read_and_checked(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text(
        '{"prompt": "p", "chosen": "a", "rejected": "b", "p_chosen": 0.75}\n'
        '{"prompt": "p", "chosen": "a", "rejected": "b", "p_chosen": 1}\n'
        '{"prompt": "p", "chosen": "a", "rejected": "b", "p_chosen": 0}\n'
        '{"prompt": "p", "chosen": "a", "rejected": "b"}\n'
    )
    assert [e.p_chosen for e in load_examples(path, "preferences")] == [0.75, 1.0, 0.0, None]
    for bad in ('"0.75"', "1.5", "-0.1", "true", "null", "NaN"):
        path.write_text(f'{{"prompt": "p", "chosen": "a", "rejected": "b", "p_chosen": {bad}}}\n')
        with pytest.raises(InputFormatError, match=r"prefs.jsonl:1: field 'p_chosen' must be a probability"):
            load_examples(path, "preferences")


def test_label_smoothing_is_checked(tmp_path):
    data = _pairs(tmp_path / "pairs.jsonl", None)
    for value in (-0.1, 0.6):
        with pytest.raises(InvalidArgument, match=r"label_smoothing must be from 0 to 0\.5"):
            _dpo(tmp_path, data, label_smoothing=value)
        with pytest.raises(InvalidArgument, match=r"label_smoothing must be from 0 to 0\.5"):
            RewardModelConfig(data=str(data), label_smoothing=value)
    with pytest.raises(InvalidArgument, match="must be a finite number"):
        _dpo(tmp_path, data, label_smoothing="0.1")
    rated = tmp_path / "rated.jsonl"
    rated.write_text('{"prompt": "p", "completion": "a", "rating": 3}\n' * 4)
    config = RewardModelConfig(
        data=str(rated), model="tiny-random", out=str(tmp_path / "rm"), label_smoothing=0.1
    )
    with pytest.raises(InvalidArgument, match="label_smoothing applies to preference pairs"):
        train_reward_model(config, model=load_model("tiny-random", dtype="float32"))


def test_ipo_first_step_has_the_soft_target(tmp_path):
    """At the first step h = 0, so IPO's loss is the squared target margin ((2p − 1)/(2β))²: p reaches it."""
    model = load_model("tiny-random", dtype="float32")
    soft = _pairs(tmp_path / "soft.jsonl", 0.75)
    hard = _pairs(tmp_path / "hard.jsonl", None)
    settings = {"loss": "ipo", "beta": 0.25, "max_steps": 1}
    for data, smoothing, expected in ((soft, 0.0, 1.0), (hard, 0.25, 1.0), (hard, 0.0, 4.0)):
        out = tmp_path / f"run-{data.stem}-{smoothing}"
        result = train_dpo(
            _dpo(tmp_path, data, out=str(out), label_smoothing=smoothing, **settings), model=model
        )
        assert result.metrics[0]["loss"] == pytest.approx(expected, abs=1e-4)


def test_dpo_trains_on_soft_labels_to_a_finite_margin(tmp_path):
    """p = ¾ on every pair: the loss falls from log 2 towards its floor H(¾) (never below it) and β·h
    settles near logit(¾) = log 3, where hard labels drive it without bound (test_train_dpo). Smoothing
    hard rows by ε = ¼ is the same training, number for number."""
    soft = train_dpo(
        _dpo(tmp_path, _pairs(tmp_path / "soft.jsonl", 0.75)),
        model=load_model("tiny-random", dtype="float32"),
    )
    steps = [r for r in soft.metrics if "loss" in r]
    assert steps[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert all(r["loss"] >= ENTROPY_3_4 - 1e-4 for r in steps)
    assert steps[-1]["loss"] < ENTROPY_3_4 + 0.05
    margins = [0.5 * r["margin"] for r in steps[-6:]]  # β·h over the last two epochs
    assert 0.3 < sum(margins) / len(margins) < 3.0 and steps[-1]["accuracy"] == 1.0

    smoothed_dir = tmp_path / "smoothed"
    smoothed_dir.mkdir()
    smoothed = train_dpo(
        _dpo(smoothed_dir, _pairs(smoothed_dir / "hard.jsonl", None), label_smoothing=0.25),
        model=load_model("tiny-random", dtype="float32"),
    )
    assert [r.get("loss") for r in smoothed.metrics] == [r.get("loss") for r in soft.metrics]


def test_reward_model_learns_the_soft_gap(tmp_path):
    """Bradley–Terry against p = ¾: the score gap of a held-out pair ends near log 3 ≈ 1.10, not far above."""
    config = RewardModelConfig(
        data=str(_pairs(tmp_path / "soft.jsonl", 0.75)), model="tiny-random", out=str(tmp_path / "rm"),
        lora_rank=4, learning_rate=1e-2, warmup_steps=0, epochs=6, batch_size=4, eval_fraction=0.25,
        eval_every=100, patience=0,
    )  # fmt: skip
    model = load_model("tiny-random", dtype="float32")
    result = train_reward_model(config, model=model)
    losses = [r["loss"] for r in result.metrics if "loss" in r]
    assert all(loss >= ENTROPY_3_4 - 1e-4 for loss in losses) and losses[-1] < ENTROPY_3_4 + 0.02
    yes, no = RewardModel(model, result.adapter)(["Q: is 99 fine?\nA:"] * 2, [" yes", " no"])
    assert 0.5 < yes - no < 2.0


def test_a_judges_soft_label_travels_from_the_database_to_the_loss(tmp_path, monkeypatch, capsys):
    """`steer train dpo data=F.db`: the snapshot carries P(chosen ≻ rejected) from the judge's soft label
    (turned around where the judge chose b), and IPO's first loss is ((2p − 1)/(2β))² with that p."""
    db = tmp_path / "f.db"
    with FeedbackStore.open(db) as store:
        judge = store.ensure_annotator("judge", "judge:tiny-random:abc")
        for i in range(4):
            prompt = store.add_prompt(f"Q: is {i} fine?\nA:")
            yes, no = (store.add_response(prompt, text, model="tiny-random") for text in (" yes", " no"))
            if i % 2:
                store.add_comparison(judge, response_a=yes, response_b=no, choice="a", soft_label=0.875)
            else:
                store.add_comparison(judge, response_a=no, response_b=yes, choice="b", soft_label=0.125)
    run = tmp_path / "run"
    code, _, err = run_steer(
        monkeypatch, capsys,
        ["train", "dpo", f"data={db}", "model=tiny-random", f"out={run}", "loss=ipo", "beta=0.25",
         "max_steps=1", "batch_size=4", "eval_fraction=0", "lora_rank=4", "data_annotators=judge"],
    )  # fmt: skip
    assert code == 0, err
    [snapshot] = run.glob("feedback-preferences-*.jsonl")
    rows = [json.loads(line) for line in snapshot.read_text().splitlines()]
    assert [(r["chosen"], r["p_chosen"]) for r in rows] == [(" yes", 0.875)] * 4
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert first["loss"] == pytest.approx(((2 * 0.875 - 1) / 0.5) ** 2, abs=1e-4)  # 2.25; hard: 4
    # data_soft_labels=false: the same judge's rows as hard labels, and IPO's first loss is (1/(2β))² = 4.
    hard = tmp_path / "hard"
    code, _, err = run_steer(
        monkeypatch, capsys,
        ["train", "dpo", f"data={db}", "model=tiny-random", f"out={hard}", "loss=ipo", "beta=0.25",
         "max_steps=1", "batch_size=4", "eval_fraction=0", "lora_rank=4", "data_annotators=judge",
         "data_soft_labels=false"],
    )  # fmt: skip
    assert code == 0, err
    [snapshot] = hard.glob("feedback-preferences-*.jsonl")
    assert all("p_chosen" not in json.loads(line) for line in snapshot.read_text().splitlines())
    first = json.loads((hard / "metrics.jsonl").read_text().splitlines()[0])
    assert first["loss"] == pytest.approx(4.0, abs=1e-4)
    code, _, err = run_steer(
        monkeypatch, capsys,
        ["train", "dpo", f"data={db}", "model=tiny-random", f"out={tmp_path / 'bad'}", "data_soft_labels=maybe"],
    )  # fmt: skip
    assert code == 2 and "data_soft_labels must be true or false" in err

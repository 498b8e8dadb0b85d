"""DPO/IPO on the tiny model: the first step's loss is exact, training learns the preference."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from steering.controls import Adapter
from steering.errors import InputFormatError, InvalidArgument
from steering.models import load_model
from steering.train import DPOConfig, train_dpo
from steering.train.dpo import load_preferences


def _pairs(tmp_path: Path, count: int = 16) -> Path:
    path = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"Q: is {i} fine?\nA:", "chosen": " yes", "rejected": " no"} for i in range(count)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(tmp_path: Path, **overrides) -> DPOConfig:
    values = {
        "data": str(_pairs(tmp_path)),
        "model": "tiny-random",
        "out": str(tmp_path / "run"),
        "lora_rank": 4,
        "learning_rate": 1e-2,
        "warmup_steps": 0,
        "epochs": 4,
        "batch_size": 4,
        "eval_fraction": 0.25,
        "eval_every": 3,
        "patience": 0,
        "beta": 0.5,
    }
    return DPOConfig(**{**values, **overrides})


def _preference(model, adapter: Path | None) -> float:
    """log π(" yes") − log π(" no") after a held-out prompt."""
    prompt = "Q: is 99 fine?\nA:"

    def score() -> float:
        yes, no = model.logprobs(
            [prompt, prompt], [model.encode_continuation(" yes"), model.encode_continuation(" no")]
        )
        return float(yes.sum() - no.sum())

    if adapter is None:
        return score()
    with Adapter(adapter).attached(model):
        return score()


def test_dpo_first_step_is_log_2_and_training_learns_the_preference(tmp_path):
    model = load_model("tiny-random", dtype="float32")
    before = _preference(model, None)
    result = train_dpo(_config(tmp_path), model=model)
    steps = [r for r in result.metrics if "loss" in r]
    # LoRA starts at zero (B = 0): policy = reference, so h = 0 and −log σ(0) = log 2 exactly.
    assert steps[0]["loss"] == pytest.approx(math.log(2), abs=1e-5) and steps[0]["margin"] == pytest.approx(
        0, abs=1e-5
    )
    assert steps[-1]["loss"] < 0.3 and steps[-1]["accuracy"] == 1.0
    evals = [r for r in result.metrics if "eval_accuracy" in r]
    assert evals[-1]["eval_accuracy"] == 1.0 and evals[-1]["eval_margin"] > 0
    assert _preference(load_model("tiny-random", dtype="float32"), result.adapter) > before + 1.0
    assert _preference(model, None) == pytest.approx(before, abs=1e-5)  # the model came back as the base


def test_ipo_first_step(tmp_path):
    result = train_dpo(
        _config(tmp_path, loss="ipo", beta=0.25, max_steps=1),
        model=load_model("tiny-random", dtype="float32"),
    )
    # (h − 1/(2β))² with h = 0: (1/0.5)² = 4.
    assert result.metrics[0]["loss"] == pytest.approx(4.0, abs=1e-4)


def test_rankings_become_pairs_and_bad_input(tmp_path):
    path = tmp_path / "ranked.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completions": ["a", "b", "c"], "ranking": [1, 2, 0]}) + "\n")
    pairs = load_preferences(str(path))
    assert [(p.chosen, p.rejected) for p in pairs] == [("b", "c"), ("b", "a"), ("c", "a")]
    with pytest.raises(InvalidArgument, match=r"β \(the KL weight\) must be a positive finite number"):
        _config(tmp_path, beta=0)
    with pytest.raises(InvalidArgument, match="nknown preference loss"):
        _config(tmp_path, loss="kto")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "same", "rejected": "same"}\n')
    with pytest.raises(InputFormatError, match=r"bad.jsonl:1: field 'rejected' is the same text as 'chosen'"):
        load_preferences(str(bad))
    # An empty answer is an answer (only end-of-text is scored): a preference may rank it down or up.
    empty = tmp_path / "empty.jsonl"
    empty.write_text(
        '{"prompt": "p", "chosen": " yes", "rejected": ""}\n{"prompt": "p", "chosen": "", "rejected": " no"}\n'
    )
    assert [(p.chosen, p.rejected) for p in load_preferences(str(empty))] == [(" yes", ""), ("", " no")]
    bad.write_text('{"prompt": "p", "chosen": "", "rejected": ""}\n')
    with pytest.raises(InputFormatError, match=r"bad.jsonl:1: field 'rejected' is the same text as 'chosen'"):
        load_preferences(str(bad))

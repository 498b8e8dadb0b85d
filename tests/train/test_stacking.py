"""Training on top of an adapter: the reference is the start policy; the saved adapter is the exact sum."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from steering.controls import Adapter
from steering.errors import InvalidArgument
from steering.models import load_model
from steering.train import DPOConfig, SFTConfig, train_dpo, train_sft
from steering.train.stacking import merged_into_weights


def _data(tmp_path: Path, answer: str, name: str) -> Path:
    path = tmp_path / name
    rows = [{"prompt": f"Q: question {i}?\nA:", "completion": answer} for i in range(16)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _sft(tmp_path: Path, out: str, answer: str, **overrides) -> Path:
    config = SFTConfig(
        data=str(_data(tmp_path, answer, f"{out}.jsonl")), model="tiny-random", out=str(tmp_path / out),
        lora_rank=4, lora_alpha=8, lora_dropout=0.0, learning_rate=2e-2, warmup_steps=0, epochs=1,
        batch_size=4, eval_fraction=0.0, save_every=2, **overrides,
    )  # fmt: skip
    return train_sft(config).adapter


@torch.no_grad()
def _logits(model, controls) -> torch.Tensor:
    ids = torch.tensor([model.tokenizer.encode("Q: question 3?\nA: yes")])
    if not controls:
        return model.module(ids).logits[0]
    with controls[0].attached(model):
        return model.module(ids).logits[0]


def test_the_stacked_adapter_is_the_start_update_plus_the_new_one(tmp_path: Path) -> None:
    start = _sft(tmp_path, "start", " yes")
    stacked = _sft(tmp_path, "top", " no", init_adapter=str(start))
    config = json.loads((stacked / "adapter_config.json").read_text())
    meta = json.loads((stacked / "steering.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 8  # rank 4 + 4, scaling 1
    assert meta["stacked_on"]["path"] == str(start)
    # The new LoRA alone (the last checkpoint keeps it unstacked) on the start-merged weights …
    raw = sorted((tmp_path / "top" / "checkpoints").iterdir())[-1] / "adapter"
    model = load_model("tiny-random", dtype="float32")
    with merged_into_weights(model, start):
        expected = _logits(model, [Adapter(raw)])
        start_only = _logits(model, [])
    # … is what the stacked adapter gives on the plain base, and the weights come back unchanged.
    got = _logits(model, [Adapter(stacked)])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert (got - start_only).abs().max() > 1e-3  # the new LoRA moved something
    torch.testing.assert_close(_logits(model, [Adapter(start)]), start_only, atol=1e-4, rtol=1e-4)
    fresh = load_model("tiny-random", dtype="float32")
    torch.testing.assert_close(_logits(model, []), _logits(fresh, []))


def test_dpo_on_top_of_an_adapter_uses_the_start_policy_as_reference(tmp_path: Path) -> None:
    start = _sft(tmp_path, "start", " yes")
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"Q: question {i}?\nA:", "chosen": " yes", "rejected": " no"} for i in range(8)]
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = DPOConfig(
        data=str(pairs), model="tiny-random", out=str(tmp_path / "dpo"), lora_rank=4, lora_alpha=8,
        lora_dropout=0.0, learning_rate=1e-9, warmup_steps=0, epochs=1, batch_size=4, eval_fraction=0.0,
        init_adapter=str(start),
    )  # fmt: skip
    result = train_dpo(config)
    # With a learning rate of ~0 the policy is the reference, so DPO's implicit reward margin is 0
    # only if the reference is the start policy (against the base it would be far from 0).
    first = next(r for r in result.metrics if "loss" in r)
    assert first["loss"] == pytest.approx(0.6931, abs=1e-3)


def test_a_start_adapter_for_another_model_or_with_full_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="full=true"):
        SFTConfig(data="x.jsonl", init_adapter="a", full=True)
    with pytest.raises(InvalidArgument):
        _sft(tmp_path, "top", " no", init_adapter=str(tmp_path / "missing"))

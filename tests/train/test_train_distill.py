"""Distilling a conditioned target into an adapter moves q toward it (exact KL on tiny-letters)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from exactness import policy

from steering.condition import Target, ends_with, enumerate_target, importance
from steering.errors import InputFormatError
from steering.models import load_model
from steering.train import DistillConfig, train_distill
from steering.train.distill import load_weighted

PROMPT, LENGTH = "ab", 3


def _kl_target_to_policy(model, adapter: Path | None) -> float:
    """KL(target ‖ q) exactly: the target p(x | ends with "b"), q = base (+ adapter), enumerated."""
    target = enumerate_target(Target(model, PROMPT, [ends_with("b")], max_new_tokens=LENGTH))
    q = policy(model, PROMPT, LENGTH, adapter)
    probs = target.probs
    keep = probs > 0
    return float((probs[keep] * (probs[keep].log() - q.log_base[keep])).sum())


def test_distilling_the_posterior_moves_q_toward_the_target(tmp_path):
    model = load_model("tiny-letters", dtype="float32")
    target = Target(model, PROMPT, [ends_with("b")], max_new_tokens=LENGTH)
    posterior = importance(target, n_particles=600, seed=0, batch_size=300)
    before = _kl_target_to_policy(model, None)
    assert before == pytest.approx(
        -enumerate_target(target).log_evidence, abs=1e-6
    )  # KL(p(·|A) ‖ p) = −log p(A)
    config = DistillConfig(
        model="tiny-letters", out=str(tmp_path / "run"), lora_rank=8, learning_rate=3e-2, warmup_steps=0,
        epochs=12, batch_size=64, save_every=1000,
    )  # fmt: skip
    result = train_distill(config, posterior=posterior, model=model)
    after = _kl_target_to_policy(model, result.adapter)
    # Stated bound: under half of KL(target ‖ base) after twelve epochs (seed 0: 1.44 → 0.53 nats).
    assert after < before / 2, (before, after)


def test_weighted_samples_file(tmp_path):
    path = tmp_path / "posterior.jsonl"
    path.write_text(
        json.dumps({"prompt": "ab", "text": "cb", "weight": 0.75, "tokens": [3, 2, 0]}) + "\n"
        + json.dumps({"prompt": "ab", "text": "b", "weight": 0.25}) + "\n"
        + json.dumps({"summary": {"ess": 1.6}}) + "\n"
    )  # fmt: skip
    samples = load_weighted(str(path))
    assert [s.weight for s in samples] == [0.75, 0.25] and samples[0].token_ids == (3, 2, 0)
    path.write_text(json.dumps({"prompt": "ab", "text": "b", "weight": math.inf}) + "\n")
    with pytest.raises(InputFormatError, match=r"posterior\.jsonl:1: field 'weight' must be a finite number"):
        load_weighted(str(path))

"""The prompt as a reward, trained: RL with r = λ·Σδ moves the policy toward π·exp(λ·Σδ)/Z (exact)."""

from __future__ import annotations

import math

import pytest

from steering.condition import Target, enumerate_target, fixed_tokens, length_between, prompt_as_reward
from steering.errors import InvalidArgument
from steering.models import load_model
from steering.recipes.prompt_reward_training import train_prompt_as_reward
from steering.train import RLConfig, train_rl

PROMPT, SPANS, TOKENS = "ab", {1: "c", 3: "a"}, 4
RL = {"batch_size": 4, "samples_per_prompt": 16, "epochs": 150, "learning_rate": 1e-2, "lora_rank": 8}


def _kl_base_to_target(model, strength: float) -> float:
    """KL(π ‖ π·exp(λ·Σδ)/Z) exactly: where the policy starts, measured against the λ target."""
    base = enumerate_target(Target(model, PROMPT, [length_between(0, 10**9)], max_new_tokens=TOKENS))
    soft = Target(model, PROMPT, [fixed_tokens(SPANS, strength=strength)], max_new_tokens=TOKENS)
    target = enumerate_target(soft)
    log_target = target.log_base + target.log_potential - target.log_evidence
    return float((base.log_base.exp() * (base.log_base - log_target)).sum())


def test_rl_on_the_prompt_reward_approaches_its_target(tmp_path):
    model = load_model("tiny-letters", dtype="float32")
    base, trained = train_prompt_as_reward(
        model, PROMPT, SPANS, (0.0, 4.0), out_dir=tmp_path, max_new_tokens=TOKENS, exact=True, rl=RL
    )
    target = prompt_as_reward(model, PROMPT, SPANS, (0.0, 4.0), max_new_tokens=TOKENS, exact=True)
    # λ = 0 is the base, untrained: KL 0 to itself and to its target (the base), the share the base's.
    assert base.steps == 0 and base.kl_to_base == pytest.approx(0.0, abs=1e-6)
    assert base.kl_to_target == pytest.approx(0.0, abs=1e-6)
    assert base.satisfied == pytest.approx(target[0].satisfied, rel=1e-5)
    # Stated bounds for λ = 4 (target share 0.86, base 0.03): RL ends within a third of where it
    # started in KL to its target (≈ 2.6 nats), and more than half-way to the target's share.
    start = _kl_base_to_target(model, 4.0)
    assert start > 1.0
    assert trained.kl_to_target < start / 3, (start, trained)
    assert trained.satisfied > base.satisfied + 0.5 * (target[1].satisfied - base.satisfied)
    assert trained.kl_to_conditional < base.kl_to_conditional
    assert trained.kl_to_base > 0 and trained.steps == 150


def test_a_hard_condition_is_not_a_reward(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "ab"}\n' * 4)
    config = RLConfig(data=str(path), model="tiny-letters", out=str(tmp_path / "run"), max_new_tokens=TOKENS)
    with pytest.raises(InvalidArgument, match="hard condition is not a reward"):
        train_rl(config, reward=fixed_tokens(SPANS), model=load_model("tiny-letters", dtype="float32"))


def test_strengths_must_be_finite(tmp_path):
    with pytest.raises(InvalidArgument, match="finite non-negative"):
        train_prompt_as_reward(load_model("tiny-letters"), PROMPT, SPANS, (1.0, math.inf), out_dir=tmp_path)


def test_workers_train_the_same_policies_as_one_process(tmp_path):
    # Two λ trained in two spawned processes (one thread each) give the points of training them here.
    model = load_model("tiny-letters", dtype="float32")
    rl = {**RL, "epochs": 4}
    kwargs = {"max_new_tokens": TOKENS, "exact": True, "rl": rl}
    here = train_prompt_as_reward(model, PROMPT, SPANS, (1.0, 4.0), out_dir=tmp_path / "here", **kwargs)
    pooled = train_prompt_as_reward(
        model, PROMPT, SPANS, (1.0, 4.0), out_dir=tmp_path / "pooled", workers=2, **kwargs
    )
    assert [p.steps for p in pooled] == [4, 4]
    for a, b in zip(here, pooled, strict=True):
        assert a.strength == b.strength
        assert a.kl_to_base == pytest.approx(b.kl_to_base, abs=1e-9) and a.kl_to_base > 0
        assert a.satisfied == pytest.approx(b.satisfied, abs=1e-9)
        assert a.kl_to_target == pytest.approx(b.kl_to_target, abs=1e-9)

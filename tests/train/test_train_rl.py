"""KL-regularised RL moves the policy toward the analytic target π(x)·exp(r(x)/β) (exact on tiny-letters)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from exactness import policy

from steering.condition import Target, enumerate_target
from steering.controls import Temperature
from steering.errors import InputFormatError, InvalidArgument
from steering.models import load_model
from steering.rewards import RewardSum
from steering.train import (
    RewardModel,
    RewardModelConfig,
    RLConfig,
    read_config,
    train_reward_model,
    train_rl,
)

PROMPT, LENGTH, BETA = "ab", 3, 0.5


def a_count(prompts, completions):
    return [float(text.count("a")) for text in completions]


def b_count(prompts, completions):
    return [float(text.count("b")) for text in completions]


def _kl_to_target(model, adapter: Path | None, reward=a_count) -> float:
    """KL(q ‖ target) exactly: q enumerated with the adapter on, target = π·exp(r/β)/Z."""
    target = enumerate_target(Target(model, PROMPT, [reward], beta=BETA, max_new_tokens=LENGTH))
    q = policy(model, PROMPT, LENGTH, adapter)
    assert q.completions == target.completions
    log_target = target.log_base + target.log_potential - target.log_evidence
    return float((q.log_base.exp() * (q.log_base - log_target)).sum())


def _prompts(tmp_path: Path, count: int = 8) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": PROMPT}) + "\n" for _ in range(count)))
    return path


def _config(tmp_path: Path, **overrides) -> RLConfig:
    values = {
        "data": str(_prompts(tmp_path)), "model": "tiny-letters", "out": str(tmp_path / "run"),
        "lora_rank": 8, "learning_rate": 3e-2, "warmup_steps": 0, "epochs": 12, "batch_size": 4,
        "samples_per_prompt": 8, "max_new_tokens": LENGTH, "beta": BETA, "save_every": 1000,
    }  # fmt: skip
    return RLConfig(**{**values, **overrides})


def test_rl_approaches_the_analytic_target(tmp_path):
    model = load_model("tiny-letters", dtype="float32")
    before = _kl_to_target(model, None)
    result = train_rl(_config(tmp_path), reward=a_count, model=model)
    after = _kl_to_target(model, result.adapter)
    # Stated bound: from KL(π ‖ target) ≈ before to under a third of it, and under 0.1 nats.
    assert before > 0.3
    assert after < min(before / 3, 0.1), (before, after)
    records = [r for r in result.metrics if "reward" in r]
    assert records[-1]["reward"] > records[0]["reward"]
    assert all(
        {"kl", "kl_k3", "return", "generation_s", "training_s", "rollout_tokens_per_s"} <= set(r)
        for r in records
    )
    # The books are exact: k1 and k3 estimate the same KL; both start at 0 (policy = base).
    assert records[0]["kl"] == pytest.approx(0.0, abs=1e-4) and records[0]["kl_k3"] == pytest.approx(
        0.0, abs=1e-4
    )
    assert records[-1]["kl_k3"] > 0


def test_rl_resumes_exactly(tmp_path):
    whole = train_rl(
        _config(tmp_path, out=str(tmp_path / "a"), epochs=2),
        reward=a_count,
        model=load_model("tiny-letters", dtype="float32"),
    )
    train_rl(
        _config(tmp_path, out=str(tmp_path / "b"), epochs=2),
        reward=a_count,
        model=load_model("tiny-letters", dtype="float32"),
        stop_after=2,
    )
    resumed = train_rl(
        _config(tmp_path, out=str(tmp_path / "b"), epochs=2),
        reward=a_count,
        model=load_model("tiny-letters", dtype="float32"),
        resume=True,
    )
    assert [(r["step"], r["reward"], r["loss"]) for r in resumed.metrics] == [
        (r["step"], r["reward"], r["loss"]) for r in whole.metrics
    ]


def test_rl_micro_batches_take_the_same_steps(tmp_path):
    """The update over a step's 32 rollouts in chunks of 5 (uneven) equals the one-forward update."""
    runs = [
        train_rl(
            _config(tmp_path, out=str(tmp_path / f"m{size}"), epochs=1, micro_batch_size=size),
            reward=a_count,
            model=load_model("tiny-letters", dtype="float32"),
        )
        for size in (0, 5)
    ]
    whole, chunked = ([(r["reward"], r["loss"], r["grad_norm"]) for r in run.metrics] for run in runs)
    assert len(whole) == 2
    for a, b in zip(whole, chunked, strict=True):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6)
    with pytest.raises(InvalidArgument, match="icro_batch_size must be a whole number"):
        _config(tmp_path, micro_batch_size=-1)


def test_a_weighted_sum_of_rewards_approaches_its_own_target(tmp_path):
    """reward = [a, b] with reward_weights = [1, −0.5] trains toward π·exp((a − b/2)/β)/Z, exactly as one
    reward computing that sum would, and logs each part's mean."""

    def summed(prompts, completions):
        return [
            a - 0.5 * b
            for a, b in zip(a_count(prompts, completions), b_count(prompts, completions), strict=True)
        ]

    model = load_model("tiny-letters", dtype="float32")
    before = _kl_to_target(model, None, summed)
    config = _config(
        tmp_path, reward=["test_train_rl:a_count", "test_train_rl:b_count"], reward_weights=[1.0, -0.5]
    )
    result = train_rl(config, model=model)
    after = _kl_to_target(model, result.adapter, summed)
    assert before > 0.3 and after < min(before / 3, 0.1), (before, after)
    records = [r for r in result.metrics if "reward" in r]
    for record in records:
        assert record["reward"] == pytest.approx(record["reward/a_count"] - 0.5 * record["reward/b_count"])
    assert records[-1]["reward/a_count"] > records[0]["reward/a_count"]
    assert records[-1]["reward/b_count"] < records[0]["reward/b_count"]


def test_reward_weights_must_fit_the_rewards(tmp_path):
    with pytest.raises(InvalidArgument, match=r"(?i)reward_weights gives 2 weights for 1 reward"):
        _config(tmp_path, reward="vader", reward_weights=[1.0, 2.0])
    with pytest.raises(InvalidArgument, match=r"(?i)reward is an empty list"):
        _config(tmp_path, reward=[])
    with pytest.raises(InvalidArgument, match=r"(?i)reward_weights must be a list of finite numbers"):
        _config(tmp_path, reward=["vader"], reward_weights=[math.nan])
    with pytest.raises(InvalidArgument, match=r"(?i)reward_weights must be a list of finite numbers"):
        _config(tmp_path, reward=["vader"], reward_weights="1.0")


def test_a_list_of_rewards_on_the_command_line(tmp_path):
    """`steer train rl reward='["…", "…"]' reward_weights='[1, 2]'`: TOML values, whole weights made floats."""
    config = read_config(
        RLConfig,
        None,
        [f"data={_prompts(tmp_path)}", 'reward=["vader", "instructions"]', "reward_weights=[1, 2]"],
    )
    assert config.reward == ["vader", "instructions"] and config.reward_weights == [1.0, 2.0]
    with pytest.raises(InvalidArgument, match=r"(?i)reward_weights must be a list of finite numbers"):
        read_config(RLConfig, None, [f"data={_prompts(tmp_path)}", "reward=vader", "reward_weights=2"])


def test_a_sum_of_rewards_names_the_part_that_failed():
    def broken(prompts, completions):
        return [math.nan] * len(completions)

    both = RewardSum([("a_count", a_count, 1.0), ("broken", broken, 0.5)])
    assert both.__name__ == "1·a_count + 0.5·broken"
    with pytest.raises(InvalidArgument, match=r"(?i)the reward broken returned a value that is not a finite"):
        both(["ab"], ["aa"])
    with pytest.raises(
        InvalidArgument, match=r"(?i)the weight of the reward a_count must be a finite number"
    ):
        RewardSum([("a_count", a_count, math.inf)])
    assert RewardSum([("a_count", a_count, 2.0), ("b_count", b_count, -1.0)])(["x"], ["aab"]) == [3.0]


def test_rl_bad_input(tmp_path):
    with pytest.raises(InvalidArgument, match="amples_per_prompt must be at least 2"):
        _config(tmp_path, samples_per_prompt=1)
    with pytest.raises(InvalidArgument, match=r"β \(the KL weight\) must be a positive finite number"):
        _config(tmp_path, beta=0.0)
    with pytest.raises(
        InvalidArgument, match=r"eward must be vader, instructions, reward-model:DIR or module:function"
    ):
        train_rl(_config(tmp_path, reward="nonsense"), model=load_model("tiny-letters", dtype="float32"))
    with pytest.raises(InvalidArgument, match="context controls only"):
        train_rl(_config(tmp_path), reward=a_count, controls=[Temperature(0.5)])

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "Once"}\n{"prompt": "  "}\n')
    with pytest.raises(InputFormatError, match=r"bad.jsonl:2: field 'prompt' is empty"):
        train_rl(_config(tmp_path, data=str(bad)), reward=a_count, model=load_model("tiny-letters"))
    bad.write_text('{"text": "Once"}\n')
    with pytest.raises(InputFormatError, match=r"bad.jsonl:1: field 'prompt' is missing"):
        train_rl(_config(tmp_path, data=str(bad)), reward=a_count, model=load_model("tiny-letters"))

    def broken(prompts, completions):
        return [math.nan] * len(completions)

    with pytest.raises(
        InvalidArgument, match="reward the RL reward returned a value that is not a finite number"
    ):
        train_rl(
            _config(tmp_path, out=str(tmp_path / "nan")),
            reward=broken,
            model=load_model("tiny-letters", dtype="float32"),
        )


def test_rl_on_a_trained_reward_model(tmp_path):
    """`reward=reward-model:DIR` scores rollouts with the reward model on its own copy of the model.

    The reward model learns "more a's is better" from pairs; RL on it raises the policy's a-count. The
    reward model on the very model being trained is refused (its adapter would freeze the policy's).
    """
    letters = "abcd"
    pairs = [
        {"prompt": PROMPT, "chosen": "a" * (1 + i % 3) + letters[1 + i % 3] * (2 - i % 3),
         "rejected": letters[1 + (i + 1) % 3] * 3}
        for i in range(24)
    ]  # fmt: skip
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    model = load_model("tiny-letters", dtype="float32")
    rm_config = RewardModelConfig(
        data=str(data), model="tiny-letters", out=str(tmp_path / "rm"), lora_rank=4, learning_rate=1e-2,
        warmup_steps=0, epochs=6, batch_size=8, eval_fraction=0.25, eval_every=100, patience=0,
    )  # fmt: skip
    scorer = train_reward_model(rm_config, model=model)
    policy_model = load_model("tiny-letters", dtype="float32")
    result = train_rl(
        _config(tmp_path, reward=f"reward-model:{scorer.adapter}", epochs=6), model=policy_model
    )
    records = [r for r in result.metrics if "reward" in r]
    first, last = (sum(r["reward"] for r in part) / 3 for part in (records[:3], records[-3:]))
    assert last > first, (first, last)
    q = policy(policy_model, PROMPT, LENGTH, result.adapter)
    p = policy(policy_model, PROMPT, LENGTH, None)
    counts = torch.tensor([policy_model.decode(ids).count("a") for ids in q.completions], dtype=torch.float64)
    assert float((q.log_base.exp() * counts).sum()) > float((p.log_base.exp() * counts).sum())

    with pytest.raises(InvalidArgument, match="reward model runs on the model being trained"):
        train_rl(
            _config(tmp_path, out=str(tmp_path / "same")),
            reward=RewardModel(model, scorer.adapter),
            model=model,
        )


def test_empty_penalty_stops_rl_from_learning_to_say_nothing(tmp_path):
    # A learned reward that happens to like empty replies (as the instruct recipe's did): without the
    # rule-based penalty RL learns to say nothing; with it, empty rollouts become rarer than at the start.
    def likes_empty(prompts, completions):
        return [1.0 if not text.strip() else 0.0 for text in completions]

    rates = {}
    for penalty in (0.0, 3.0):
        config = _config(tmp_path, out=str(tmp_path / f"run{penalty}"), empty_penalty=penalty)
        result = train_rl(config, reward=likes_empty, model=load_model("tiny-letters", dtype="float32"))
        records = [r for r in result.metrics if "empty" in r]
        rates[penalty] = (records[0]["empty"], sum(r["empty"] for r in records[-3:]) / 3)
    (start, plain), (_, penalised) = rates[0.0], rates[3.0]
    assert plain > start and penalised < start and penalised < plain / 2, rates
    with pytest.raises(InvalidArgument, match=r"(?i)empty_penalty must be a finite number"):
        _config(tmp_path, empty_penalty=-1.0)


def _demonstrations(tmp_path: Path) -> Path:
    path = tmp_path / "demos.jsonl"
    rows = [{"prompt": PROMPT, "completion": text} for text in ("bab", "abb", "bba", "bbb")]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_ptx_mix_holds_on_to_the_demonstrations(tmp_path):
    # PPO-ptx: the same reward that likes empty replies, with SFT's loss on non-empty demonstrations
    # (and its empty-reply unlikelihood) mixed into every step: empty replies stay rarer than plain RL's.
    def likes_empty(prompts, completions):
        return [1.0 if not text.strip() else 0.0 for text in completions]

    demos = str(_demonstrations(tmp_path))
    rates = {}
    for name, extra in {
        "plain": {},
        "ptx": {"ptx_data": demos, "ptx_coef": 1.0, "ptx_batch_size": 3, "ptx_empty_penalty": 3.0},
    }.items():
        config = _config(tmp_path, out=str(tmp_path / name), **extra)
        result = train_rl(config, reward=likes_empty, model=load_model("tiny-letters", dtype="float32"))
        records = [r for r in result.metrics if "empty" in r]
        rates[name] = sum(r["empty"] for r in records[-3:]) / 3
        if name == "ptx":
            assert all("ptx_loss" in r and "ptx_p_empty" in r for r in records)
            assert records[-1]["ptx_p_empty"] < records[0]["ptx_p_empty"], records
    assert rates["ptx"] < rates["plain"] / 2, rates


def test_ptx_resumes_exactly(tmp_path):
    extra = {"ptx_data": str(_demonstrations(tmp_path)), "ptx_coef": 0.5, "ptx_batch_size": 3, "epochs": 2}
    model = lambda: load_model("tiny-letters", dtype="float32")  # noqa: E731
    whole = train_rl(_config(tmp_path, out=str(tmp_path / "a"), **extra), reward=a_count, model=model())
    train_rl(_config(tmp_path, out=str(tmp_path / "b"), **extra), reward=a_count, model=model(), stop_after=2)
    resumed = train_rl(
        _config(tmp_path, out=str(tmp_path / "b"), **extra), reward=a_count, model=model(), resume=True
    )
    assert [(r["step"], r["loss"], r["ptx_loss"]) for r in resumed.metrics] == [
        (r["step"], r["loss"], r["ptx_loss"]) for r in whole.metrics
    ]


def test_ptx_bad_input(tmp_path):
    with pytest.raises(InvalidArgument, match=r"(?i)no ptx_data names them"):
        _config(tmp_path, ptx_coef=1.0)
    with pytest.raises(InvalidArgument, match=r"(?i)ptx_coef is 0"):
        _config(tmp_path, ptx_data="demos.jsonl")
    with pytest.raises(InvalidArgument, match=r"(?i)ptx_coef must be a finite number"):
        _config(tmp_path, ptx_coef=float("nan"), ptx_data="demos.jsonl")
    with pytest.raises(InvalidArgument, match=r"(?i)ptx_batch_size must be a whole number"):
        _config(tmp_path, ptx_coef=1.0, ptx_data="demos.jsonl", ptx_batch_size=0)
    with pytest.raises(InputFormatError):
        train_rl(
            _config(tmp_path, ptx_coef=1.0, ptx_data=str(tmp_path / "missing.jsonl")),
            reward=a_count,
            model=load_model("tiny-letters", dtype="float32"),
        )

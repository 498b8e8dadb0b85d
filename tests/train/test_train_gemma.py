"""Each training method on the real packaged model (gemma-270m), a few steps each: it runs end to end,
the loss moves the stated way, and what it saved loads back."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from steering.controls import SoftPrompt
from steering.models import load_model
from steering.train import (
    DPOConfig,
    RewardModel,
    RewardModelConfig,
    RLConfig,
    SoftPromptConfig,
    train_dpo,
    train_reward_model,
    train_rl,
    train_soft_prompt,
)

pytestmark = pytest.mark.integration
COMMON = {"model": "gemma-270m", "lora_rank": 4, "warmup_steps": 0, "eval_fraction": 0.0, "max_length": 48}


@pytest.fixture(scope="module")
def gemma_fp32():
    return load_model("gemma-270m", dtype="float32")


def _pairs(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"Q: Is {i} a number?\nA:", "chosen": " yes", "rejected": " no"} for i in range(8)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gemma_dpo_and_reward_model(tmp_path, gemma_fp32):
    on_pairs = {"data": str(_pairs(tmp_path)), "epochs": 2, "batch_size": 4, **COMMON}
    dpo = train_dpo(DPOConfig(out=str(tmp_path / "dpo"), learning_rate=1e-4, **on_pairs), model=gemma_fp32)
    losses = [r["loss"] for r in dpo.metrics]
    assert losses[0] == pytest.approx(math.log(2), abs=1e-3) and losses[-1] < losses[0]
    rm = train_reward_model(
        RewardModelConfig(out=str(tmp_path / "rm"), learning_rate=5e-4, **on_pairs), model=gemma_fp32
    )
    assert (rm.adapter / "reward_head.safetensors").is_file()
    scores = RewardModel(gemma_fp32, rm.adapter)(["Q: Is 4 an even number?\nA:"] * 2, [" yes", " no"])
    assert all(math.isfinite(s) for s in scores)


def test_gemma_rl_and_soft_prompt(tmp_path, gemma_fp32):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": p}) + "\n" for p in ["I think the movie was", "My day was"])
    )
    rl = train_rl(
        RLConfig(
            data=str(prompts),
            out=str(tmp_path / "rl"),
            reward="vader",
            beta=0.1,
            samples_per_prompt=2,
            max_new_tokens=8,
            batch_size=2,
            epochs=2,
            learning_rate=1e-3,
            **COMMON,
        ),
        model=gemma_fp32,
    )
    first = rl.metrics[0]
    assert first["kl"] == pytest.approx(0.0, abs=1e-3) and math.isfinite(
        first["reward"]
    )  # policy = base at step 1
    assert all(r["generation_s"] > 0 and r["rollout_tokens_per_s"] > 0 for r in rl.metrics)
    demos = tmp_path / "demos.jsonl"
    demos.write_text(
        "".join(
            json.dumps({"prompt": f"Q: {i} + {i}?\nA:", "completion": f" {2 * i}"}) + "\n" for i in range(8)
        )
    )
    soft = train_soft_prompt(
        SoftPromptConfig(
            data=str(demos),
            out=str(tmp_path / "soft"),
            length=4,
            learning_rate=0.05,
            epochs=2,
            batch_size=4,
            **{k: v for k, v in COMMON.items() if k != "lora_rank"},
        ),
        model=gemma_fp32,
    )
    losses = [r["loss"] for r in soft.metrics]
    assert losses[-1] < losses[0]
    assert SoftPrompt.load(soft.adapter).vectors.shape == (4, gemma_fp32.module.config.hidden_size)


def test_gemma_distil_an_infill_posterior(tmp_path, gemma_fp32):
    """A posterior of ' dragon' at token 4 (importance, ForceTokens proposal) distilled into an adapter:
    the weighted loss falls and the adapter makes the infill more likely under the plain sampler."""
    from steering.condition import Target, fixed_tokens, importance
    from steering.controls import Adapter, ForceTokens
    from steering.train import DistillConfig, train_distill

    spans, prompt = {4: " dragon"}, "Once upon a time"
    target = Target(gemma_fp32, prompt, [fixed_tokens(spans)], max_new_tokens=8)
    posterior = importance(target, n_particles=16, proposal=[ForceTokens(spans)], seed=0)
    assert posterior.found
    result = train_distill(
        DistillConfig(out=str(tmp_path / "distill"), learning_rate=1e-3, epochs=3, batch_size=8, **COMMON),
        posterior=posterior,
        model=gemma_fp32,
    )
    losses = [r["loss"] for r in result.metrics]
    assert losses[-1] < losses[0]
    dragon = gemma_fp32.encode_continuation(" dragon")
    prefixes = [list(s.token_ids[:4]) for s in posterior.samples[:4]]
    prompt_ids = gemma_fp32.encode(prompt)

    def infill_logprob() -> float:
        scored = gemma_fp32.logprobs([prompt_ids] * len(prefixes), [p + dragon for p in prefixes])
        return sum(float(lp[4:].sum()) for lp in scored)

    before = infill_logprob()
    with Adapter(result.adapter).attached(gemma_fp32):
        after = infill_logprob()
    assert after > before  # log p(' dragon' at 4 | the posterior's own prefixes) went up

"""Soft prompts: trained vectors in place of placeholder embeddings; exact base books; resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from steering.controls import SoftPrompt
from steering.decode import generate
from steering.errors import InvalidArgument
from steering.models import load_model
from steering.train import SoftPromptConfig, train_soft_prompt

ANSWER = " yes"


def _config(tmp_path: Path, out: str = "run", **overrides) -> SoftPromptConfig:
    data = tmp_path / "demos.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"Q: {i}?\nA:", "completion": ANSWER}) + "\n" for i in range(16))
    )
    values = {
        "data": str(data), "model": "tiny-random", "out": str(tmp_path / out), "length": 8,
        "learning_rate": 0.3, "warmup_steps": 0, "epochs": 12, "batch_size": 8, "eval_fraction": 0.0,
        "save_every": 2,
    }  # fmt: skip
    return SoftPromptConfig(**{**values, **overrides})


def _answer_logprob(model, prompt_control=None) -> float:
    prompt = "Q: 99?\nA:"
    if prompt_control is None:
        return float(model.logprobs([prompt], [model.encode_continuation(ANSWER)])[0].sum())
    text = prompt_control.render(prompt, tokenizer=model.tokenizer)
    with prompt_control.attached(model):
        return float(model.logprobs([text], [model.encode_continuation(ANSWER)])[0].sum())


def test_soft_prompt_learns_and_keeps_the_base_books(tmp_path):
    model = load_model("tiny-random", dtype="float32")
    before = _answer_logprob(model)
    result = train_soft_prompt(_config(tmp_path), model=model)
    losses = [r["loss"] for r in result.metrics]
    assert losses[-1] < 0.6 * losses[0]
    prompt = SoftPrompt.load(result.adapter)
    assert prompt.length == 8 and prompt.vectors.shape[1] == model.module.config.hidden_size
    assert _answer_logprob(model, prompt) > before + 5.0  # seed 0: −23.9 → −14.0
    assert _answer_logprob(model) == pytest.approx(before, abs=1e-5)  # no hook left behind
    samples = generate(model, ["Q: 5?\nA:"], controls=[prompt], n=3, max_new_tokens=3)
    direct = model.logprobs([s.prompt for s in samples], [s.token_ids for s in samples])
    for sample, base in zip(samples, direct, strict=True):
        assert sample.context.startswith("<pad>" * 8)
        assert torch.allclose(sample.logp_base, base, atol=1e-5)  # rescored on the raw prompt, no vectors


def test_soft_prompt_resumes_exactly_and_refuses_bad_placeholders(tmp_path):
    whole = train_soft_prompt(
        _config(tmp_path, "a", epochs=2), model=load_model("tiny-random", dtype="float32")
    )
    train_soft_prompt(
        _config(tmp_path, "b", epochs=2), model=load_model("tiny-random", dtype="float32"), stop_after=2
    )
    resumed = train_soft_prompt(
        _config(tmp_path, "b", epochs=2), model=load_model("tiny-random", dtype="float32"), resume=True
    )
    assert torch.equal(SoftPrompt.load(whole.adapter).vectors, SoftPrompt.load(resumed.adapter).vectors)
    with pytest.raises(InvalidArgument, match="must be one token that is not BOS or EOS"):
        train_soft_prompt(
            _config(tmp_path, "c", placeholder="ab"), model=load_model("tiny-random", dtype="float32")
        )
    letters = load_model("tiny-letters", dtype="float32")
    with pytest.raises(InvalidArgument, match="vectors of width"):
        generate(letters, ["ab"], controls=[SoftPrompt(torch.zeros(2, 7), "a")], max_new_tokens=2)

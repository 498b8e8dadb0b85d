"""The decode engine: books, batching, seeds, stops, and bad input."""

from __future__ import annotations

import pytest
import torch

from steering.controls import QA, Temperature, TopK, TopP
from steering.decode import find_stop, generate
from steering.errors import InvalidArgument

PROMPTS = ["hello there", "a much longer prompt that needs left padding", "x"]


def test_no_controls_logq_equals_logp_base_exactly(tiny):
    samples = generate(tiny, PROMPTS, n=2, max_new_tokens=12, seed=3)
    for sample in samples:
        assert torch.equal(sample.logq, sample.logp_base)
        assert sample.kl == 0.0 and sample.log_weight == 0.0
        assert sample.kl_exact_steps == 0.0


def test_logp_base_is_the_base_model_on_the_raw_prompt(tiny):
    samples = generate(tiny, PROMPTS, controls=[QA(), TopK(20)], n=2, max_new_tokens=10, seed=5)
    direct = tiny.logprobs([s.prompt for s in samples], [s.token_ids for s in samples])
    for sample, reference in zip(samples, direct, strict=True):
        assert sample.context.startswith("Q: ")
        assert torch.allclose(sample.logp_base, reference, atol=1e-4)


def test_kl_for_temperature_equals_hand_computation(tiny):
    prompt = "hello"
    ids = torch.tensor([tiny.encode(prompt)])
    logits = tiny.module(input_ids=ids).logits[0, -1].float()
    logp = logits.log_softmax(-1)
    logq = (logits / 0.5).log_softmax(-1)
    exact = float((logq.exp() * (logq - logp)).sum())
    sample = generate(tiny, [prompt], controls=[Temperature(0.5)], max_new_tokens=1, seed=0)[0]
    token = sample.token_ids[0]
    assert sample.kl == pytest.approx(float(logq[token] - logp[token]), abs=1e-5)
    assert sample.kl_exact_steps == pytest.approx(exact, abs=1e-5)
    assert exact > 0
    # The one-sample estimator averages to the exact KL.
    many = generate(
        tiny, [prompt], controls=[Temperature(0.5)], n=4000, max_new_tokens=1, seed=1, batch_size=1000
    )
    assert float(many.kl.mean()) == pytest.approx(exact, abs=0.05)


def test_batched_equals_unbatched(tiny):
    batched = generate(
        tiny, PROMPTS, controls=[Temperature(0.9)], n=2, max_new_tokens=16, seed=7, batch_size=6
    )
    single = generate(
        tiny, PROMPTS, controls=[Temperature(0.9)], n=2, max_new_tokens=16, seed=7, batch_size=1
    )
    for a, b in zip(batched, single, strict=True):
        assert a.token_ids == b.token_ids
        assert torch.allclose(a.logq, b.logq, atol=1e-4)
        assert torch.allclose(a.logp_base, b.logp_base, atol=1e-4)


def test_same_seed_same_samples_and_different_seed_differs(tiny):
    a = generate(tiny, PROMPTS, n=2, max_new_tokens=12, seed=1)
    b = generate(tiny, PROMPTS, n=2, max_new_tokens=12, seed=1)
    c = generate(tiny, PROMPTS, n=2, max_new_tokens=12, seed=2)
    assert [s.token_ids for s in a] == [s.token_ids for s in b]
    assert [s.token_ids for s in a] != [s.token_ids for s in c]


def test_global_rng_untouched(tiny):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    generate(tiny, PROMPTS, n=2, max_new_tokens=5, seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_stop_sequence_split_across_tokens(tiny):
    # The byte tokenizer makes every character its own token, so "\nQ:" always spans three tokens.
    samples = generate(tiny, ["Q: hi\nA:"], n=64, max_new_tokens=40, stop=["e"], seed=0)
    stopped = [s for s in samples if s.stop_reason == "stop"]
    assert stopped, "no sample produced the stop character; pick another"
    for sample in stopped:
        assert "e" not in sample.text
        assert tiny.decode(sample.token_ids).startswith(sample.text)
    multi = generate(tiny, ["ab"], n=200, max_new_tokens=60, stop=["ee", "aa"], seed=0)
    for sample in multi:
        raw = tiny.decode(sample.token_ids)
        if sample.stop_reason == "stop":
            index = find_stop(raw, ["ee", "aa"])
            assert index is not None and sample.text == raw[:index]
            assert len(sample.token_ids) >= 2
        else:
            assert "ee" not in sample.text and "aa" not in sample.text


def test_find_stop_earliest():
    assert find_stop("abc\n\nQ: x\nQ:", ["\nQ:", "\n\nQ:"]) == 3
    assert find_stop("nothing here", ["\nQ:"]) is None


def test_length_and_eos_reasons(tiny):
    samples = generate(tiny, PROMPTS, n=4, max_new_tokens=6, seed=0)
    for sample in samples:
        assert sample.stop_reason in ("length", "eos", "stop")
        if sample.stop_reason == "length":
            assert len(sample.token_ids) == 6
        if sample.stop_reason == "eos":
            assert sample.token_ids[-1] in tiny.eos_token_ids


def test_prompt_major_order(tiny):
    samples = generate(tiny, PROMPTS, n=3, max_new_tokens=3)
    assert [s.prompt_index for s in samples] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompts": [""]}, "empty"),
        ({"prompts": ["   "]}, "empty"),
        ({"prompts": []}, "no prompts"),
        ({"prompts": ["hi"], "max_new_tokens": 0}, "max_new_tokens"),
        ({"prompts": ["hi"], "max_new_tokens": -3}, "max_new_tokens"),
        ({"prompts": ["hi"], "n": 0}, "n must be"),
        ({"prompts": ["hi"], "stop": "\n"}, "list of strings"),
        ({"prompts": ["x" * 600]}, "context window"),
    ],
)
def test_bad_input_is_a_clear_error(tiny, kwargs, message):
    with pytest.raises(InvalidArgument, match="(?i)" + message) as info:
        generate(tiny, **kwargs)
    assert "To fix:" in str(info.value)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: Temperature(-1.0), "temperature"),
        (lambda: Temperature(0.0), "temperature"),
        (lambda: Temperature(float("nan")), "temperature"),
        (lambda: TopP(0.0), "top-p"),
        (lambda: TopP(1.5), "top-p"),
        (lambda: TopK(0), "top-k"),
    ],
)
def test_bad_sampling_settings(factory, message):
    with pytest.raises(InvalidArgument, match="(?i)" + message):
        factory()

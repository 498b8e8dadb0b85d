"""Activation steering: build from contrast pairs, save/load, hooks always removed, exact books."""

from __future__ import annotations

import math

import pytest
import torch

from steering.controls import QA, SteeringVector, build_steering_vector, decoder_layers
from steering.decode import generate
from steering.errors import InvalidArgument, ModelLoadError

POSITIVE = ["I love this, it is wonderful", "What a great and happy day", "Fantastic, brilliant work"]
NEGATIVE = ["I hate this, it is awful", "What a terrible and sad day", "Horrible, dreadful work"]


@pytest.fixture(scope="module")
def vector(tiny):
    return build_steering_vector(tiny, positive=POSITIVE, negative=NEGATIVE, layers=[0, 1])


def test_build_is_mean_difference(tiny, vector):
    captured = []
    layer = decoder_layers(tiny.module)[1]
    # The BOS position is excluded from the means (see steer_vector._mean_layer_outputs).
    handle = layer.register_forward_hook(lambda _m, _a, out: captured.append(out[0, 1:].float().mean(0)))
    try:
        for prompt in POSITIVE + NEGATIVE:
            tiny.module(input_ids=torch.tensor([tiny.encode(prompt)]))
    finally:
        handle.remove()
    expected = torch.stack(captured[:3]).mean(0) - torch.stack(captured[3:]).mean(0)
    assert torch.allclose(vector.vectors[1], expected, atol=1e-5)


def test_steering_changes_q_and_books_stay_exact(tiny, vector):
    steered = generate(
        tiny, ["hello", "the day"], controls=[vector.with_alpha(8.0)], n=3, max_new_tokens=8, seed=2
    )
    reference = tiny.logprobs([s.prompt for s in steered], [s.token_ids for s in steered])
    for sample, base in zip(steered, reference, strict=True):
        assert torch.allclose(sample.logp_base, base, atol=1e-4)  # the unhooked model
    assert float(steered.kl.mean()) > 0.1
    plain = generate(tiny, ["hello", "the day"], n=3, max_new_tokens=8, seed=2)
    assert [s.token_ids for s in plain] != [s.token_ids for s in steered]


def test_skipping_the_base_pass_gives_unknown_books_not_fake_ones(tiny, vector):
    kwargs = {"controls": [vector.with_alpha(8.0)], "n": 2, "max_new_tokens": 6, "seed": 4}
    fast = generate(tiny, ["hello"], score_base=False, **kwargs)
    exact = generate(tiny, ["hello"], **kwargs)
    assert [s.token_ids for s in fast] == [s.token_ids for s in exact]  # same samples
    for sample in fast:
        assert torch.isnan(sample.logp_base).all() and math.isnan(sample.kl)
    assert all(math.isfinite(s.kl) for s in exact)


def test_alpha_zero_is_the_base_model(tiny, vector):
    steered = generate(tiny, ["hello"], controls=[vector.with_alpha(0.0)], n=2, max_new_tokens=6, seed=1)
    plain = generate(tiny, ["hello"], n=2, max_new_tokens=6, seed=1)
    assert [s.token_ids for s in steered] == [s.token_ids for s in plain]
    for s in steered:
        assert torch.allclose(s.logq, s.logp_base, atol=1e-5)


def test_hooks_removed_even_on_error(tiny, vector):
    def failing(_ids, _scores):
        raise RuntimeError("control failed mid-generation")

    with pytest.raises(RuntimeError):
        generate(tiny, ["hello"], controls=[QA(), vector, failing], max_new_tokens=4)
    assert all(not layer._forward_hooks for layer in decoder_layers(tiny.module))


def test_save_and_load_round_trip(tmp_path, vector):
    path = vector.save(tmp_path / "happy.safetensors")
    loaded = SteeringVector.load(path, alpha=3.0)
    assert loaded.alpha == 3.0 and loaded.model_name == "tiny-random"
    assert all(torch.equal(loaded.vectors[k], vector.vectors[k]) for k in vector.vectors)
    assert (tmp_path / "happy.safetensors.json").is_file()
    with pytest.raises(ModelLoadError, match="does not exist"):
        SteeringVector.load(tmp_path / "missing.safetensors")


def test_vector_for_another_model_is_refused(tiny, vector):
    wrong_size = SteeringVector({0: torch.zeros(32)}, "tiny-random", 32)
    with pytest.raises(InvalidArgument, match="hidden size"):
        generate(tiny, ["hello"], controls=[wrong_size], max_new_tokens=2)
    other = SteeringVector(vector.vectors, "gemma-270m", vector.hidden_size)
    with pytest.raises(InvalidArgument, match="built on gemma-270m"):
        generate(tiny, ["hello"], controls=[other], max_new_tokens=2)


@pytest.mark.parametrize("alpha", [float("nan"), float("inf")])
def test_bad_alpha(vector, alpha):
    with pytest.raises(InvalidArgument, match="finite"):
        vector.with_alpha(alpha)


def test_bad_layers(tiny):
    with pytest.raises(InvalidArgument, match=r"(?i)layer indices"):
        build_steering_vector(tiny, positive=POSITIVE, negative=NEGATIVE, layers=[5])


@pytest.mark.integration
def test_sentiment_vector_moves_gemma_in_the_intended_direction(gemma):
    positive = [
        "I love this. It is wonderful and makes me so happy.",
        "What a beautiful, joyful day full of hope.",
        "This is great news, I am delighted and grateful.",
        "The food was delicious and the staff were kind.",
    ]
    negative = [
        "I hate this. It is awful and makes me so sad.",
        "What an ugly, miserable day full of despair.",
        "This is terrible news, I am upset and angry.",
        "The food was disgusting and the staff were rude.",
    ]
    vector = build_steering_vector(gemma, positive=positive, negative=negative, layers=[6])
    good = [gemma.encode_continuation(w)[0] for w in (" wonderful", " great", " good", " amazing")]
    bad = [gemma.encode_continuation(w)[0] for w in (" terrible", " awful", " bad", " horrible")]
    ids = torch.tensor([gemma.encode("Honestly, I thought the movie was")])

    def gap(alpha: float) -> float:
        with vector.with_alpha(alpha).attached(gemma), torch.no_grad():
            logp = gemma.module(input_ids=ids).logits[0, -1].float().log_softmax(-1)
        return float(torch.logsumexp(logp[good], 0) - torch.logsumexp(logp[bad], 0))

    base, up, down = gap(0.0), gap(2.0), gap(-2.0)
    print(f"log-odds good vs bad: base {base:.2f}, +2 {up:.2f}, -2 {down:.2f}")
    assert up > base + 0.5 > down + 1.0, (base, up, down)

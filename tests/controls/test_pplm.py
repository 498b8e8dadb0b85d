"""PPLM: the rebuilt past is exact, the gradient steps move toward the bag, and the books stay exact."""

from __future__ import annotations

import pytest
import torch

from steering.controls import PPLM, word_first_tokens
from steering.decode import generate
from steering.errors import InvalidArgument

PROMPT = "hello there"


def test_no_perturbation_reproduces_the_base_exactly(tiny):
    # 0 iterations and gm_scale 1: q is the distribution from the rebuilt (unperturbed) past, which must
    # equal the engine's own — also beyond the tiny model's sliding window of 8 tokens.
    assert tiny.module.config.sliding_window < len(tiny.encode(PROMPT)) + 12
    control = PPLM(["e"], iterations=0, gm_scale=1.0)
    samples = generate(tiny, [PROMPT, "a"], controls=[control], n=2, max_new_tokens=12, seed=0)
    for sample in samples:
        assert torch.allclose(sample.logq, sample.logp_base, atol=1e-4), (sample.logq, sample.logp_base)
        assert sample.kl_exact_steps == pytest.approx(0.0, abs=1e-4)
    assert control.stats.steps > 0 and control.stats.iterations == 0


def test_gradient_steps_raise_the_bag_probability(tiny):
    bag = sorted(word_first_tokens(tiny.tokenizer, "q"))
    control = PPLM(["q"], step_size=0.5, iterations=3, kl_scale=0.0, gm_scale=1.0)
    samples = generate(tiny, [PROMPT], controls=[control], n=4, max_new_tokens=6, seed=0)
    # The step's KL is exact (same context), and positive: the distribution moved.
    assert all(s.kl_exact_steps > 0 for s in samples)
    # Mass on the bag under q versus the base at the first step, read from a direct forward.
    ids = torch.tensor([tiny.encode(PROMPT)])
    base = tiny.module(input_ids=ids).logits[0, -1].float().log_softmax(-1)
    single = PPLM(["q"], step_size=0.5, iterations=3, kl_scale=0.0, gm_scale=1.0)
    first = generate(tiny, [PROMPT], controls=[single], n=1, max_new_tokens=1, seed=0)[0]
    token = first.token_ids[0]
    assert first.logp_base[0].item() == pytest.approx(base[token].item(), abs=1e-4)
    assert single.stats.iterations == 3
    # Rebuild q for the first step through the control to compare bag masses.
    captured = {}

    class Spy:
        def __call__(self, input_ids, scores):
            captured["q"] = scores.log_softmax(-1)
            return scores

    generate(
        tiny,
        [PROMPT],
        controls=[PPLM(["q"], step_size=0.5, iterations=3, kl_scale=0.0, gm_scale=1.0), Spy()],
        max_new_tokens=1,
    )
    q_mass = captured["q"][0, bag].exp().sum().item()
    p_mass = base[bag].exp().sum().item()
    assert q_mass > 2 * p_mass, (q_mass, p_mass)


def test_outside_the_engine_is_a_clear_error(tiny):
    control = PPLM(["q"])
    control.start(tokenizer=tiny.tokenizer, prompt_width=1, batch_size=1)
    with pytest.raises(InvalidArgument, match="needs the decode engine's state"):
        control(torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, tiny.vocab_size))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"words": []}, "non-empty list"),
        ({"words": "happy"}, "non-empty list"),
        ({"words": ["ok"], "step_size": float("nan")}, "step_size must be a finite number"),
        ({"words": ["ok"], "gm_scale": 1.5}, "gm_scale must be in"),
        ({"words": ["ok"], "iterations": -1}, "iterations must be a non-negative integer"),
        ({"words": ["ok"], "kl_scale": -0.1}, "kl_scale must be non-negative"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(InvalidArgument, match="(?i)" + match):
        PPLM(**kwargs)


class _BagMass:
    """A logit control placed after PPLM: records the bag's mass under q and under the base per step."""

    def __init__(self, bag):
        self.bag, self.q, self.p = bag, [], []

    def __call__(self, input_ids, scores):
        self.q.append(scores.log_softmax(-1)[:, self.bag].exp().sum(-1))
        return scores


@pytest.mark.integration
def test_gemma_pplm_moves_mass_toward_the_bag(gemma):
    words = ["happy", "joy", "wonderful", "love", "great", "beautiful", "good", "excellent", "delight"]
    bag = sorted({t for w in words for t in word_first_tokens(gemma.tokenizer, w)})
    control, spy = PPLM(words), _BagMass(bag)
    samples = generate(gemma, ["The movie was"], controls=[control, spy], n=2, max_new_tokens=6, seed=0)
    plain_spy = _BagMass(bag)
    generate(gemma, ["The movie was"], controls=[plain_spy], n=2, max_new_tokens=1, seed=0)
    # First step, same context: PPLM's q puts clearly more mass on the bag than the base does.
    assert float(spy.q[0].mean()) > 1.5 * float(plain_spy.q[0].mean()), (spy.q[0], plain_spy.q[0])
    assert all(s.kl_exact_steps > 0 for s in samples)
    assert control.stats.iterations == 3 * control.stats.steps

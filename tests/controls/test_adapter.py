"""`MixedAdapters`: every prompt decoded with its own adapter in one batch, the numbers of decoding
each with its own `Adapter`."""

from __future__ import annotations

import pytest
import torch
from random_adapters import random_adapter

from steering.controls import Adapter, MixedAdapters, forward_rows
from steering.decode import generate
from steering.errors import InvalidArgument
from steering.models import load_model

PROMPTS = ["Once upon a time", "The cat", "a b c", "Label:"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model = load_model("tiny-random", dtype="float32")
    folder = tmp_path_factory.mktemp("adapters")
    first = random_adapter(model, folder / "first", seed=0, name="made")
    second = random_adapter(model, folder / "second", seed=1, name="made")
    return model, first, second


def test_each_row_gets_the_numbers_of_its_own_adapter(setup):
    model, first, second = setup
    wearing = [first, None, second, first]
    kwargs = {"n": 2, "max_new_tokens": 6, "seed": 4, "batch_size": 8}
    mixed = generate(model, PROMPTS, controls=[MixedAdapters(wearing)], **kwargs)
    # The same prompts with one adapter for all: row j's seed depends on j, so row j of the call with
    # prompt j's own adapter is what prompt j must sample in the mixed batch.
    alone = {
        None: generate(model, PROMPTS, **kwargs),
        first: generate(model, PROMPTS, controls=[Adapter(first)], **kwargs),
        second: generate(model, PROMPTS, controls=[Adapter(second)], **kwargs),
    }
    differs = 0
    for index, sample in enumerate(mixed):
        twin = alone[wearing[sample.prompt_index]][index]
        assert sample.token_ids == twin.token_ids
        assert torch.allclose(sample.logq, twin.logq, atol=1e-4)
        assert torch.allclose(sample.logp_base, twin.logp_base, atol=1e-4)
        differs += sample.token_ids != alone[None][index].token_ids
    assert differs >= 4  # the adapters really change what is sampled (6 of 8 rows at seed 4)
    # Loaded beside each other, each adapter alone still gives its own numbers.
    again = generate(model, PROMPTS, controls=[Adapter(first)], **kwargs)
    assert [s.token_ids for s in again] == [s.token_ids for s in alone[first]]


def test_errors(setup):
    model, first, _ = setup
    with pytest.raises(InvalidArgument, match=r"(?i)one adapter folder"):
        MixedAdapters(first)
    with pytest.raises(InvalidArgument, match=r"(?i)names 1 adapters, one per prompt"):
        generate(model, PROMPTS[:2], controls=[MixedAdapters([first])], max_new_tokens=2)
    ids = torch.tensor([model.encode("a b")])
    with MixedAdapters([first]).attached(model):
        with pytest.raises(InvalidArgument, match=r"(?i)without knowing which prompt"):
            model.module(ids)
        with forward_rows([0]):
            model.module(ids)  # said: runs
    # Every prompt on the base: nothing is attached, the samples are the base's.
    plain = generate(model, PROMPTS[:2], max_new_tokens=4)
    based = generate(model, PROMPTS[:2], controls=[MixedAdapters([None, None])], max_new_tokens=4)
    assert [s.token_ids for s in plain] == [s.token_ids for s in based]

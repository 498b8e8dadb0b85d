"""Continuous batching: a slot whose row ended takes the next prompt, and nothing about the samples changes."""

from __future__ import annotations

import re

import pytest
import torch

from steering.controls import Choices, Regex, Temperature
from steering.decode import engine, generate
from steering.errors import InvalidArgument
from steering.models import load_model

# Prompts of different lengths, two longer than the tiny models' sliding window (8 tokens).
LETTER_PROMPTS = ["ab", "abc cab", "a", "abc abc abc ab", "cab cab cab cab b"]


@pytest.fixture(scope="module")
def letters():
    return load_model("tiny-letters", dtype="float32")


@pytest.fixture
def refills(monkeypatch):
    """Counts the rows put into freed slots."""
    count = {"rows": 0}
    original = engine.BatchDecoder.refill

    def spy(self, slots, waiting):
        placed = original(self, slots, waiting)
        count["rows"] += len(placed)
        return placed

    monkeypatch.setattr(engine.BatchDecoder, "refill", spy)
    return count


def _same(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.token_ids == y.token_ids
        assert x.stop_reason == y.stop_reason
        assert x.text == y.text
        assert torch.allclose(x.logq, y.logq, atol=1e-4)
        assert torch.allclose(x.logp_base, y.logp_base, atol=1e-4)


def test_refilled_batches_sample_what_one_row_at_a_time_samples(letters, refills):
    kwargs = {"controls": [Temperature(0.9)], "n": 6, "max_new_tokens": 14, "seed": 11}
    single = generate(letters, LETTER_PROMPTS, batch_size=1, **kwargs)
    assert refills["rows"] == len(single) - 1  # the one slot takes each next row in turn
    batched = generate(letters, LETTER_PROMPTS, batch_size=3, **kwargs)
    _same(batched, single)
    # The test means something only if rows ended at different steps and slots were reused.
    lengths = {len(s.token_ids) for s in single}
    assert len(lengths) > 3 and {s.stop_reason for s in single} == {"eos", "length"}
    assert refills["rows"] == 2 * len(single) - 1 - 3


def test_refill_through_the_sliding_window(letters, refills):
    # Rows run past the 8-token window while others start: the spliced sliding layers must line up.
    kwargs = {"n": 4, "max_new_tokens": 24, "seed": 2}
    single = generate(letters, LETTER_PROMPTS, batch_size=1, **kwargs)
    batched = generate(letters, LETTER_PROMPTS, batch_size=2, **kwargs)
    _same(batched, single)
    assert refills["rows"] > 0
    assert max(len(s.token_ids) for s in single) + len(LETTER_PROMPTS[-1]) > 8


@pytest.mark.parametrize("backend", ["llguidance", "xgrammar"])
def test_grammar_rows_restart_when_refilled(tiny, refills, backend):
    pattern = "[0-9]+;"
    kwargs = {"controls": [Regex(pattern, backend=backend)], "n": 5, "max_new_tokens": 12, "seed": 4}
    single = generate(tiny, ["Code:", "x"], batch_size=1, **kwargs)
    batched = generate(tiny, ["Code:", "x"], batch_size=2, **kwargs)
    _same(batched, single)
    assert refills["rows"] == 2 * len(single) - 1 - 2
    assert all(re.fullmatch(pattern, s.text) for s in batched if s.stop_reason == "stop")
    # llguidance pools close within the budget (every row stops); xgrammar's do not (some run out).
    ends = {"stop"} if backend == "llguidance" else {"stop", "unfinished"}
    assert len({len(s.token_ids) for s in single}) > 2 and {s.stop_reason for s in single} == ends


def test_controls_without_row_restart_keep_fixed_batches(letters, refills):
    # Choices keeps per-row state and has no restart_row: batches run one after the other, still right.
    kwargs = {"controls": [Choices(["a", "b c", "cab"])], "n": 3, "max_new_tokens": 6, "seed": 1}
    single = generate(letters, LETTER_PROMPTS, batch_size=1, **kwargs)
    batched = generate(letters, LETTER_PROMPTS, batch_size=4, **kwargs)
    _same(batched, single)
    assert refills["rows"] == 0
    assert {s.text for s in batched} <= {"a", "b c", "cab"}


def test_a_budget_per_prompt(letters):
    budgets = [2, 9, 1, 5, 14]
    samples = generate(letters, LETTER_PROMPTS, n=3, max_new_tokens=budgets, seed=5, batch_size=2)
    for s in samples:
        assert len(s.token_ids) <= budgets[s.prompt_index]
        if s.stop_reason == "length":
            assert len(s.token_ids) == budgets[s.prompt_index]
    # The same rows with one budget for all agree with the per-prompt ones where the budget allows.
    same = generate(letters, LETTER_PROMPTS, n=3, max_new_tokens=14, seed=5, batch_size=2)
    for a, b in zip(samples, same, strict=True):
        assert a.token_ids == b.token_ids[: len(a.token_ids)]
    with pytest.raises(InvalidArgument, match="2 budgets for 5 prompts"):
        generate(letters, LETTER_PROMPTS, max_new_tokens=[3, 4])
    with pytest.raises(InvalidArgument, match="positive integer"):
        generate(letters, LETTER_PROMPTS, max_new_tokens=[3, 4, 0, 1, 1])

"""The control contract at the edge: defaults, declared capabilities, and foreign callables."""

from __future__ import annotations

import pytest
import torch

from steering.controls import (
    CallableControl,
    Constraint,
    FastPaths,
    LogitBias,
    LogitControlBase,
    RowState,
    StateObserver,
    Temperature,
    TopK,
    as_logit_control,
    describe,
    split_controls,
)
from steering.controls.base import HOOKS
from steering.decode import generate
from steering.errors import InvalidArgument

PROMPTS = ["Once upon a time there", "a b", "x"]


class _Scale(LogitControlBase):
    """A control that writes `__call__` only: every hook is a default."""

    def __call__(self, input_ids, scores):
        return scores / 0.9


def test_defaults_are_stateless():
    control = _Scale()
    assert control.can_restart_row and control.can_select_rows
    assert not (control.decides_completion or control.masks_only or control.point_mass)
    assert not control.offers_token_pools
    assert control.accepts([1, 2], row=0) and not control.is_complete([1, 2], row=0)
    with pytest.raises(TypeError):
        LogitControlBase()  # __call__ is the one method a control must write


def test_hooks_are_the_protocols_members():
    expected = {
        name
        for protocol in (RowState, Constraint, FastPaths, StateObserver)
        for name in vars(protocol)
        if not name.startswith("_")
    }
    assert set(HOOKS) == expected
    assert {"start", "restart_row", "select_rows", "consume", "is_complete", "accepts"} <= expected
    assert {"token_pools", "masks_only", "point_mass", "observe_state", "can_restart_row"} <= expected


def test_a_stateless_control_refills_without_writing_restart_row(tiny):
    assert "restart_row" not in vars(LogitBias)  # no empty method to keep continuous batching on
    samples = generate(tiny, PROMPTS, controls=[LogitBias({"a": 2.0})], n=2, max_new_tokens=6, batch_size=2)
    assert samples.stats.refilled_rows == len(samples) - 2


def test_hugging_face_processors_and_functions_are_wrapped(tiny):
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper

    kwargs = {"n": 3, "max_new_tokens": 6, "seed": 2}
    ours = generate(tiny, PROMPTS, controls=[Temperature(0.7), TopK(5)], **kwargs)
    theirs = generate(tiny, PROMPTS, controls=[TemperatureLogitsWarper(0.7), TopKLogitsWarper(5)], **kwargs)
    for a, b in zip(ours, theirs, strict=True):
        assert a.token_ids == b.token_ids
        assert torch.allclose(a.logq, b.logq, atol=1e-5)
    assert theirs.stats.refilled_rows > 0  # a foreign callable is stateless: rows refill

    def halve(input_ids, scores):
        return scores / 2

    _, (wrapped,), _ = split_controls([halve])
    assert isinstance(wrapped, CallableControl) and wrapped.can_restart_row
    assert generate(tiny, ["x"], controls=[halve], max_new_tokens=2).controls == [describe(halve)]


def test_a_partial_control_is_refused():
    class OldStyle:  # duck-typed hooks from before the contract: they would be silently ignored
        def start(self, *, tokenizer, prompt_width, batch_size): ...

        def consume(self, generated, *, row): ...

        def __call__(self, input_ids, scores):
            return scores

    with pytest.raises(InvalidArgument, match="some of the logit-control hooks") as error:
        as_logit_control(OldStyle())
    assert "restart_row" in str(error.value) and "LogitControlBase" in str(error.value)
    with pytest.raises(InvalidArgument, match="must have a `render"):
        split_controls([42])


def test_a_whole_contract_without_the_base_is_used_as_it_is():
    class Written:
        can_restart_row = can_select_rows = True
        decides_completion = masks_only = point_mass = offers_token_pools = False

        def start(self, *, tokenizer, prompt_width, batch_size): ...
        def restart_row(self, row, *, prompt_ids): ...
        def set_budget(self, row, *, budget): ...
        def select_rows(self, indices): ...
        def consume(self, generated, *, row): ...
        def is_complete(self, generated, *, row):
            return False

        def accepts(self, generated, *, row):
            return True

        def token_pools(self, input_ids, vocab):
            return []

        def observe_state(self, state): ...
        def __call__(self, input_ids, scores):
            return scores

    control = Written()
    assert as_logit_control(control) is control


class _EndsAfter(LogitControlBase):
    """A constraint complete after `length` tokens."""

    decides_completion = True

    def __init__(self, length):
        self.length = length

    def __call__(self, input_ids, scores):
        return scores

    def is_complete(self, generated, *, row):
        return len(generated) >= self.length


def test_a_declared_constraint_ends_rows_and_marks_the_rest_unfinished(tiny):
    samples = generate(tiny, PROMPTS, controls=[_EndsAfter(2)], n=2, max_new_tokens=5, seed=1)
    assert {(len(s.token_ids), s.stop_reason) for s in samples if s.stop_reason != "eos"} == {(2, "stop")}
    short = generate(tiny, PROMPTS, controls=[_EndsAfter(4)], n=2, max_new_tokens=3, seed=1)
    assert {s.stop_reason for s in short} <= {"unfinished", "eos"} and "unfinished" in short.stop_reasons


def test_undeclared_is_complete_is_never_read(tiny):
    class NotAConstraint(_EndsAfter):
        decides_completion = False

    samples = generate(tiny, PROMPTS, controls=[NotAConstraint(1)], n=2, max_new_tokens=4, seed=1)
    assert {s.stop_reason for s in samples} <= {"length", "eos"}


def test_a_refused_ending_is_unfinished(tiny):
    class NeverEnds(_Scale):
        def accepts(self, generated, *, row):
            return False

    samples = generate(tiny, PROMPTS, controls=[NeverEnds()], n=2, max_new_tokens=3, seed=1)
    assert set(samples.stop_reasons) == {"unfinished"}


def test_a_control_that_cannot_restart_rows_keeps_batches_fixed(tiny):
    class Fixed(_Scale):
        can_restart_row = False

    kwargs = {"n": 2, "max_new_tokens": 6, "seed": 3, "batch_size": 2}
    fixed = generate(tiny, PROMPTS, controls=[Fixed()], **kwargs)
    refilled = generate(tiny, PROMPTS, controls=[_Scale()], **kwargs)
    assert fixed.stats.refilled_rows == 0 < refilled.stats.refilled_rows
    for a, b in zip(fixed, refilled, strict=True):
        assert a.token_ids == b.token_ids


def test_declaring_pools_without_writing_them_is_explained(tiny):
    class Claims(_Scale):
        masks_only = offers_token_pools = True

    with pytest.raises(InvalidArgument, match="does not write token_pools"):
        generate(tiny, ["x"], controls=[Claims()], max_new_tokens=2)

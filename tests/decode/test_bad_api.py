"""The Python API refuses wrong arguments with `InvalidArgument` (what, received, how to fix), never a
bare TypeError deep inside; `generate(on_sample=…)` hands finished samples over, also on Ctrl-C."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from steering import generate, load_model
from steering.condition import Target, ends_with, importance, rejection, smc
from steering.controls import QA, FewShot, PromptTemplate, Temperature, TopP
from steering.errors import InvalidArgument, ModelNotFound, check_seed

BAD_SEEDS = [
    pytest.param("x", "'x' (str)", id="str"),
    pytest.param(1.7, "1.7 (float)", id="float"),
    pytest.param(2.0, "2.0 (float)", id="whole-float"),
    pytest.param(True, "True (bool)", id="bool"),
    pytest.param(None, "None", id="none"),
    pytest.param(-1, "-1", id="negative"),
    pytest.param(2**63, str(2**63), id="too-big"),
    pytest.param(torch.tensor(3), "tensor(3)", id="tensor"),
]


def _clear(error: pytest.ExceptionInfo[InvalidArgument], received: str, fix: str) -> None:
    """The message has the three parts: what (the exception's start), what was received, the fix."""
    message = str(error.value)
    assert "Received:" in message and "To fix:" in message, message
    said, _, how = message.partition("Received:")[2].partition("To fix:")
    assert received in said, message
    assert fix in how, message


# --- load_model ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "received"),
    [(None, "None"), (123, "123"), ("", "''"), ("   ", "'   '"), (["tiny-random"], "['tiny-random']")],
)
def test_load_model_refuses_what_is_not_a_name(name, received):
    with pytest.raises(InvalidArgument) as error:
        load_model(name)
    _clear(error, received, "tiny-random")


def test_load_model_takes_a_path_object(tmp_path):
    with pytest.raises(ModelNotFound) as error:
        load_model(tmp_path / "missing.gguf")
    assert "missing.gguf" in str(error.value)
    with pytest.raises(ModelNotFound):
        load_model(Path(tmp_path))  # a directory without config.json


@pytest.mark.parametrize("dtype", [None, 16, "float64"])
def test_load_model_refuses_an_unknown_dtype(dtype):
    with pytest.raises(InvalidArgument) as error:
        load_model("tiny-random", dtype=dtype)
    _clear(error, repr(dtype), "bfloat16")


# --- generate: model, controls, seed -----------------------------------------------------------


def test_generate_refuses_a_model_name(tmp_path):
    with pytest.raises(InvalidArgument) as error:
        generate("tiny-random", "Once upon a time")
    _clear(error, "'tiny-random'", "load_model('tiny-random')")


def test_generate_refuses_something_else_as_model(tiny):
    with pytest.raises(InvalidArgument) as error:
        generate(tiny.module, "Once upon a time")
    assert "load_model" in str(error.value)


def test_generate_refuses_one_control_not_in_a_list(tiny):
    with pytest.raises(InvalidArgument) as error:
        generate(tiny, "Once upon a time", controls=TopP(0.9), max_new_tokens=2)
    _clear(error, "TopP", "controls=[TopP(")


def test_generate_refuses_a_string_as_controls(tiny):
    with pytest.raises(InvalidArgument) as error:
        generate(tiny, "Once upon a time", controls="qa", max_new_tokens=2)
    _clear(error, "'qa' (str)", "controls=[")


def test_generate_refuses_a_set_of_controls(tiny):
    with pytest.raises(InvalidArgument) as error:
        generate(tiny, "Once upon a time", controls={Temperature(0.5)}, max_new_tokens=2)
    _clear(error, "(set)", "pass a list")


@pytest.mark.parametrize("control_class", [TopP, Temperature, PromptTemplate])
def test_generate_refuses_a_control_class(tiny, control_class):
    with pytest.raises(InvalidArgument) as error:
        generate(tiny, "Once upon a time", controls=[control_class], max_new_tokens=2)
    name = control_class.__name__
    _clear(error, name, f"{name}(…)")


def test_generate_refuses_a_control_factory_not_called(tiny):
    with pytest.raises(InvalidArgument) as error:
        generate(tiny, "Once upon a time", controls=[QA], max_new_tokens=2)
    _clear(error, "QA(", "controls=[QA(…)]")


def test_a_plain_function_taking_input_ids_and_scores_is_still_a_control(tiny):
    def ban_first_token(input_ids, scores):
        return scores.index_fill(-1, torch.tensor([5]), float("-inf"))

    samples = generate(tiny, "Once upon a time", controls=[ban_first_token], n=4, max_new_tokens=8)
    assert all(5 not in s.token_ids for s in samples)


@pytest.mark.parametrize(("seed", "received"), BAD_SEEDS)
def test_generate_refuses_a_bad_seed(tiny, seed, received):
    with pytest.raises(InvalidArgument) as error:
        generate(tiny, "Once upon a time", seed=seed, max_new_tokens=2)
    _clear(error, received, "seed=")


def test_none_is_refused_with_a_way_to_get_a_fresh_seed(tiny):
    with pytest.raises(InvalidArgument) as error:
        generate(tiny, "Once upon a time", seed=None, max_new_tokens=2)
    assert "random.randrange(2**63)" in str(error.value)


def test_a_numpy_integer_seed_is_that_integer(tiny):
    assert check_seed(np.int64(3)) == 3 and type(check_seed(np.int64(3))) is int
    a = generate(tiny, "Once upon a time", seed=np.int64(3), max_new_tokens=6)
    b = generate(tiny, "Once upon a time", seed=3, max_new_tokens=6)
    assert a[0].token_ids == b[0].token_ids


@pytest.mark.parametrize(("seed", "received"), BAD_SEEDS)
def test_resampling_refuses_a_bad_seed(tiny, seed, received):
    samples = generate(tiny, "Once upon a time", n=2, max_new_tokens=2)
    with pytest.raises(InvalidArgument) as error:
        samples.resample(seed=seed)
    _clear(error, received, "seed=")


def test_few_shot_refuses_a_bad_shuffle_seed():
    with pytest.raises(InvalidArgument) as error:
        FewShot((("2+2", "4"),), shuffle_seed="x")
    _clear(error, "'x' (str)", "shuffle_seed=")


# --- samplers share the seed check --------------------------------------------------------------

SAMPLERS = [
    pytest.param(smc, {}, id="smc"),
    pytest.param(importance, {}, id="importance"),
    pytest.param(rejection, {"budget": 100}, id="rejection"),
]


@pytest.mark.parametrize(("sampler", "options"), SAMPLERS)
@pytest.mark.parametrize("seed", ["x", 1.7, None, True])
def test_samplers_refuse_a_bad_seed(tiny, sampler, options, seed):
    target = Target(tiny, "Once upon a time", [ends_with("a")], max_new_tokens=3)
    with pytest.raises(InvalidArgument) as error:
        sampler(target, n_particles=2, seed=seed, **options)
    assert "seed must be an integer" in str(error.value).lower()


@pytest.mark.parametrize("sampler", [smc, importance])
def test_samplers_refuse_a_control_class_as_proposal(tiny, sampler):
    target = Target(tiny, "Once upon a time", [ends_with("a")], max_new_tokens=3)
    with pytest.raises(InvalidArgument) as error:
        sampler(target, n_particles=2, proposal=[Temperature])
    assert "Temperature(…)" in str(error.value)


def test_posterior_resample_refuses_a_bad_seed(tiny):
    target = Target(tiny, "Once upon a time", [ends_with("a")], max_new_tokens=3)
    posterior = importance(target, n_particles=4, seed=0)
    with pytest.raises(InvalidArgument):
        posterior.resample(2, seed="x")


def test_rejection_derives_its_round_seeds_without_overflow(tiny):
    target = Target(tiny, "Once upon a time", [ends_with("a")], max_new_tokens=2)
    posterior = rejection(target, n_particles=1, seed=2**63 - 1, budget=40)
    assert posterior.model_calls > 0


# --- on_sample: finished samples handed over in order, also when interrupted --------------------

PROMPTS = ["Once upon a time", "The cat", "A b c d e f"]


def test_on_sample_sees_the_returned_samples_in_order(tiny):
    seen = []
    samples = generate(
        tiny, PROMPTS, n=3, max_new_tokens=[5, 9, 3], seed=4, batch_size=4, on_sample=seen.append
    )
    assert [s.token_ids for s in seen] == [s.token_ids for s in samples]
    assert [(s.prompt_index, s.sample_index) for s in seen] == [(j, k) for j in range(3) for k in range(3)]


class Interrupt:
    """A `progress` callback that raises KeyboardInterrupt (as Ctrl-C would) once `after` slots passed."""

    def __init__(self, after: int) -> None:
        self.after, self.slots = after, 0

    def __call__(self, advanced: int) -> None:
        self.slots += advanced
        if self.slots >= self.after:
            raise KeyboardInterrupt


@pytest.mark.parametrize(
    "controls", [pytest.param([Temperature(0.9)], id="logit-only"), pytest.param([QA()], id="rescored")]
)
def test_an_interrupt_hands_over_the_finished_samples(tiny, controls):
    budgets = [4, 30, 8]  # prompt 1's rows are still running when the interrupt comes
    full = generate(tiny, PROMPTS, controls=controls, n=2, max_new_tokens=budgets, seed=1, batch_size=2)
    seen = []
    with pytest.raises(KeyboardInterrupt):
        generate(
            tiny,
            PROMPTS,
            controls=controls,
            n=2,
            max_new_tokens=budgets,
            seed=1,
            batch_size=2,
            progress=Interrupt(after=40),
            on_sample=seen.append,
        )
    keys = [(s.prompt_index, s.sample_index) for s in seen]
    assert keys == sorted(set(keys)), "in prompt-major order, each once"
    assert 0 < len(seen) < len(full)
    assert (1, 1) not in keys
    by_key = {(s.prompt_index, s.sample_index): s for s in full}
    for sample in seen:  # complete, with the books of the uninterrupted run
        twin = by_key[(sample.prompt_index, sample.sample_index)]
        assert sample.token_ids == twin.token_ids and sample.stop_reason == twin.stop_reason
        assert torch.equal(sample.logq, twin.logq)
        assert torch.allclose(sample.logp_base, twin.logp_base, atol=1e-5)


def test_an_interrupt_without_on_sample_is_a_plain_keyboard_interrupt(tiny):
    with pytest.raises(KeyboardInterrupt):
        generate(tiny, PROMPTS, max_new_tokens=20, progress=Interrupt(after=5))


def test_an_interrupt_while_the_last_samples_are_rescored_keeps_the_ones_done(tiny):
    seen = []

    def take(sample):
        seen.append(sample)
        if len(seen) == 3:  # Ctrl-C while the second chunk of rescored samples is handed over
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(tiny, PROMPTS, controls=[QA()], n=2, max_new_tokens=4, batch_size=2, on_sample=take)
    # Rescored two rows at a time: the second chunk was built, so both of its samples are handed over.
    assert [(s.prompt_index, s.sample_index) for s in seen] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    full = generate(tiny, PROMPTS, controls=[QA()], n=2, max_new_tokens=4)
    assert [s.token_ids for s in seen] == [s.token_ids for s in list(full)[:4]]
    assert all(
        torch.allclose(a.logp_base, b.logp_base, atol=1e-5) for a, b in zip(seen, list(full)[:4], strict=True)
    )


def test_a_json_schema_file_that_is_not_utf8_is_named(tmp_path):
    from steering.controls import JsonSchema
    from steering.errors import InputFormatError

    path = tmp_path / "schema.json"
    path.write_bytes(b'{"type": "object", "description": "caf\xe9"}')
    with pytest.raises(InputFormatError, match=r"schema.json:1: the JSON schema file is not valid UTF-8"):
        JsonSchema(path)

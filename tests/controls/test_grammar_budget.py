"""Structured output that completes: grammars finish inside their budget, JSON keys never repeat,
strict objects take no unlisted key, the books stay exact, and `steer generate` says when a
constrained sample is unfinished."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from steering.controls import JsonSchema, Lark, Regex
from steering.controls.schema import close_objects
from steering.decode import generate
from steering.errors import InvalidArgument
from steering.models import load_model

OPEN_ENDED = {  # unbounded strings and arrays: a random model almost never closes them by itself
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "size": {"type": "number"},
    },
    "required": ["name", "tags", "size"],
}


@pytest.fixture(scope="module")
def letters():
    return load_model("tiny-letters", dtype="float32")


def _pairs_without_repeats(pairs):
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate key in {keys}"
    return dict(pairs)


def test_every_sample_of_an_open_ended_schema_finishes_within_a_tight_budget(tiny):
    import jsonschema

    budget = 40  # the shortest output, {"name":"","tags":[],"size":0}, takes 30 tokens here
    samples = generate(tiny, ["JSON:", "x"], controls=[JsonSchema(OPEN_ENDED)], n=6, max_new_tokens=budget)
    for sample in samples:
        assert sample.stop_reason == "stop", sample.text
        assert len(sample.token_ids) <= budget
        jsonschema.validate(json.loads(sample.text), OPEN_ENDED)
    assert not samples.unfinished
    plain = generate(
        tiny,
        ["JSON:", "x"],
        controls=[JsonSchema(OPEN_ENDED, budget_aware=False)],
        n=6,
        max_new_tokens=budget,
    )
    assert len(plain.unfinished) >= 10  # without budget awareness the same rows run out mid-string


def test_regex_and_lark_finish_within_budget(tiny):
    regex = r"[a-z]+(,[a-z]+)*;"
    samples = generate(tiny, ["x"], controls=[Regex(regex)], n=12, max_new_tokens=12, seed=2)
    assert all(s.stop_reason == "stop" for s in samples)
    assert all(re.fullmatch(regex, s.text) for s in samples)
    grammar = 'start: "(" item ("," item)* ")"\nitem: /[a-z]+/'
    samples = generate(tiny, ["x"], controls=[Lark(grammar)], n=12, max_new_tokens=10, seed=2)
    assert all(s.stop_reason == "stop" and s.text.startswith("(") and s.text.endswith(")") for s in samples)


def test_budget_mask_books_match_exact_enumeration(letters):
    # tiny-letters has 5 tokens (<eos>, a, b, c, space): every output of "[bc ]*a" within 4 tokens
    # can be enumerated. The budget-aware mask allows {a, b, c, space} while ≥ 2 tokens remain and
    # only "a" at the last one, so every sample finishes and q(x) = Π_t p(x_t) / Z_t over that mask.
    prompt, budget = "ab", 4
    ids = {text: letters.encode_continuation(text)[0] for text in ("a", "b", "c", " ")}
    outputs = [[*middle, "a"] for k in range(budget) for middle in itertools.product("bc ", repeat=k)]
    context = letters.encode(prompt)

    def q_of(output: list[str]) -> float:
        log_q = 0.0
        for step, token in enumerate(output):
            prefix = [ids[t] for t in output[:step]]
            logp = letters.logprobs([context], [[*prefix, ids[token]]])[0]  # teacher forced
            allowed = ["a"] if budget - step == 1 else ["a", "b", "c", " "]
            step_logp = torch.stack(
                [letters.logprobs([context], [[*prefix, ids[t]]])[0][-1] for t in allowed]
            )
            log_q += float(logp[-1] - torch.logsumexp(step_logp, 0))
        return log_q

    exact = {"".join(o): q_of(o) for o in outputs}
    assert sum(torch.tensor(list(exact.values())).exp()).item() == pytest.approx(1.0, abs=1e-5)
    samples = generate(
        letters, [prompt], controls=[Regex("[bc ]*a")], n=2000, max_new_tokens=budget, seed=4, batch_size=500
    )
    counts: dict[str, int] = {}
    for sample in samples:
        assert sample.stop_reason == "stop"
        assert float(sample.logq.sum()) == pytest.approx(exact[sample.text], abs=1e-4)
        counts[sample.text] = counts.get(sample.text, 0) + 1
    tv = 0.5 * sum(
        abs(counts.get(t, 0) / len(samples) - torch.tensor(v).exp().item()) for t, v in exact.items()
    )
    assert tv < 0.1  # 40 outcomes, 2000 draws (an exact sampler's expected TV ≈ 0.05)


def test_duplicate_keys_never_appear(tiny):
    keys = {"^[ab]+$": {"type": "integer"}}  # short keys from two letters: a model repeats them
    schema = {"type": "object", "patternProperties": keys, "additionalProperties": False, "minProperties": 3}
    kwargs = {"n": 12, "max_new_tokens": 40, "seed": 1}
    samples = generate(tiny, ["JSON:"], controls=[JsonSchema(schema)], **kwargs)
    for sample in samples:
        assert sample.stop_reason == "stop", sample.text
        json.loads(sample.text, object_pairs_hook=_pairs_without_repeats)
    repeated = 0
    for sample in generate(tiny, ["JSON:"], controls=[JsonSchema(schema, unique_keys=False)], **kwargs):
        try:
            json.loads(sample.text, object_pairs_hook=_pairs_without_repeats)
        except (AssertionError, ValueError):
            repeated += 1
    assert repeated > 0  # the same model repeats keys when nothing refuses them


def _accepts(grammar, tokenizer, text: str) -> bool:
    """Whether the grammar's matcher takes every token of `text` and can then stop."""
    from llguidance import LLMatcher

    from steering.controls.grammar import ll_tokenizer

    compiled = ll_tokenizer(tokenizer)
    matcher = LLMatcher(compiled, grammar.grammar, log_level=0)
    ids = compiled.tokenize_str(text)
    return matcher.try_consume_tokens(ids) == len(ids) and matcher.is_accepting()


def test_strict_objects_refuse_unlisted_keys(tiny):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}}}
    strict, open_ = JsonSchema(schema), JsonSchema(schema, strict=False)
    for text in ('{"a":1}', '{"a":1,"b":true}', "{}"):
        assert _accepts(strict, tiny.tokenizer, text) and _accepts(open_, tiny.tokenizer, text)
    for text in ('{"a":1,"zz":2}', '{"zz":"x"}'):
        assert not _accepts(strict, tiny.tokenizer, text) and _accepts(open_, tiny.tokenizer, text)
    maps = JsonSchema({"type": "object", "additionalProperties": {"type": "integer"}})  # extra keys allowed
    assert _accepts(maps, tiny.tokenizer, '{"zz":2}')
    samples = generate(tiny, ["JSON:"], controls=[strict], n=8, max_new_tokens=30, seed=3)
    assert all(s.stop_reason == "stop" and set(json.loads(s.text)) <= {"a", "b"} for s in samples)


def test_close_objects_leaves_merged_objects_open():
    schema = {
        "type": "object",
        "properties": {
            "plain": {"type": "object", "properties": {"x": {"type": "integer"}}},
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
            "merged": {"allOf": [{"$ref": "#/$defs/base"}, {"properties": {"y": {"type": "string"}}}]},
            "ref": {"$ref": "#/$defs/leaf"},
        },
        "$defs": {
            "base": {"type": "object", "properties": {"x": {"type": "integer"}}},
            "leaf": {"type": "object", "properties": {"z": {"type": "integer"}}},
        },
    }
    closed = close_objects(schema)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["plain"]["additionalProperties"] is False
    assert closed["properties"]["map"]["additionalProperties"] == {"type": "string"}  # as written
    assert "additionalProperties" not in closed["properties"]["merged"]["allOf"][1]  # merged: as written
    assert "additionalProperties" not in closed["$defs"]["base"]  # reached from a merge: as written
    assert closed["$defs"]["leaf"]["additionalProperties"] is False  # a plain reference: closed
    assert "additionalProperties" not in schema  # the caller's schema is not changed


@pytest.mark.parametrize(
    ("schema", "fragment", "fix"),
    [
        ({"type": "object", "dependencies": {"a": ["b"]}}, "dependencies", "remove those keywords"),
        ({"type": "array", "uniqueItems": True}, "uniqueItems", "remove those keywords"),
        ({"type": "array", "contains": {"type": "integer"}}, "contains", "remove those keywords"),
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, "oneOf", "coerce_one_of=True"),
    ],
)
def test_unsupported_keywords_are_refused_clearly(tiny, schema, fragment, fix):
    with pytest.raises(InvalidArgument) as error:
        generate(tiny, ["x"], controls=[JsonSchema(schema)], max_new_tokens=4)
    assert fragment in str(error.value) and fix in str(error.value)


def test_one_of_coercion_is_opt_in(tiny):
    schema = {"oneOf": [{"type": "integer"}, {"type": "boolean"}]}
    samples = generate(tiny, ["x"], controls=[JsonSchema(schema, coerce_one_of=True)], n=4, max_new_tokens=12)
    assert all(isinstance(json.loads(s.text), (int, bool)) for s in samples)


def test_refilled_rows_with_their_own_budgets_get_the_same_masks(tiny):
    # Per-prompt budgets and more rows than the batch: slots are refilled mid-decode, and each row's
    # budget-aware masks (hence tokens and books) are those it gets decoded alone.
    prompts, budgets = ["JSON:", "x", "a b", "Once"], [40, 36, 44, 38]  # closing takes 30
    kwargs = {"controls": [JsonSchema(OPEN_ENDED)], "n": 2, "max_new_tokens": budgets, "seed": 9}
    refilled = generate(tiny, prompts, batch_size=3, **kwargs)
    assert refilled.stats.refilled_rows > 0
    alone = generate(tiny, prompts, batch_size=1, **kwargs)
    for a, b in zip(refilled, alone, strict=True):
        assert a.token_ids == b.token_ids and a.stop_reason == b.stop_reason == "stop"
        assert torch.allclose(a.logq, b.logq, atol=1e-4)


def _steer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "steering", *args],
        input="",
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=600,
    )


@pytest.mark.parametrize(
    "constraint", [["--regex", "[a-z]{10}"], ["--choices", "alphabet soup,bravo"]], ids=["regex", "choices"]
)
def test_cli_exits_3_on_unfinished_samples_unless_partial_output_is_allowed(constraint):
    args = ["generate", "--model", "tiny-random", "-p", "x", "--n", "2", "--max-new-tokens", "3", "--json"]
    result = _steer(*args, *constraint)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert "2 of 2 samples ran out of --max-new-tokens 3" in result.stderr
    assert "prompt 0 sample 0, prompt 0 sample 1" in result.stderr and "--allow-partial" in result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["stop_reason"] for r in records] == ["unfinished", "unfinished"]  # still written
    partial = _steer(*args, *constraint, "--allow-partial")
    assert partial.returncode == 0, partial.stderr
    assert "unfinished" in partial.stderr and len(partial.stdout.splitlines()) == 2


def test_cli_json_strict_is_the_default_and_json_open_changes_the_masks(tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object"}))  # strict: no key is listed, so only {}
    base = ["generate", "--model", "tiny-random", "-p", "x", "--n", "4", "--max-new-tokens", "30"]
    runs = {}
    for flags in ((), ("--json-open",)):
        result = _steer(*base, "--json-schema", str(schema), "--json", "--allow-partial", *flags)
        assert result.returncode == 0, result.stderr
        runs[flags] = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in runs[()]] == ["{}"] * 4
    assert all(r["logq"] == [0.0, 0.0] for r in runs[()])  # strict by default: both tokens forced
    assert all(r["logq"] != [0.0, 0.0] for r in runs[("--json-open",)])  # a key could follow "{"


def test_choices_only_start_labels_that_fit_the_budget(tiny):
    from steering.controls import Choices

    labels = [" a", " bbbbbbbbbb"]  # 2 and 11 byte tokens
    samples = generate(tiny, ["x"], controls=[Choices(labels)], n=12, max_new_tokens=4, seed=5)
    assert {s.text for s in samples} == {" a"} and set(samples.stop_reasons) == {"stop"}
    roomy = generate(tiny, ["x"], controls=[Choices(labels)], n=12, max_new_tokens=12, seed=5)
    assert {s.text for s in roomy} == set(labels)  # with room for both, both are drawn

"""Regex / JSON-schema / Lark pools through llguidance: outputs match, books stay exact, errors help."""

from __future__ import annotations

import json
import re

import pytest
import torch

from steering.controls import JsonSchema, Lark, Regex, classify
from steering.decode import generate
from steering.errors import InputFormatError, InvalidArgument


def test_regex_outputs_fullmatch(tiny):
    pattern = r"(yes|no|[0-9]{1,3})!"
    samples = generate(
        tiny, ["Answer:", "Q: x\nA:"], controls=[Regex(pattern)], n=20, max_new_tokens=8, seed=1
    )
    finished = [s for s in samples if s.stop_reason in ("stop", "eos")]
    assert len(finished) == len(samples)
    assert all(re.fullmatch(pattern, s.text) for s in finished)


def test_regex_weights_recover_the_exact_conditional(tiny):
    strings = ["aac", "abc", "bc", "bbbc"]
    pattern = "(" + "|".join(strings) + ")"
    exact = classify(tiny, "Code:", strings).probs  # the four strings are prefix-free: exact enumeration
    samples = generate(tiny, ["Code:"], controls=[Regex(pattern)], n=2000, max_new_tokens=6, batch_size=500)
    index = torch.tensor([strings.index(s.text) for s in samples])
    plain = torch.bincount(index, minlength=4).double() / len(index)
    weighted = torch.zeros(4, dtype=torch.float64).index_add_(0, index, samples.log_weight.softmax(0))
    assert 0.5 * (weighted - exact).abs().sum().item() < 0.03
    assert 0.5 * (plain - exact).abs().sum().item() > 0.05


def test_json_schema_compact_and_valid(tiny):
    schema = {
        "type": "object",
        "properties": {
            "answer": {"enum": ["yes", "no"]},
            "n": {"type": "integer", "minimum": 0, "maximum": 9},
        },
        "required": ["answer", "n"],
        "additionalProperties": False,
    }
    samples = generate(tiny, ["JSON:"], controls=[JsonSchema(schema)], n=10, max_new_tokens=30)
    for sample in samples:
        assert sample.stop_reason in ("stop", "eos"), sample.text
        value = json.loads(sample.text)
        assert value["answer"] in ("yes", "no") and 0 <= value["n"] <= 9
        assert " " not in sample.text  # whitespace is bounded: compact JSON by default


def test_unfinished_when_budget_runs_out(tiny):
    samples = generate(tiny, ["x"], controls=[Regex("[a-z]{10}")], n=3, max_new_tokens=4)
    assert {s.stop_reason for s in samples} == {"unfinished"}


def test_lark_grammar(tiny):
    grammar = 'start: "(" item ("," item)* ")"\nitem: "a" | "b"'
    samples = generate(tiny, ["List:"], controls=[Lark(grammar)], n=8, max_new_tokens=12)
    for sample in samples:
        if sample.stop_reason != "unfinished":
            assert re.fullmatch(r"\((a|b)(,(a|b))*\)", sample.text)


def test_invalid_regex_shows_position(tiny):
    with pytest.raises(InvalidArgument, match="unclosed group") as info:
        generate(tiny, ["x"], controls=[Regex("a(b")], max_new_tokens=2)
    assert "a(b" in str(info.value)


def test_unsupported_schema_feature_is_named(tiny):
    with pytest.raises(InvalidArgument, match="made-up-format"):
        generate(
            tiny,
            ["x"],
            controls=[JsonSchema({"type": "string", "format": "made-up-format"})],
            max_new_tokens=2,
        )


def test_schema_file_with_bad_json_names_position(tmp_path):
    path = tmp_path / "schema.json"
    path.write_text('{"type": "object",\n "properties": }')
    with pytest.raises(InputFormatError, match=r"schema\.json:2"):
        JsonSchema(path)


@pytest.mark.integration
def test_gemma_json_samples_validate_against_schema(gemma):
    import jsonschema

    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "likes_cats": {"type": "boolean"},
        },
        "required": ["name", "age", "likes_cats"],
        "additionalProperties": False,
    }
    samples = generate(
        gemma,
        ["A person described as JSON: "],
        controls=[JsonSchema(schema)],
        n=100,
        max_new_tokens=48,
        batch_size=16,
    )
    finished = [s for s in samples if s.stop_reason != "unfinished"]
    assert len(finished) >= 95
    for sample in finished:
        jsonschema.validate(json.loads(sample.text), schema)

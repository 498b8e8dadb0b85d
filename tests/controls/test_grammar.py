"""Regex / JSON-schema / Lark pools through llguidance: outputs match, books stay exact, errors help."""

from __future__ import annotations

import json
import re

import pytest
import torch

from steering.controls import JsonSchema, Lark, Regex, classify
from steering.controls.grammar import unpack_bitmask
from steering.decode import generate
from steering.errors import InputFormatError, InvalidArgument

try:
    import xgrammar  # noqa: F401

    XGRAMMAR_MISSING = ""
except ImportError as _error:
    XGRAMMAR_MISSING = f"xgrammar is not importable ({_error}); `make bench` installs it"
needs_xgrammar = pytest.mark.skipif(bool(XGRAMMAR_MISSING), reason=XGRAMMAR_MISSING or "installed")


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


@pytest.mark.parametrize("vocab", [1, 31, 32, 259, 1000])
def test_unpack_bitmask_matches_bit_arithmetic(vocab):
    words = (vocab + 31) // 32
    bitmask = torch.randint(
        -(2**31), 2**31, (3, words), dtype=torch.int64, generator=torch.Generator().manual_seed(vocab)
    )
    bitmask = bitmask.to(torch.int32)
    expected = [[(int(bitmask[r, t // 32]) >> (t % 32)) & 1 == 1 for t in range(vocab)] for r in range(3)]
    assert unpack_bitmask(bitmask, vocab).tolist() == expected


def test_ended_rows_keep_their_scores(tiny):
    grammar = Regex("ab")
    grammar.start(tokenizer=tiny.tokenizer, prompt_width=1, batch_size=2)
    ids = tiny.tokenizer.convert_tokens_to_ids(["a", "b"])
    assert not grammar.is_complete(ids[:1], row=0)
    assert grammar.is_complete(ids, row=0)  # row 0 can only stop now
    scores = torch.randn(2, len(tiny.tokenizer)).log_softmax(-1)
    masked = grammar(torch.zeros(2, 1, dtype=torch.long), scores)
    assert torch.equal(masked[0], scores[0])
    assert masked[1].isfinite().sum() == 1 and masked[1, ids[0]] == scores[1, ids[0]]


@pytest.mark.parametrize("backend", ["llguidance", pytest.param("xgrammar", marks=needs_xgrammar)])
def test_logits_wider_than_the_tokenizer_mask_the_padding(tiny, backend):
    grammar = Regex("[ab]+", backend=backend)
    grammar.start(tokenizer=tiny.tokenizer, prompt_width=1, batch_size=1)
    vocab = len(tiny.tokenizer)
    scores = torch.randn(1, vocab + 13).log_softmax(-1)
    masked = grammar(torch.zeros(1, 1, dtype=torch.long), scores)
    allowed = masked[0].isfinite().nonzero().squeeze(-1).tolist()
    assert allowed == sorted(tiny.tokenizer.convert_tokens_to_ids(["a", "b"]))


def test_unknown_backend_is_named():
    with pytest.raises(InvalidArgument, match='Did you mean "xgrammar"'):
        Regex("a", backend="xgramar")


@needs_xgrammar
def test_xgrammar_regex_samples_equal_llguidance(tiny):
    # The byte-level tiny vocabulary has one token per byte, so both backends admit the same tokens
    # and, with the same seeds, draw the same samples with the same books.
    pattern = r"(yes|no|[0-9]{1,3})!"
    runs = [
        generate(tiny, ["Answer:"], controls=[Regex(pattern, backend=b)], n=20, max_new_tokens=8, seed=3)
        for b in ("llguidance", "xgrammar")
    ]
    assert [s.text for s in runs[0]] == [s.text for s in runs[1]]
    assert [s.stop_reason for s in runs[0]] == [s.stop_reason for s in runs[1]]
    assert torch.allclose(runs[0].log_weight, runs[1].log_weight)
    assert all(re.fullmatch(pattern, s.text) for s in runs[1] if s.stop_reason != "unfinished")


@needs_xgrammar
def test_xgrammar_json_schema_valid(tiny):
    schema = {
        "type": "object",
        "properties": {"answer": {"enum": ["yes", "no"]}, "n": {"type": "integer"}},
        "required": ["answer", "n"],
        "additionalProperties": False,
    }
    grammar = JsonSchema(schema, backend="xgrammar")
    assert "backend='xgrammar'" in repr(grammar)
    samples = generate(tiny, ["JSON:"], controls=[grammar], n=10, max_new_tokens=40)
    for sample in samples:
        if sample.stop_reason != "unfinished":
            assert sample.stop_reason in ("stop", "eos")
            assert json.loads(sample.text)["answer"] in ("yes", "no")


@needs_xgrammar
def test_xgrammar_invalid_regex_is_explained():
    with pytest.raises(InvalidArgument, match=r"cannot compile the regex: Regex parsing error at position 4"):
        Regex("a(b", backend="xgrammar")


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

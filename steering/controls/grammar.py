"""Structured output: regular expressions, JSON schemas and Lark grammars through llguidance.

A grammar is compiled and validated once (the llguidance tokenizer for a vocabulary is built once per
process and cached); at each step every row's matcher fills a token bitmask, and disallowed tokens get
−inf. Like every pool it changes the distribution: `log p_base − log q` per token is the mass the mask
kept, so `Samples.log_weight` is the exact importance weight for p(x | x matches the grammar).

JSON whitespace is not flexible by default (compact JSON), so a sample cannot run away into spaces.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from steering.errors import InputFormatError, InvalidArgument

_TOKENIZERS: dict[int, Any] = {}


def _ll_tokenizer(tokenizer: Any) -> Any:
    """The llguidance tokenizer for a HF fast tokenizer, built once per process (seconds for 262k)."""
    key = id(tokenizer)
    if key not in _TOKENIZERS:
        import llguidance.hf

        _TOKENIZERS[key] = llguidance.hf.from_tokenizer(tokenizer)
    return _TOKENIZERS[key]


def _unpack_bitmask(bitmask: torch.Tensor, vocab: int) -> torch.Tensor:
    """(B, ceil(V/32)) int32 bitmask → (B, V) bool, True where a token is allowed."""
    bits = torch.arange(32, dtype=torch.int32)
    allowed = (bitmask.unsqueeze(-1) >> bits) & 1
    return allowed.reshape(bitmask.shape[0], -1)[:, :vocab].bool()


@dataclass
class Grammar:
    """A token pool defined by an llguidance grammar; build it with `Regex`, `JsonSchema` or `Lark`."""

    grammar: str
    kind: str
    source: str
    _matchers: list[Any] = field(default_factory=list, init=False, repr=False)
    _consumed: list[int] = field(default_factory=list, init=False, repr=False)
    _checked_for: int | None = field(default=None, init=False, repr=False)

    def __repr__(self) -> str:
        text = self.source if len(self.source) <= 60 else self.source[:57] + "…"
        return f"{self.kind}({text!r})"

    def _validate(self, ll_tokenizer: Any) -> None:
        from llguidance import LLMatcher

        is_error, messages = LLMatcher.validate_grammar_with_warnings(self.grammar, ll_tokenizer)
        if is_error:
            raise InvalidArgument(
                f"the {self.kind.lower()} is not valid: {messages[0].strip()}",
                received=self.source,
                fix=f"correct the {self.kind.lower()} at the position shown",
            )

    def start(self, *, tokenizer: Any, prompt_width: int, batch_size: int) -> None:
        """Called by the engine before each batch: one fresh matcher per row."""
        from llguidance import LLMatcher

        ll_tokenizer = _ll_tokenizer(tokenizer)
        if self._checked_for != id(tokenizer):
            self._validate(ll_tokenizer)
            self._checked_for = id(tokenizer)
        self._matchers = [LLMatcher(ll_tokenizer, self.grammar, log_level=0) for _ in range(batch_size)]
        self._consumed = [0] * batch_size

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        from llguidance.torch import allocate_token_bitmask, fill_next_token_bitmask

        if len(self._matchers) != scores.shape[0]:
            raise InvalidArgument(
                f"{self.kind} was used before the engine prepared it",
                received=f"{len(self._matchers)} matchers for {scores.shape[0]} rows",
                fix="pass it to steering.generate (it calls start)",
            )
        bitmask = allocate_token_bitmask(scores.shape[0], scores.shape[-1])
        active = []
        for row, matcher in enumerate(self._matchers):
            if matcher.is_error() or matcher.is_stopped():
                continue  # this row has ended; its scores are not sampled from any more
            fill_next_token_bitmask(matcher, bitmask, row)
            active.append(row)
        if not active:
            return scores
        allowed = _unpack_bitmask(bitmask, scores.shape[-1]).to(scores.device)
        rows = torch.tensor(active, device=scores.device)
        masked = scores.clone()
        masked[rows] = scores[rows].masked_fill(~allowed[rows], float("-inf"))
        return masked

    def is_complete(self, generated: Sequence[int], *, row: int) -> bool:
        """Consume the newly sampled token; True once the grammar can only stop."""
        matcher = self._matchers[row]
        while self._consumed[row] < len(generated):
            matcher.consume_token(int(generated[self._consumed[row]]))
            self._consumed[row] += 1
        return bool(matcher.is_stopped() and not matcher.is_error())


def Regex(pattern: str) -> Grammar:
    """The output must fully match `pattern` (Rust regex syntax)."""
    from llguidance import LLMatcher

    if not isinstance(pattern, str) or not pattern:
        raise InvalidArgument(
            "a regex must be a non-empty string", received=pattern, fix=r"use e.g. r'\d{3}'"
        )
    return Grammar(LLMatcher.grammar_from_regex(pattern), "Regex", pattern)


def JsonSchema(schema: Mapping[str, Any] | str | Path, *, flexible_whitespace: bool = False) -> Grammar:
    """The output is JSON valid under `schema` (a dict, JSON text, or a path to a .json file)."""
    from llguidance import LLMatcher

    if isinstance(schema, Path) or (
        isinstance(schema, str) and schema.endswith(".json") and Path(schema).is_file()
    ):
        path = Path(schema)
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise InputFormatError(
                f"{path}:{error.lineno}:{error.colno}: the schema is not valid JSON ({error.msg})",
                received=str(path),
                fix="fix the JSON at that position",
            ) from error
    if isinstance(schema, str):
        text = schema
        try:
            schema = json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidArgument(
                f"the schema is not valid JSON at line {error.lineno} column {error.colno} ({error.msg})",
                received=text[:120],
                fix="pass a dict or JSON text",
            ) from error
    if not isinstance(schema, Mapping):
        raise InvalidArgument(
            "a JSON schema must be an object", received=type(schema).__name__, fix="pass a dict"
        )
    options = {"whitespace_flexible": flexible_whitespace}
    grammar = LLMatcher.grammar_from_json_schema(dict(schema), defaults=options)  # type: ignore[arg-type]
    return Grammar(grammar, "JsonSchema", json.dumps(schema))


def Lark(text: str) -> Grammar:
    """The output matches a Lark (EBNF-style) grammar with a `start` rule."""
    from llguidance import LLMatcher

    return Grammar(LLMatcher.grammar_from_lark(text), "Lark", text)

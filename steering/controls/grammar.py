"""Structured output: regular expressions, JSON schemas and Lark grammars through llguidance (or xgrammar).

A grammar is compiled and validated once (the backend's tokenizer tables for a vocabulary are built once
per process and cached); at each step every row's matcher fills its row of one reused token bitmask, the
bitmask is unpacked in one vectorised pass, and disallowed tokens get −inf. Like every pool it changes
the distribution: `log p_base − log q` per token is the mass the mask kept, so `Samples.log_weight` is
the exact importance weight for p(x | x matches the grammar).

A row ends ("stop") once its grammar can only stop: nothing but EOS could follow. Both backends follow
that rule, so they differ only in which tokens they admit: xgrammar also admits a byte-fallback token
(`<0x21>`) where the same text has its own token (`!`); llguidance admits only the latter. Each backend's
books are exact for its own token set. Lark grammars are llguidance only.

JSON whitespace is not flexible by default (compact JSON), so a sample cannot run away into spaces.

Three refinements of the mask, each a function of the row's own tokens (and budget), so the books stay
exact and a refilled row gets the masks it would get in any batch (llguidance backend):

- finishing within budget (`budget_aware`, on by default): near the end of a row's `max_new_tokens`
  only tokens after which the grammar can still close in the tokens left (`steering.controls.closing`);
- no duplicate object keys in JSON (`unique_keys`, on by default; `steering.controls.json_keys`);
- strict objects (`JsonSchema(strict=True)`, the default): objects closed to keys their schema does
  not list unless it allows them (`steering.controls.schema`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steering.controls.base import LogitControlBase
from steering.controls.closing import ClosingPlanner
from steering.controls.grammar_rows import (
    LLGuidanceRows,
    Rows,
    XGrammarRows,
    allowed_ids,
    ll_tokenizer,
    row_pool,
    unpack_bitmask,
    write_allowed,
    xgrammar_compiler,
)
from steering.controls.json_keys import KeyTracker, TokenTable
from steering.controls.schema import close_objects, known_dialect, load_schema
from steering.errors import InvalidArgument, did_you_mean

BACKENDS = ("llguidance", "xgrammar")
_NOUNS = {"Regex": "regex", "JsonSchema": "JSON schema", "Lark": "Lark grammar"}
_PLANNERS: dict[int, ClosingPlanner] = {}
_TOKEN_TABLES: dict[int, TokenTable] = {}


def _planner(tokenizer: Any) -> ClosingPlanner:
    """The closing planner for a HF tokenizer (its priority tokens), built once per process."""
    if id(tokenizer) not in _PLANNERS:
        _PLANNERS[id(tokenizer)] = ClosingPlanner(ll_tokenizer(tokenizer), _token_table(tokenizer).bytes)
    return _PLANNERS[id(tokenizer)]


def _token_table(tokenizer: Any) -> TokenTable:
    """Every token's bytes and the tokens that can complete a JSON key, built once per process."""
    if id(tokenizer) not in _TOKEN_TABLES:
        compiled = ll_tokenizer(tokenizer)
        _TOKEN_TABLES[id(tokenizer)] = TokenTable(compiled, int(compiled.vocab_size))
    return _TOKEN_TABLES[id(tokenizer)]


@dataclass
class Grammar(LogitControlBase):
    """A token pool defined by a grammar; build it with `Regex`, `JsonSchema` or `Lark`.

    `grammar` is the text the backend compiles (llguidance's grammar JSON, or xgrammar's EBNF).
    `budget_aware`: near the end of its budget a row may only take tokens after which the grammar can
    still close in time (llguidance). `unique_keys`: no JSON object repeats a key (llguidance).
    """

    masks_only = True  # only sets tokens to −inf: the engine's exact fast path
    offers_token_pools = True  # `token_pools`: each row's allowed ids, sampled without a (B, V) mask
    decides_completion = True  # a row ends ("stop") once its grammar can only stop
    can_select_rows = False  # matchers cannot be copied for resampled rows (restart_row: a fresh one)

    grammar: str
    kind: str
    source: str
    backend: str = "llguidance"
    budget_aware: bool = True
    unique_keys: bool = False
    _rows: Rows | None = field(default=None, init=False, repr=False)
    _consumed: list[int] = field(default_factory=list, init=False, repr=False)
    _budgets: list[int | None] = field(default_factory=list, init=False, repr=False)
    _plans: list[tuple[int, list[int]] | None] = field(default_factory=list, init=False, repr=False)
    _keys: list[KeyTracker] = field(default_factory=list, init=False, repr=False)
    _checked_for: int | None = field(default=None, init=False, repr=False)
    _tokenizer: Any = field(default=None, init=False, repr=False)
    _batch_size: int = field(default=0, init=False, repr=False)
    _compiled: dict[tuple[int, int], Any] = field(default_factory=dict, init=False, repr=False)
    _bitmask: torch.Tensor | None = field(default=None, init=False, repr=False)

    def __repr__(self) -> str:
        text = self.source if len(self.source) <= 60 else self.source[:57] + "…"
        backend = "" if self.backend == "llguidance" else f", backend={self.backend!r}"
        budget = "" if self.budget_aware else ", budget_aware=False"
        return f"{self.kind}({text!r}{backend}{budget})"

    def _validate(self, ll_tokenizer: Any) -> None:
        from llguidance import LLMatcher

        is_error, messages = LLMatcher.validate_grammar_with_warnings(self.grammar, ll_tokenizer)
        if is_error:
            noun, message = _NOUNS[self.kind], messages[0].strip()
            what, fix = f"the {noun} is not valid: {message}", f"correct the {noun} at the position shown"
            if "Unimplemented keys" in message:
                what = f"the {noun} uses keywords that cannot be enforced while generating ({message})"
                fix = "remove those keywords from the schema"
            elif "coerce_one_of" in message:
                what = f"the {noun} has a oneOf whose branches may overlap ({message.split('. Enable')[0]})"
                fix = "write anyOf, or pass coerce_one_of=True (steer generate --coerce-one-of) to read it as anyOf"
            raise InvalidArgument(what, received=self.source, fix=fix)

    def start(self, *, tokenizer: Any, prompt_width: int, batch_size: int) -> None:
        """Called by the engine before each batch: one fresh matcher per row."""
        self._tokenizer, self._batch_size = tokenizer, batch_size
        self._consumed = [0] * batch_size
        self._budgets = [None] * batch_size
        self._plans = [None] * batch_size
        self._keys = [KeyTracker() for _ in range(batch_size)] if self._tracks_keys else []
        self._rows = None  # xgrammar's rows need the logits width: built at the first step
        self._bitmask = None
        if self.backend == "llguidance":
            compiled = ll_tokenizer(tokenizer)
            if self._checked_for != id(tokenizer):
                self._validate(compiled)
                self._checked_for = id(tokenizer)
            self._rows = LLGuidanceRows(compiled, self.grammar, batch_size)

    @property
    def _tracks_keys(self) -> bool:
        return self.unique_keys and self.backend == "llguidance"

    def set_budget(self, row: int, *, budget: int | None) -> None:
        """Row `row` may sample at most `budget` tokens in all: near the end, only tokens that still close."""
        self._budgets[row] = budget
        self._plans[row] = None

    def restart_row(self, row: int, *, prompt_ids: Sequence[int]) -> None:
        """Called by the engine when a new prompt takes over batch row `row`: a fresh matcher."""
        self._consumed[row] = 0
        self._plans[row] = None
        if self._keys:
            self._keys[row] = KeyTracker()
        if self._rows is not None:
            self._rows.restart(row)

    def _prepared_rows(self, rows: int, vocab: int) -> Rows:
        if self._rows is None and self._tokenizer is not None and self.backend == "xgrammar":
            key = (id(self._tokenizer), vocab)
            if key not in self._compiled:
                self._compiled[key] = xgrammar_compiler(self._tokenizer, vocab).compile_grammar(self.grammar)
            self._rows = XGrammarRows(self._compiled[key], self._batch_size, vocab)
        if self._rows is None or self._batch_size != rows:
            raise InvalidArgument(
                f"{self.kind} was used before the engine prepared it",
                received=f"{self._batch_size} matchers for {rows} rows",
                fix="pass it to steering.generate (it calls start)",
            )
        return self._rows

    def _fill(self, batch: int, vocab: int) -> tuple[Rows, torch.Tensor, list[int]]:
        """Every live row's matcher fills its row of the bitmask; ended rows allow everything."""
        rows = self._prepared_rows(batch, vocab)
        if self._bitmask is None:  # one buffer per batch, rewritten at every step
            self._bitmask = torch.empty((batch, (rows.vocab + 31) // 32), dtype=torch.int32)
        bitmask = self._bitmask
        live = []
        for row in range(batch):
            if rows.ended(row):
                bitmask[row].fill_(-1)  # this row has ended; its scores are not sampled from any more
            else:
                live.append(row)
        if live:
            rows.fill(bitmask, live)
            if isinstance(rows, LLGuidanceRows) and (self._tracks_keys or self.budget_aware):
                words = bitmask.numpy().view(np.uint32)
                for row in live:
                    self._refine(rows, row, words[row])
        return rows, bitmask, live

    def _refine(self, rows: LLGuidanceRows, row: int, words: np.ndarray) -> None:
        """Narrow one row's bitmask: no duplicate key, and within budget, a plan that still closes."""
        if self._keys:
            bad = np.asarray(self._keys[row].forbidden(_token_table(self._tokenizer), words), dtype=np.int64)
            if len(bad):
                cleared = words.copy()
                np.bitwise_and.at(cleared, bad >> 5, ~(np.uint32(1) << (bad & 31).astype(np.uint32)))
                if cleared.any():  # a key its object lacks can still be written: refuse the repeats
                    words[:] = cleared
        budget = self._budgets[row] if self.budget_aware else None
        if budget is None:
            return
        remaining = budget - self._consumed[row]
        planner = _planner(self._tokenizer)
        plan = self._plan(rows, row, remaining)
        if plan is None or remaining > len(plan) + planner.horizon:
            return
        allowed = allowed_ids(words, rows.vocab)
        keys = self._keys[row] if self._keys else None
        restricted = planner.restrict(rows.matchers[row], allowed, remaining, plan, keys)
        if restricted is not None:
            write_allowed(words, restricted)

    def _plan(self, rows: LLGuidanceRows, row: int, remaining: int) -> list[int] | None:
        """The row's closing plan from its current state (cached while the row follows it)."""
        cached = self._plans[row]
        if cached is not None and cached[0] == self._consumed[row]:
            return cached[1] if len(cached[1]) <= remaining else None
        keys = self._keys[row] if self._keys else None
        plan = _planner(self._tokenizer).plan(rows.matchers[row], remaining, keys)
        self._plans[row] = None if plan is None else (self._consumed[row], plan)
        return plan

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """scores: (B, V) → (B, V) with −inf where the row's grammar forbids the token."""
        batch, vocab = scores.shape
        rows, bitmask, live = self._fill(batch, vocab)
        if not live:
            return scores
        allowed = unpack_bitmask(bitmask, min(vocab, rows.vocab))
        if vocab > rows.vocab:  # logits padded past the tokenizer: those ids are never text
            allowed = torch.nn.functional.pad(allowed, (0, vocab - rows.vocab), value=False)
        return torch.where(allowed.to(scores.device), scores, float("-inf"))

    def token_pools(self, input_ids: torch.Tensor, vocab: int) -> list[torch.Tensor | None]:
        """The same masks as `__call__`, per row: allowed ids, an allowed bool row, or None (all).

        The engine samples a small pool without touching the rest of the vocabulary (a JSON schema's
        structure allows one to a few tokens of 262k), and a large one without a (B, V) `where`.
        """
        batch = int(input_ids.shape[0])
        rows, bitmask, live = self._fill(batch, vocab)
        pools: list[torch.Tensor | None] = [None] * batch
        words = bitmask.numpy().view(np.uint32)
        for row in live:
            pools[row] = row_pool(words[row], min(vocab, rows.vocab), vocab)
        return pools

    def is_complete(self, generated: Sequence[int], *, row: int) -> bool:
        """Consume the newly sampled token; True once the grammar can only stop."""
        rows = self._rows
        if rows is None:
            return False
        while self._consumed[row] < len(generated):
            token = int(generated[self._consumed[row]])
            rows.consume(row, token)
            if self._keys:
                self._keys[row].feed(_token_table(self._tokenizer).bytes[token])
            cached = self._plans[row]
            following = cached is not None and cached[0] == self._consumed[row] and cached[1][:1] == [token]
            self._consumed[row] += 1
            self._plans[row] = (self._consumed[row], cached[1][1:]) if following and cached else None
        return rows.can_only_stop(row)


def _check_backend(backend: str, kind: str) -> None:
    allowed = BACKENDS if kind != "Lark" else ("llguidance",)
    if backend not in allowed:
        raise InvalidArgument(
            f"{kind} has no backend {backend!r}.{did_you_mean(backend, allowed)}",
            received=backend,
            fix=f"use one of: {', '.join(allowed)}",
        )
    if backend == "xgrammar":
        try:
            import xgrammar  # noqa: F401
        except ImportError as error:
            raise InvalidArgument(
                f"the xgrammar backend needs the xgrammar package, which cannot be imported ({error})",
                received=backend,
                fix="`pip install --no-deps xgrammar apache-tvm-ffi` (`make bench` does), or use backend='llguidance'",
            ) from error


def _xgrammar_ebnf(kind: str, source: str, build: Any) -> str:
    try:
        return str(build())
    except Exception as error:  # xgrammar raises RuntimeError/ValueError with its own position text
        message = re.sub(r"^\[[\d:]+\] \S+: ", "", str(error).strip())  # drop "[time] file.cc:83: "
        raise InvalidArgument(
            f"the xgrammar backend cannot compile the {_NOUNS[kind]}: {message}",
            received=source,
            fix=f"correct the {_NOUNS[kind]}, or use backend='llguidance'",
        ) from error


def Regex(pattern: str, *, backend: str = "llguidance", budget_aware: bool = True) -> Grammar:
    """The output must fully match `pattern` (Rust regex syntax; xgrammar: its own ECMAScript-like one).

    `budget_aware`: near the end of `max_new_tokens`, only tokens after which the match can still
    finish (llguidance; see `steering.controls.closing`). False: the plain pool.
    """
    if not isinstance(pattern, str) or not pattern:
        raise InvalidArgument(
            "a regex must be a non-empty string", received=pattern, fix=r"use e.g. r'\d{3}'"
        )
    _check_backend(backend, "Regex")
    if backend == "xgrammar":
        import xgrammar

        ebnf = _xgrammar_ebnf("Regex", pattern, lambda: xgrammar.Grammar.from_regex(pattern))
        return Grammar(ebnf, "Regex", pattern, backend, budget_aware=False)
    from llguidance import LLMatcher

    return Grammar(LLMatcher.grammar_from_regex(pattern), "Regex", pattern, budget_aware=budget_aware)


def JsonSchema(
    schema: Mapping[str, Any] | str | Path,
    *,
    strict: bool = True,
    unique_keys: bool = True,
    budget_aware: bool = True,
    coerce_one_of: bool = False,
    flexible_whitespace: bool = False,
    backend: str = "llguidance",
) -> Grammar:
    """The output is JSON valid under `schema` (a dict, JSON text, or a path to a .json file).

    Args:
        schema: the JSON schema (a `$schema` naming a meta-schema that is not a JSON Schema draft is
            ignored: its keywords are read as Draft 2020-12).
        strict: objects take no key their schema does not list, unless it allows extra keys
            (`additionalProperties`/`patternProperties`): the convention of hosted structured outputs,
            xgrammar and outlines. False: JSON Schema's own default (any extra key). See
            `steering.controls.schema` for the objects left as written (merged by `allOf` and kin).
        unique_keys: no object repeats a key (llguidance).
        budget_aware: near the end of `max_new_tokens`, only tokens after which the JSON can still be
            closed in time (llguidance). False: the plain pool (which may run out mid-string).
        coerce_one_of: read `oneOf` as `anyOf` where llguidance cannot prove the branches exclusive
            (otherwise it refuses the schema); an output may then match more than one branch.
        flexible_whitespace: allow whitespace between tokens (default: compact JSON).
        backend: "llguidance" or "xgrammar" (the plain pool only).
    """
    schema = load_schema(schema)
    _check_backend(backend, "JsonSchema")
    text = json.dumps(schema)
    compiled = close_objects(known_dialect(schema)) if strict else known_dialect(schema)
    if backend == "xgrammar":
        import xgrammar

        ebnf = _xgrammar_ebnf(
            "JsonSchema",
            text,
            lambda: xgrammar.Grammar.from_json_schema(
                json.dumps(compiled),
                any_whitespace=flexible_whitespace,
                separators=None if flexible_whitespace else (",", ":"),
                strict_mode=strict,
            ),
        )
        return Grammar(ebnf, "JsonSchema", text, backend, budget_aware=False)
    from llguidance import LLMatcher

    options = {"whitespace_flexible": flexible_whitespace, "coerce_one_of": coerce_one_of}
    grammar = LLMatcher.grammar_from_json_schema(compiled, defaults=options)  # type: ignore[arg-type]
    return Grammar(grammar, "JsonSchema", text, budget_aware=budget_aware, unique_keys=unique_keys)


def Lark(text: str, *, budget_aware: bool = True) -> Grammar:
    """The output matches a Lark (EBNF-style) grammar with a `start` rule (llguidance only).

    `budget_aware`: near the end of `max_new_tokens`, only tokens after which the grammar can still
    finish. False: the plain pool.
    """
    from llguidance import LLMatcher

    return Grammar(LLMatcher.grammar_from_lark(text), "Lark", text, budget_aware=budget_aware)

"""Grammar backends measured by `constrained.py`, behind one small interface, and what it compiles.

Each backend: `setup(tokenizer, vocab)` builds its tokenizer tables once; `compile(kind)` turns the
JSON schema or the regex into (a first matcher, the compiled grammar); `matcher(compiled)` makes a
fresh matcher; `fill(matcher, bitmask)` writes the (1, ceil(V/32)) int32 allowed-token bitmask;
`consume(matcher, token)` advances it (False when the backend rejects the token).
"""

from __future__ import annotations

import importlib.metadata
import json
import time
from typing import Any

import torch

from steering.controls import JsonSchema, Regex

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "maxLength": 24},
        "likes_cats": {"type": "boolean"},
    },
    "required": ["name", "age", "city", "likes_cats"],
    "additionalProperties": False,
}
REGEX = r"[A-Z][a-z]+( [a-z]+){5,30}[.!?]"  # a sentence of 6 to 31 words, in every backend's syntax
COMPETITORS = {"outlines-core": "outlines_core", "xgrammar": "xgrammar"}


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def competitor_status() -> dict[str, str]:
    """'ok' or 'not installed: <why>' for each competitor, from actually importing it."""
    status = {}
    for package, module in COMPETITORS.items():
        try:
            __import__(module)
            status[package] = "ok"
        except Exception as error:  # ImportError, or a broken native library
            status[package] = f"not installed: {type(error).__name__}: {error}"
    return status


class LLGuidance:
    """steering's path: `JsonSchema`/`Regex` → llguidance grammar, validated, one matcher per row."""

    name = "steering (llguidance)"

    def setup(self, tokenizer: Any, vocab: int) -> None:
        import llguidance.hf

        self.ll_tokenizer = llguidance.hf.from_tokenizer(tokenizer)

    def compile(self, kind: str) -> Any:

        grammar = JsonSchema(SCHEMA) if kind == "json" else Regex(REGEX)
        grammar._validate(self.ll_tokenizer)  # what Grammar.start does once per tokenizer
        return self.matcher(grammar.grammar), grammar.grammar

    def matcher(self, compiled: Any) -> Any:
        from llguidance import LLMatcher

        return LLMatcher(self.ll_tokenizer, compiled, log_level=0)

    def fill(self, matcher: Any, bitmask: torch.Tensor) -> None:
        from llguidance.torch import fill_next_token_bitmask

        fill_next_token_bitmask(matcher, bitmask, 0)

    def consume(self, matcher: Any, token: int) -> bool:
        return bool(matcher.consume_token(token))


class XGrammar:
    """xgrammar: TokenizerInfo from the HF tokenizer, compiled grammar (adaptive mask cache), matcher."""

    name = "xgrammar"

    def setup(self, tokenizer: Any, vocab: int) -> None:
        import xgrammar

        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab)
        self.compiler = xgrammar.GrammarCompiler(info, cache_enabled=False)

    def compile(self, kind: str) -> Any:
        if kind == "json":
            compiled = self.compiler.compile_json_schema(
                json.dumps(SCHEMA), any_whitespace=False, separators=(",", ":")
            )
        else:
            compiled = self.compiler.compile_regex(REGEX)
        return self.matcher(compiled), compiled

    def matcher(self, compiled: Any) -> Any:
        import xgrammar

        return xgrammar.GrammarMatcher(compiled)

    def fill(self, matcher: Any, bitmask: torch.Tensor) -> None:
        matcher.fill_next_token_bitmask(bitmask, 0)

    def consume(self, matcher: Any, token: int) -> bool:
        return bool(matcher.accept_token(token))


class OutlinesCore:
    """outlines-core: schema → regex → token-level DFA index over the whole vocabulary, then a guide."""

    name = "outlines-core"

    def setup(self, tokenizer: Any, vocab: int) -> None:
        import outlines_core

        from steering.controls.grammar import ll_tokenizer as steering_ll_tokenizer

        # Token bytes as llguidance decodes them (byte-fallback `<0x0A>` → b"\n", "▁" → b" "); no hub.
        ll_tokenizer = steering_ll_tokenizer(tokenizer)  # steering's, already built by the end-to-end runs
        started = time.perf_counter()
        eos = tokenizer.eos_token_id
        by_bytes: dict[bytes, list[int]] = {}
        for token in range(ll_tokenizer.vocab_size):
            if token == eos or ll_tokenizer.is_special_token(token):
                continue
            text = ll_tokenizer.decode_bytes([token])
            if text:
                by_bytes.setdefault(text, []).append(token)
        self.vocabulary = outlines_core.Vocabulary(eos, by_bytes)  # type: ignore[arg-type]
        self.setup_s = time.perf_counter() - started  # the llguidance part is not outlines' cost
        self.words = (vocab + 31) // 32

    def compile(self, kind: str) -> Any:
        import outlines_core

        pattern = (
            outlines_core.json_schema.build_regex_from_schema(json.dumps(SCHEMA), "")
            if kind == "json"
            else REGEX
        )
        index = outlines_core.Index(pattern, self.vocabulary)
        return self.matcher(index), index

    def matcher(self, compiled: Any) -> Any:
        import outlines_core

        return outlines_core.Guide(compiled)

    def fill(self, matcher: Any, bitmask: torch.Tensor) -> None:
        matcher.write_mask_into(bitmask.data_ptr(), bitmask.numel(), 4)

    def consume(self, matcher: Any, token: int) -> bool:
        try:
            matcher.advance(token, return_tokens=False)
        except ValueError:
            return False
        return True


def available_backends(status: dict[str, str]) -> list[Any]:
    found: list[Any] = [LLGuidance()]
    if status["outlines-core"] == "ok":
        found.append(OutlinesCore())
    if status["xgrammar"] == "ok":
        found.append(XGrammar())
    return found

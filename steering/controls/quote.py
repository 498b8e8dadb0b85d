"""Quote only from a source: between quote marks the text must be a contiguous substring of the source.

How it works. A suffix automaton of the source's UTF-8 bytes recognises exactly its substrings; its
state after reading the quoted text so far says which bytes may come next. Every token is a byte
string, so a token is allowed when reading its bytes from the row's current state never fails:

- outside a quote any byte is fine, and the opening mark enters the automaton at its root;
- inside, a byte must have a transition, and the closing mark (allowed once the quote is non-empty)
  leaves the automaton; a token may close one quote and open the next.

Outside a quote the state carries no memory, so the outside mask is computed once. Inside, the allowed
tokens are found by walking a byte trie of the candidate tokens (those whose bytes, up to a closing
mark, occur anywhere in the source) alongside the automaton, which visits only the branches that still
match; masks are cached per automaton state. A row that ends (EOS, stop sequence or budget) inside an
open quote is "unfinished". Like every pool, `log p_base − log q` per token is the mass the mask kept,
so `Samples.log_weight` is the exact importance weight for p(x | every quote is from the source).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from steering.controls.base import LogitControlBase
from steering.controls.grammar import ll_tokenizer
from steering.errors import InvalidArgument

OUTSIDE = -1
FAIL = -2
_PENDING = -3  # a row whose prompt has not been read yet
_MASK_CACHE_SIZE = 4096


class SuffixAutomaton:
    """The minimal automaton of all substrings of `data` (bytes); state 0 is the empty string."""

    def __init__(self, data: bytes) -> None:
        self.next: list[dict[int, int]] = [{}]
        link, length = [-1], [0]
        last = 0
        for byte in data:
            current = len(self.next)
            self.next.append({})
            link.append(-1)
            length.append(length[last] + 1)
            state = last
            while state != -1 and byte not in self.next[state]:
                self.next[state][byte] = current
                state = link[state]
            if state == -1:
                link[current] = 0
            else:
                target = self.next[state][byte]
                if length[state] + 1 == length[target]:
                    link[current] = target
                else:
                    clone = len(self.next)
                    self.next.append(dict(self.next[target]))
                    link.append(link[target])
                    length.append(length[state] + 1)
                    while state != -1 and self.next[state].get(byte) == target:
                        self.next[state][byte] = clone
                        state = link[state]
                    link[target] = link[current] = clone
            last = current

    def walk(self, state: int, data: bytes) -> int:
        """The state after reading `data` from `state`, or FAIL."""
        for byte in data:
            state = self.next[state].get(byte, FAIL)
            if state == FAIL:
                return FAIL
        return state

    def contains(self, data: bytes) -> bool:
        return self.walk(0, data) != FAIL


_TOKEN_BYTES: dict[int, list[bytes | None]] = {}


def token_bytes(tokenizer: Any) -> list[bytes | None]:
    """Each token id's bytes (None for special tokens), built once per tokenizer."""
    key = id(tokenizer)
    if key not in _TOKEN_BYTES:
        ll = ll_tokenizer(tokenizer)
        _TOKEN_BYTES[key] = [
            None if ll.is_special_token(i) else ll.decode_bytes([i]) for i in range(ll.vocab_size)
        ]
    return _TOKEN_BYTES[key]


@dataclass
class _Trie:
    children: dict[int, _Trie] = field(default_factory=dict)
    ending: list[int] = field(default_factory=list)  # tokens whose bytes end here, still inside the quote
    closing: list[int] = field(default_factory=list)  # tokens that close the quote with this byte


def extract_quotes(text: str, *, open_mark: str = '"', close_mark: str = '"') -> list[str]:
    """The quoted spans of `text` (an unclosed last quote is returned too)."""
    quotes, inside, start = [], False, 0
    for index, char in enumerate(text):
        if not inside and char == open_mark:
            inside, start = True, index + 1
        elif inside and char == close_mark:
            quotes.append(text[start:index])
            inside = False
    if inside:
        quotes.append(text[start:])
    return quotes


@dataclass
class QuoteFromSource(LogitControlBase):
    """Between `open_mark` and `close_mark` the text must be a contiguous substring of `source`.

    Example: `QuoteFromSource(article, open_mark='"')` lets the model write freely but quote only what
    the article says. The marks are single ASCII characters (the same one by default); a quote must be
    non-empty, and the closing mark cannot occur inside a quote.
    """

    masks_only = True  # only sets tokens to −inf: the engine's exact fast path
    can_restart_row = False  # each row's state starts from the batch's prompts (read at the first step)
    can_select_rows = False

    source: str
    open_mark: str = '"'
    close_mark: str = '"'
    _automaton: SuffixAutomaton | None = field(default=None, init=False, repr=False)
    _tokens: list[bytes | None] = field(default_factory=list, init=False, repr=False)
    _trie: _Trie | None = field(default=None, init=False, repr=False)
    _outside_banned: torch.Tensor | None = field(default=None, init=False, repr=False)
    _inside_masks: dict[int, torch.Tensor] = field(default_factory=dict, init=False, repr=False)
    _tokenizer_id: int | None = field(default=None, init=False, repr=False)
    _states: list[int] = field(default_factory=list, init=False, repr=False)
    _consumed: list[int] = field(default_factory=list, init=False, repr=False)
    _prompt_width: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise InvalidArgument(
                "the source text to quote from is empty",
                received=repr(self.source)[:80],
                fix="pass the text that quotes must come from (e.g. --quote-from article.txt)",
            )
        for name, mark in (("open_mark", self.open_mark), ("close_mark", self.close_mark)):
            if not isinstance(mark, str) or len(mark) != 1 or not mark.isascii():
                raise InvalidArgument(
                    f"{name} must be one ASCII character", received=repr(mark), fix="use e.g. '\"'"
                )
        self._open = ord(self.open_mark)
        self._close = ord(self.close_mark)

    def __repr__(self) -> str:
        preview = self.source if len(self.source) <= 40 else self.source[:37] + "…"
        return f"QuoteFromSource({preview!r})"

    # -- the byte-level state machine ------------------------------------------------------------

    def advance(self, state: int, data: bytes) -> int:
        """The state after `data` (OUTSIDE, or the automaton state inside a quote), or FAIL."""
        automaton = self._automaton
        assert automaton is not None
        for byte in data:
            if state == OUTSIDE:
                if byte == self._open:
                    state = 0
            elif byte == self._close:
                if state == 0:
                    return FAIL  # an empty quote
                state = OUTSIDE
            else:
                state = automaton.next[state].get(byte, FAIL)
                if state == FAIL:
                    return FAIL
        return state

    def start(self, *, tokenizer: Any, prompt_width: int, batch_size: int) -> None:
        """Called by the engine before each batch: compile once per tokenizer, reset the rows."""
        if self._tokenizer_id != id(tokenizer):
            self._compile(token_bytes(tokenizer))
            self._tokenizer_id = id(tokenizer)
        self._states = [_PENDING] * batch_size
        self._consumed = [0] * batch_size
        self._prompt_width = prompt_width

    def _compile(self, tokens: list[bytes | None]) -> None:
        data = self.source.encode("utf-8")
        self._automaton = SuffixAutomaton(data)
        self._tokens = tokens
        self._inside_masks = {}
        banned = [
            i
            for i, text in enumerate(tokens)
            if text is not None and self._open in text and self.advance(OUTSIDE, text) == FAIL
        ]
        self._outside_banned = torch.tensor(banned, dtype=torch.long)
        root = _Trie()
        for token, text in enumerate(tokens):
            if not text:
                continue
            cut = text.find(self._close)
            inside = text if cut < 0 else text[:cut]
            if not self._automaton.contains(inside):
                continue
            if cut >= 0 and self.advance(OUTSIDE, text[cut + 1 :]) == FAIL:
                continue
            node = root
            for byte in inside:
                node = node.children.setdefault(byte, _Trie())
            (node.ending if cut < 0 else node.closing).append(token)
        self._trie = root

    def prompt_state(self, prompt_ids: Sequence[int]) -> int:
        """The state after the prompt: OUTSIDE, or inside the quote the prompt opened.

        Quotes earlier in the prompt are not checked (the prompt is given, not generated); an open quote
        at its end must be a prefix of something in the source so far, else no output can satisfy the
        constraint and this is an error.
        """
        data = b"".join(self._tokens[int(t)] or b"" for t in prompt_ids if int(t) < len(self._tokens))
        inside, start = False, 0
        for index, byte in enumerate(data):
            if not inside and byte == self._open:
                inside, start = True, index + 1
            elif inside and byte == self._close:
                inside = False
        if not inside:
            return OUTSIDE
        assert self._automaton is not None
        state = self._automaton.walk(0, data[start:])
        if state == FAIL:
            raise InvalidArgument(
                "the prompt ends inside a quote whose text so far does not occur in the source",
                received=data[start:].decode("utf-8", "replace")[:80],
                fix="end the prompt before the quote, or with the opening mark",
            )
        return state

    def allowed_inside(self, state: int) -> torch.Tensor:
        """Token ids allowed when the quote so far has brought the automaton to `state`."""
        cached = self._inside_masks.get(state)
        if cached is not None:
            return cached
        automaton, allowed = self._automaton, []
        assert automaton is not None and self._trie is not None
        stack = [(self._trie, state)]
        while stack:
            node, current = stack.pop()
            allowed.extend(node.ending)
            if current != 0:
                allowed.extend(node.closing)
            transitions = automaton.next[current]
            for byte, child in node.children.items():
                following = transitions.get(byte)
                if following is not None:
                    stack.append((child, following))
        result = torch.tensor(sorted(allowed), dtype=torch.long)
        if len(self._inside_masks) >= _MASK_CACHE_SIZE:
            self._inside_masks.clear()
        self._inside_masks[state] = result
        return result

    # -- the engine's hooks ----------------------------------------------------------------------

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._outside_banned is None or len(self._states) != scores.shape[0]:
            raise InvalidArgument(
                "QuoteFromSource was used before the engine prepared it",
                received="no start() call",
                fix="pass it to steering.generate (it calls start)",
            )
        out = scores.clone()
        for row, state in enumerate(self._states):
            if state == _PENDING:
                state = self._states[row] = self.prompt_state(input_ids[row, : self._prompt_width].tolist())
            if state == FAIL:
                continue  # cannot happen through the engine; such a row is not sampled from any more
            if state == OUTSIDE:
                out[row, self._outside_banned.to(scores.device)] = float("-inf")
            else:
                allowed = self.allowed_inside(state).to(scores.device)
                out[row] = float("-inf")
                out[row, allowed] = scores[row, allowed]
        return out

    def consume(self, generated: Sequence[int], *, row: int) -> None:
        """Advance the row's state over the newly sampled tokens."""
        while self._consumed[row] < len(generated):
            token = int(generated[self._consumed[row]])
            text = self._tokens[token] if token < len(self._tokens) else None
            state = self._states[row]
            if text is None:
                # Special tokens (EOS) carry no text: fine outside a quote, never inside one.
                self._states[row] = state if state == OUTSIDE else FAIL
            elif state != FAIL:
                self._states[row] = self.advance(state, text)
            self._consumed[row] += 1

    def accepts(self, generated: Sequence[int], *, row: int) -> bool:
        """The text may end here only outside a quote."""
        self.consume(generated, row=row)
        return self._states[row] == OUTSIDE

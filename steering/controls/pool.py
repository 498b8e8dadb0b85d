"""Token pools: restrict which tokens may be sampled, then renormalise — with the books kept exact.

Masking and renormalising does **not** sample from p(x | constraint): at each step it keeps the mass
of the allowed tokens, log Z_t = log Σ_{v allowed} p(v | prefix), and throws the rest away, so prefixes
that look fine locally but rarely complete are over-weighted. The engine records, per token,
log p_base − log q, which for a pure pool is exactly log Z_t; their sum is `Sample.log_weight`, the
importance weight of the sample under p(x | constraint) up to the normaliser. Self-normalised
weights therefore recover the exact conditional; `steering.controls.classify` computes it directly
for label sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from steering.controls.base import LogitControlBase
from steering.controls.trie import TrieNode, compile_trie, spelled_label_ids, validate_labels
from steering.errors import InvalidArgument

NEG_INF = float("-inf")


@dataclass
class Choices(LogitControlBase):
    """The output is exactly one of `labels` (multi-token labels through a token trie).

    Labels are matched on their canonical tokenisation as a continuation (`" positive"` usually starts
    with a space). When one label is a token prefix of another, pass `end` (e.g. "\\n") so that each
    label is a complete answer; generation then ends once a full label (+ end) is produced, with stop
    reason "stop". A row only starts labels it can finish in its remaining budget (`set_budget`); when
    no label fits the budget at all, the sample runs out of `max_new_tokens` and is "unfinished".
    """

    masks_only = True  # only sets tokens to −inf: the engine's exact fast path
    decides_completion = True  # a whole label ends the row
    # Each row's trie position is read from its tokens after the batch's prompt width, which a refilled
    # row does not share: batches stay fixed. Nor is it offered to SMC as a proposal.
    can_restart_row = False
    can_select_rows = False

    labels: Sequence[str]
    end: str | None = None
    _trie: TrieNode | None = field(default=None, init=False, repr=False)
    _tokenizer_id: int | None = field(default=None, init=False, repr=False)
    _prompt_width: int = field(default=0, init=False, repr=False)
    _budgets: list[int | None] = field(default_factory=list, init=False, repr=False)
    _depths: dict[int, int] = field(default_factory=dict, init=False, repr=False)  # id(node) → tokens left

    def __post_init__(self) -> None:
        self.labels = validate_labels(self.labels)

    def start(self, *, tokenizer: Any, prompt_width: int, batch_size: int) -> None:
        """Called by the engine before each batch: compile the trie once per tokenizer."""
        if self._tokenizer_id != id(tokenizer):
            sequences = spelled_label_ids(tokenizer, self.labels, end=self.end)
            self._trie = compile_trie(
                sequences,
                self.labels,
                what="label",
                fix='pass end="\\n" (or the text that follows an answer)',
            )
            self._tokenizer_id = id(tokenizer)
            self._depths = {}
            _fill_depths(self._trie, self._depths)
        self._prompt_width = prompt_width
        self._budgets = [None] * batch_size

    def set_budget(self, row: int, *, budget: int | None) -> None:
        """Row `row` may sample `budget` tokens: it only starts labels it can finish in time."""
        self._budgets[row] = budget

    def _node(self, generated: Sequence[int]) -> TrieNode | None:
        node = self._trie
        for token in generated:
            if node is None:
                return None
            node = node.children.get(int(token))
        return node

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._trie is None:
            raise InvalidArgument(
                "Choices was used before the engine compiled it",
                received="no start() call",
                fix="pass it to steering.generate (it calls start) rather than calling it directly",
            )
        masked = torch.full_like(scores, NEG_INF)
        for row in range(scores.shape[0]):
            generated = input_ids[row, self._prompt_width :].tolist()
            node = self._node(generated)
            if node is None or not node.children:
                masked[row] = scores[row]  # finished or off-trie rows are not sampled from any more
                continue
            children = list(node.children)
            budget = self._budgets[row] if row < len(self._budgets) else None
            if budget is not None:  # only labels that end within the tokens left (all, if none does)
                left = budget - len(generated) - 1
                children = [t for t in children if self._depths[id(node.children[t])] <= left] or children
            allowed = torch.tensor(children, device=scores.device)
            masked[row, allowed] = scores[row, allowed]
        return masked

    def is_complete(self, generated: Sequence[int], *, row: int = 0) -> bool:
        """True once `generated` spells a whole label (+ end)."""
        node = self._node(generated)
        return node is not None and node.label is not None


def _fill_depths(node: TrieNode, depths: dict[int, int]) -> int:
    """Tokens from `node` to the nearest label end, for every node under it (into `depths`)."""
    nearest = [_fill_depths(child, depths) + 1 for child in node.children.values()]
    depths[id(node)] = 0 if node.label is not None else min(nearest)
    return depths[id(node)]


@dataclass
class ForcedSpan(LogitControlBase):
    """After `trigger` appears in the generated text, the next span must be one of `allowed`; then
    free text resumes (e.g. a Markdown link title after "[", or a known name after "Title:").

    The trigger must end on a token boundary (it is looked for in the decoded text after every token,
    and at the end of the prompt); the allowed strings are matched on their canonical tokenisation and
    must not be token prefixes of one another (add a closing character such as "]" to each to make them
    so). Each row keeps its own state, advanced once per sampled token.
    """

    masks_only = True  # only sets tokens to −inf: the engine's exact fast path
    can_restart_row = False  # per-row span state without a restart: batches stay fixed
    can_select_rows = False

    trigger: str
    allowed: Sequence[str]
    _trie: TrieNode | None = field(default=None, init=False, repr=False)
    _tokenizer: Any = field(default=None, init=False, repr=False)
    _prompt_width: int = field(default=0, init=False, repr=False)
    _nodes: list[TrieNode | None] = field(default_factory=list, init=False, repr=False)
    _free_from: list[int] = field(default_factory=list, init=False, repr=False)
    _consumed: list[int] = field(default_factory=list, init=False, repr=False)
    _pending: list[bool] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.trigger, str) or not self.trigger:
            raise InvalidArgument(
                "the trigger must be a non-empty string", received=self.trigger, fix='use e.g. "["'
            )
        self.allowed = validate_labels(self.allowed)
        # Enough trailing tokens to contain the trigger: every token but a special one has ≥ 1 byte.
        self._window = len(self.trigger.encode("utf-8")) + 1

    def start(self, *, tokenizer: Any, prompt_width: int, batch_size: int) -> None:
        if self._tokenizer is not tokenizer:
            sequences = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in self.allowed]
            self._trie = compile_trie(
                sequences,
                self.allowed,
                what="allowed span",
                fix='end each allowed span with a closing character, e.g. "Paris]"',
            )
            self._tokenizer = tokenizer
        self._prompt_width = prompt_width
        self._nodes = [None] * batch_size  # the open span's trie node, or None in free text
        self._free_from = [0] * batch_size  # where the current free text starts
        self._consumed = [0] * batch_size
        self._pending = [True] * batch_size  # the prompt's end has not been looked at yet

    def _ends_with_trigger(self, tokens: Sequence[int]) -> bool:
        text = self._tokenizer.decode(list(tokens[-self._window :]), skip_special_tokens=True)
        return bool(text.endswith(self.trigger))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._trie is None or len(self._nodes) != scores.shape[0]:
            raise InvalidArgument(
                "ForcedSpan was used before the engine compiled it",
                received="no start() call",
                fix="pass it to generate",
            )
        out = scores
        for row in range(scores.shape[0]):
            if self._pending[row]:
                self._pending[row] = False
                if self._ends_with_trigger(input_ids[row, : self._prompt_width].tolist()):
                    self._nodes[row] = self._trie
            node = self._nodes[row]
            if node is None:
                continue
            if out is scores:
                out = scores.clone()
            allowed = torch.tensor(list(node.children), device=scores.device)
            keep = out[row, allowed].clone()
            out[row] = float("-inf")
            out[row, allowed] = keep
        return out

    def consume(self, generated: Sequence[int], *, row: int) -> None:
        """Advance the row over the new tokens: walk the open span, or look for the trigger."""
        while self._consumed[row] < len(generated):
            position = self._consumed[row]
            node = self._nodes[row]
            if node is not None:
                child = node.children.get(int(generated[position]))
                if child is None or not child.children:  # the span closed: free text from the next token
                    self._nodes[row], self._free_from[row] = None, position + 1
                else:
                    self._nodes[row] = child
            elif self._ends_with_trigger(generated[self._free_from[row] : position + 1]):
                self._nodes[row] = self._trie
            self._consumed[row] += 1


def resolve_positions(spans: Any, tokenizer: Any, *, what: str) -> dict[int, int]:
    """{position: text or token ids} → {position: token id}, one entry per token.

    Positions count generated tokens from 0. A text is tokenised as a continuation (no special tokens)
    and its tokens fill consecutive positions from the one given.
    """
    if not isinstance(spans, dict) or not spans:
        raise InvalidArgument(
            f"{what} needs a non-empty mapping of positions to tokens",
            received=repr(spans)[:80],
            fix='use e.g. {4: " dragon"} (the 5th generated token onwards)',
        )
    resolved: dict[int, int] = {}
    for position, value in spans.items():
        if not isinstance(position, int) or isinstance(position, bool) or position < 0:
            raise InvalidArgument(
                f"{what}: positions are non-negative integers (0 = the first generated token)",
                received=repr(position),
                fix="use e.g. {4: ' dragon'}",
            )
        if isinstance(value, str):
            if not value:
                raise InvalidArgument(
                    f"{what}: empty text at position {position}", received="''", fix="remove it"
                )
            ids = list(tokenizer(value, add_special_tokens=False)["input_ids"])
        elif isinstance(value, int) and not isinstance(value, bool):
            ids = [value]
        elif isinstance(value, Sequence) and value and all(isinstance(v, int) for v in value):
            ids = list(value)
        else:
            raise InvalidArgument(
                f"{what}: position {position} needs text or token ids",
                received=repr(value)[:80],
                fix="use a string or a list of token ids",
            )
        for offset, token in enumerate(ids):
            if position + offset in resolved:
                raise InvalidArgument(
                    f"{what}: two spans claim generated position {position + offset}",
                    received=spans,
                    fix="make the spans not overlap (a text may take several tokens)",
                )
            resolved[position + offset] = int(token)
    return resolved


@dataclass
class ForceTokens(LogitControlBase):
    """At given generated positions only the given token may be sampled (an infill proposal).

    `positions` maps a generated position (0 = first new token) to a text or token ids; a text takes
    as many consecutive positions as it has tokens. Before the last forced position EOS is masked too
    (a text that ended there could not satisfy the condition). The kept mass at each step is in
    log p_base − log q (at a forced position, log p(y_t | prefix)), so `Sample.log_weight` is the exact
    importance weight of the sample under p(x | x_S = y_S).

    With `strength=λ` the tokens are boosted instead of forced: log q gains λ on y_t at each fixed
    position (EOS is not masked). That is the proposal for the soft target p(x)·exp(λ·Σ_{t∈S} δ(x_t, y_t))
    (`fixed_tokens(spans, strength=λ)`, the seeds' "prompt as reward"), whose λ → ∞ limit is the force.
    """

    positions: dict[int, Any]
    strength: float | None = None

    @property
    def masks_only(self) -> bool:
        """Forcing only masks; a boost (strength) changes the kept scores."""
        return self.strength is None

    _ids: dict[int, int] = field(default_factory=dict, init=False, repr=False)
    _lengths: list[int] = field(default_factory=list, init=False, repr=False)
    _eos: list[int] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.strength is not None and (
            not isinstance(self.strength, (int, float))
            or isinstance(self.strength, bool)
            or self.strength < 0
        ):
            raise InvalidArgument(
                "ForceTokens strength must be a non-negative number (None forces the tokens)",
                received=self.strength,
                fix="use e.g. strength=4.0, or leave it out",
            )

    def start(self, *, tokenizer: Any, prompt_width: int, batch_size: int) -> None:
        self._ids = resolve_positions(self.positions, tokenizer, what="ForceTokens")
        self._lengths = [0] * batch_size
        eos = getattr(tokenizer, "eos_token_id", None)
        self._eos = [eos] if isinstance(eos, int) else []

    def restart_row(self, row: int, *, prompt_ids: Sequence[int]) -> None:
        """A new prompt in row `row`: nothing generated yet."""
        self._lengths[row] = 0

    def select_rows(self, indices: Sequence[int]) -> None:
        """SMC resampled the batch: row j continues row indices[j]."""
        self._lengths = [self._lengths[i] for i in indices]

    def consume(self, generated: Sequence[int], *, row: int) -> None:
        self._lengths[row] = len(generated)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if len(self._lengths) != scores.shape[0]:
            raise InvalidArgument(
                "ForceTokens was used before the engine prepared it",
                received=f"{len(self._lengths)} rows tracked for {scores.shape[0]}",
                fix="pass it to steering.generate or a conditioning sampler",
            )
        last = max(self._ids)
        forced = [(row, self._ids[n]) for row, n in enumerate(self._lengths) if n in self._ids]
        if self.strength is not None:
            if not forced:
                return scores
            out = scores.clone()
            for row, token in forced:
                out[row, token] += self.strength
            return out
        early = [row for row, n in enumerate(self._lengths) if n < last and n not in self._ids]
        if not forced and not (early and self._eos):
            return scores
        out = scores.clone()
        for row, token in forced:
            kept = out[row, token].clone()
            out[row].fill_(NEG_INF)
            out[row, token] = kept
        if early and self._eos:
            out[torch.tensor(early)[:, None], torch.tensor(self._eos)[None, :]] = NEG_INF
        return out

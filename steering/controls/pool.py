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

from steering.controls.classify import _validate_labels
from steering.errors import InvalidArgument

NEG_INF = float("-inf")


@dataclass
class _TrieNode:
    children: dict[int, _TrieNode] = field(default_factory=dict)
    label: int | None = None  # index of the label that ends here


def _build_trie(sequences: Sequence[Sequence[int]]) -> _TrieNode:
    root = _TrieNode()
    for index, tokens in enumerate(sequences):
        node = root
        for token in tokens:
            node = node.children.setdefault(token, _TrieNode())
        node.label = index
    return root


@dataclass
class Choices:
    """The output is exactly one of `labels` (multi-token labels through a token trie).

    Labels are matched on their canonical tokenisation as a continuation (`" positive"` usually starts
    with a space). When one label is a token prefix of another, pass `end` (e.g. "\\n") so that each
    label is a complete answer; generation then ends once a full label (+ end) is produced, with stop
    reason "stop". A sample that runs out of `max_new_tokens` first is marked "unfinished".
    """

    labels: Sequence[str]
    end: str | None = None
    _trie: _TrieNode | None = field(default=None, init=False, repr=False)
    _tokenizer_id: int | None = field(default=None, init=False, repr=False)
    _prompt_width: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self.labels = _validate_labels(self.labels)

    def start(self, *, tokenizer: Any, prompt_width: int, batch_size: int) -> None:
        """Called by the engine before each batch: compile the trie once per tokenizer."""
        if self._tokenizer_id != id(tokenizer):
            sequences = [
                tokenizer(label + (self.end or ""), add_special_tokens=False)["input_ids"]
                for label in self.labels
            ]
            for i, a in enumerate(sequences):
                for j, b in enumerate(sequences):
                    if i != j and len(a) <= len(b) and b[: len(a)] == a:
                        raise InvalidArgument(
                            f"label {self.labels[i]!r} is a token prefix of {self.labels[j]!r}, so the output "
                            "could not tell where a label ends",
                            received=list(self.labels),
                            fix='pass end="\\n" (or the text that follows an answer)',
                        )
            self._trie = _build_trie(sequences)
            self._tokenizer_id = id(tokenizer)
        self._prompt_width = prompt_width

    def _node(self, generated: Sequence[int]) -> _TrieNode | None:
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
            node = self._node(input_ids[row, self._prompt_width :].tolist())
            if node is None or not node.children:
                masked[row] = scores[row]  # finished or off-trie rows are not sampled from any more
                continue
            allowed = torch.tensor(list(node.children), device=scores.device)
            masked[row, allowed] = scores[row, allowed]
        return masked

    def is_complete(self, generated: Sequence[int], *, row: int = 0) -> bool:
        """True once `generated` spells a whole label (+ end)."""
        node = self._node(generated)
        return node is not None and node.label is not None

    def label_of(self, generated: Sequence[int]) -> str | None:
        node = self._node(generated)
        return None if node is None or node.label is None else self.labels[node.label]


@dataclass
class ForcedSpan:
    """After `trigger` appears in the generated text, the next span must be one of `allowed`; then
    free text resumes (e.g. a Markdown link title after "[", or a known name after "Title:").

    The trigger must end on a token boundary (it is checked on the decoded text after every token);
    the allowed strings are matched on their canonical tokenisation and must not be token prefixes of
    one another (add a closing character such as "]" to each to make them so).
    """

    trigger: str
    allowed: Sequence[str]
    _trie: _TrieNode | None = field(default=None, init=False, repr=False)
    _tokenizer: Any = field(default=None, init=False, repr=False)
    _prompt_width: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.trigger, str) or not self.trigger:
            raise InvalidArgument(
                "the trigger must be a non-empty string", received=self.trigger, fix='use e.g. "["'
            )
        self.allowed = _validate_labels(self.allowed)

    def start(self, *, tokenizer: Any, prompt_width: int, batch_size: int) -> None:
        if self._tokenizer is not tokenizer:
            sequences = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in self.allowed]
            for i, a in enumerate(sequences):
                for j, b in enumerate(sequences):
                    if i != j and len(a) <= len(b) and b[: len(a)] == a:
                        raise InvalidArgument(
                            f"allowed span {self.allowed[i]!r} is a token prefix of {self.allowed[j]!r}",
                            received=list(self.allowed),
                            fix='end each allowed span with a closing character, e.g. "Paris]"',
                        )
            self._trie = _build_trie(sequences)
            self._tokenizer = tokenizer
        self._prompt_width = prompt_width

    def _span_node(self, generated: list[int], *, open_at_start: bool) -> _TrieNode | None:
        """The trie node of the open span, or None when no span is open.

        Scans the generated tokens: free text until its decoded form ends with the trigger, then a
        span walked through the trie, then free text again. O(T²) decodes per call: fine for the short
        generations this is meant for.
        """
        text_end, position, opened = 0, 0, open_at_start
        while True:
            if opened:
                node, span = self._trie, position
                while span < len(generated) and node is not None and node.children:
                    node = node.children.get(generated[span])
                    span += 1
                if span == len(generated) and node is not None and node.children:
                    return node  # inside a span that is not finished yet
                text_end = position = span  # the span closed (or left the trie): free text again
                opened = False
            if position >= len(generated):
                return None
            position += 1
            text = self._tokenizer.decode(generated[text_end:position], skip_special_tokens=True)
            opened = text.endswith(self.trigger)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._trie is None:
            raise InvalidArgument(
                "ForcedSpan was used before the engine compiled it",
                received="no start() call",
                fix="pass it to generate",
            )
        out = scores
        tail = max(self._prompt_width - 8, 0)
        for row in range(scores.shape[0]):
            prompt_tail = self._tokenizer.decode(
                input_ids[row, tail : self._prompt_width].tolist(), skip_special_tokens=True
            )
            node = self._span_node(
                input_ids[row, self._prompt_width :].tolist(),
                open_at_start=prompt_tail.endswith(self.trigger),
            )
            if node is None:
                continue
            if out is scores:
                out = scores.clone()
            allowed = torch.tensor(list(node.children), device=scores.device)
            keep = out[row, allowed].clone()
            out[row] = float("-inf")
            out[row, allowed] = keep
        return out

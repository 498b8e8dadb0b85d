"""Probability tweaks: add to the logits of chosen tokens or words (the seeds' "boost a bag of words").

They change the distribution, not the support, so every sample still has exact `logq` and the KL to
the base model is measured like for any control.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from steering.controls.base import LogitControlBase
from steering.errors import InvalidArgument
from steering.jsonl import read_text


def word_first_tokens(tokenizer: Any, word: str) -> set[int]:
    """First token of each tokenisation of `word`: as written, with a leading space, and without one.

    A tokenisation counts only when its tokens spell the word back (spaces aside): a tokenizer that
    drops characters it cannot spell would otherwise have " xyz" bias the bare space token.
    """
    variants = {word, " " + word.lstrip(), word.lstrip()}
    firsts = set()
    for variant in variants:
        ids = tokenizer(variant, add_special_tokens=False)["input_ids"]
        if ids and tokenizer.decode(ids).strip() == variant.strip():
            firsts.add(int(ids[0]))
    return firsts


def _check_strength(value: float, what: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidArgument(
            f"{what} must be a finite number", received=value, fix="use e.g. 2.0 (or -5 to discourage)"
        )
    return float(value)


@dataclass
class LogitBias(LogitControlBase):
    """Add a bias to chosen tokens: keys are token ids or words (a word biases the first token of each
    of its tokenisations, with and without a leading space).

    Example: `LogitBias({"Paris": 4.0, 1234: -10.0})`.
    """

    bias: Mapping[str | int, float]
    _vector: torch.Tensor | None = field(default=None, init=False, repr=False)
    _tokenizer_id: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.bias:
            raise InvalidArgument(
                "LogitBias needs at least one token or word", received={}, fix='use e.g. {"yes": 2.0}'
            )
        for key, value in self.bias.items():
            _check_strength(value, f"the bias of {key!r}")
            if isinstance(key, str) and not key.strip():
                raise InvalidArgument("a biased word is empty", received=repr(key), fix="remove it")

    def start(self, *, tokenizer: Any, prompt_width: int, batch_size: int) -> None:
        """Build the bias vector once per tokenizer (no per-row state: rows restart freely)."""
        if self._tokenizer_id == id(tokenizer):
            return
        size = max(len(tokenizer), max((k for k in self.bias if isinstance(k, int)), default=0) + 1)
        vector = torch.zeros(size)
        for key, value in self.bias.items():
            if isinstance(key, int):
                if key < 0:
                    raise InvalidArgument("token ids are non-negative", received=key, fix="check the id")
                vector[key] += value
            else:
                tokens = word_first_tokens(tokenizer, key)
                if (
                    not tokens
                ):  # the tokenizer cannot spell it: the bias would do nothing, or hit another token
                    raise InvalidArgument(
                        f"the biased word {key!r} has no tokens in this model's vocabulary "
                        "(the tokenizer cannot spell it)",
                        received=key,
                        fix="use words this model's tokenizer can spell, or remove it",
                    )
                for token in tokens:
                    vector[token] += value
        self._vector = vector
        self._tokenizer_id = id(tokenizer)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._vector is None:
            raise InvalidArgument(
                "LogitBias was used before the engine compiled it",
                received="no start() call",
                fix="pass it to generate",
            )
        vocab = scores.shape[-1]
        if self._vector.numel() > vocab:
            raise InvalidArgument(
                "a biased token id is outside the model's vocabulary",
                received=f"largest id {self._vector.numel() - 1}, vocabulary {vocab}",
                fix="use ids below the vocabulary size",
            )
        vector = torch.nn.functional.pad(self._vector, (0, vocab - self._vector.numel())).to(scores.device)
        return scores + vector


def BagOfWords(words: Sequence[str], strength: float) -> LogitBias:
    """Add `strength` to the first tokens of every listed word (both space variants)."""
    if isinstance(words, str) or not words:
        raise InvalidArgument(
            "a bag of words needs at least one word", received=words, fix='pass e.g. ["happy", "joy"]'
        )
    _check_strength(strength, "the bag-of-words strength")
    return LogitBias({word: strength for word in words})


def load_words(path: str) -> list[str]:
    """Words from a text file, one per line (blank lines and `#` comments skipped)."""
    lines = [line.strip() for line in read_text(path, what="word list").splitlines()]
    words = [w for w in lines if w and not w.startswith("#")]
    if not words:
        raise InvalidArgument(
            f"the word list {path} has no words ({len(lines)} lines, all blank or # comments)",
            received=path,
            fix="put one word per line",
        )
    return words

"""Potentials: what a target multiplies the base distribution by.

A potential scores whole completions: `log_potential(prompts, completions) -> list[float]`. A hard
potential is a predicate (log φ = 0 where it holds, −inf where it fails); a soft one is r(x)/β from a
reward callable `(prompts, completions) -> list[float]`, the KL-regularised target π(x)·exp(r(x)/β).
A potential may also judge prefixes (`prefix_ok`): a hard predicate that can already fail on a prefix
lets samplers prune early. A potential on token ids (`fixed_tokens`: x_i = y_i at chosen positions)
defines `log_potential_ids` and `prefix_ok_ids` instead, and is bound to the model's tokenizer by the
`Target`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from steering.controls.pool import resolve_positions
from steering.errors import InvalidArgument
from steering.rewards import RewardFn, checked_rewards

NEG_INF = float("-inf")


@runtime_checkable
class Potential(Protocol):
    """log φ of whole completions; `hard` potentials take only the values 0 and −inf."""

    @property
    def hard(self) -> bool: ...

    def log_potential(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]: ...


def _nonempty(text: str, what: str) -> str:
    if not isinstance(text, str) or not text:
        raise InvalidArgument(
            f"{what} needs a non-empty string", received=repr(text), fix='use e.g. "ever after"'
        )
    return text


@dataclass(frozen=True)
class Predicate:
    """A hard potential from a function of the completion text."""

    name: str
    holds: Callable[[str], bool]
    prefix: Callable[[str], bool] | None = field(default=None, compare=False)
    suffix: str | None = None  # set by ends_with: samplers may close completions with it
    hard: bool = field(default=True, init=False)

    def log_potential(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        return [0.0 if self.holds(text) else NEG_INF for text in completions]

    def prefix_ok(self, prefix: str) -> bool:
        """False when no completion starting with `prefix` can satisfy the predicate."""
        return True if self.prefix is None else self.prefix(prefix)

    def __repr__(self) -> str:
        return self.name


def starts_with(text: str) -> Predicate:
    _nonempty(text, "starts_with")
    return Predicate(
        f"starts_with({text!r})",
        lambda x: x.startswith(text),
        lambda x: x.startswith(text) or text.startswith(x),
    )


def ends_with(text: str) -> Predicate:
    _nonempty(text, "ends_with")
    return Predicate(f"ends_with({text!r})", lambda x: x.endswith(text), suffix=text)


def contains(text: str) -> Predicate:
    _nonempty(text, "contains")
    return Predicate(f"contains({text!r})", lambda x: text in x)


def matches(pattern: str) -> Predicate:
    """The whole completion matches the regular expression (Python `re.fullmatch`)."""
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise InvalidArgument(
            f"the regex is not valid at position {error.pos}: {error.msg}", received=pattern, fix="correct it"
        ) from error
    return Predicate(f"matches({pattern!r})", lambda x: compiled.fullmatch(x) is not None)


def length_between(low: int, high: int) -> Predicate:
    """The completion has between `low` and `high` characters."""
    if not 0 <= low <= high:
        raise InvalidArgument(
            "length bounds need 0 ≤ low ≤ high", received=(low, high), fix="use e.g. (10, 80)"
        )
    return Predicate(
        f"length_between({low}, {high})", lambda x: low <= len(x) <= high, lambda x: len(x) <= high
    )


def classifier_at_least(score: RewardFn, threshold: float, *, name: str = "classifier") -> Predicate:
    """Hard: the classifier's score of the completion is at least `threshold`."""

    def holds(text: str) -> bool:
        return checked_rewards(score, [""], [text], name=name)[0] >= threshold

    return Predicate(f"{name} ≥ {threshold}", holds)


@dataclass(frozen=True)
class FixedTokens:
    """Hard, on token ids: the generated token at each position in `ids` is that token.

    Build it with `fixed_tokens`; the `Target` binds it to the model's tokenizer.
    """

    spans: dict[int, Any]
    ids: dict[int, int] = field(default_factory=dict)
    strength: float | None = None

    @property
    def hard(self) -> bool:
        return self.strength is None

    def bind(self, tokenizer: Any) -> FixedTokens:
        ids = resolve_positions(self.spans, tokenizer, what="fixed_tokens")
        return FixedTokens(self.spans, ids, self.strength)

    def log_potential(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        raise InvalidArgument(
            "fixed_tokens judges token ids, not text",
            received=f"{len(completions)} texts",
            fix="score it through a Target (it passes the token ids)",
        )

    def log_potential_ids(self, token_ids: Sequence[Sequence[int]]) -> list[float]:
        if self.strength is not None:  # soft: λ per matching position
            return [self.strength * self.matches(ids) for ids in token_ids]
        return [0.0 if self._holds(ids, complete=True) else NEG_INF for ids in token_ids]

    def matches(self, ids: Sequence[int]) -> int:
        """How many fixed positions `ids` gets right."""
        return sum(
            1 for position, token in self.ids.items() if position < len(ids) and ids[position] == token
        )

    def prefix_ok_ids(self, ids: Sequence[int]) -> bool:
        return self.strength is not None or self._holds(ids, complete=False)

    def _holds(self, ids: Sequence[int], *, complete: bool) -> bool:
        for position, token in self.ids.items():
            if position < len(ids):
                if ids[position] != token:
                    return False
            elif complete:
                return False  # the completion ended before a fixed position
        return True

    def __repr__(self) -> str:
        strength = "" if self.strength is None else f", strength={self.strength:g}"
        return f"fixed_tokens({self.spans!r}{strength})"


def fixed_tokens(spans: dict[int, Any], *, strength: float | None = None) -> FixedTokens:
    """x_i = y_i at chosen generated positions: {position: text or token ids} (0 = first new token).

    A text takes as many consecutive positions as it has tokens (its canonical tokenisation). This is
    a prompt as a condition that fixes tokens at positions (Jermyn, "Conditioning, Prompts, and
    Fine-Tuning", 2022); a prefix is {0: text}, an infill puts the text in the middle. `ForceTokens(spans)` is the matching proposal (it forces those tokens and weights by
    their probability).

    With `strength=λ` the potential is soft, exp(λ · #matching positions): the prompt as a reward.
    As λ grows the target approaches the hard condition (see `prompt_as_reward`).
    """
    if strength is not None and (
        not isinstance(strength, (int, float)) or isinstance(strength, bool) or strength < 0
    ):
        raise InvalidArgument(
            "fixed_tokens strength must be a non-negative number (None = the hard condition)",
            received=strength,
            fix="use e.g. strength=4.0",
        )
    if not isinstance(spans, dict) or not spans:
        raise InvalidArgument(
            "fixed_tokens needs a non-empty mapping of positions to tokens",
            received=repr(spans)[:80],
            fix='use e.g. {4: " dragon"}',
        )
    return FixedTokens(dict(spans), strength=None if strength is None else float(strength))


@dataclass(frozen=True)
class Reward:
    """Soft potential r(x)/β from a reward callable; β is set by the Target."""

    fn: RewardFn
    beta: float = 1.0
    name: str = "reward"
    hard: bool = field(default=False, init=False)

    def log_potential(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        return [r / self.beta for r in checked_rewards(self.fn, prompts, completions, name=self.name)]

    def __repr__(self) -> str:
        return f"exp({self.name}/{self.beta:g})"

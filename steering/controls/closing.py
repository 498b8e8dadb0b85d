"""Finishing a grammar inside its token budget: a closing plan per row, and the tokens that keep one.

An exact pool with no budget awareness lets a model repeat a key, a string or the digits of a number
until `max_new_tokens` runs out, and the sample is cut. Here every row of a llguidance grammar knows
its remaining budget r (the tokens it may still sample, this one included) and its *closing plan*:
the tokens a fixed greedy policy would sample from the current state to reach a state where the
grammar can only stop. Its length g is an upper bound on what closing takes.

The policy, at each state: the forced tokens if llguidance has any (`compute_ff_tokens`); else the
first closer the matcher accepts (EOS, `"}`, `"]`, `}}`, `]}`, `}]`, `"`, `}`, `]`, `)`, in that
order); else, of the other tokens it accepts, the one this plan has chosen least, ties broken by a
fixed priority list (`'`, `>`, `;`, `,`, `:`, …, digits, literals, openers, printable ASCII). Counting
keeps a plan out of loops (`0000…` inside a string whose pattern wants digits then a unit turns into
`0123456789d`); closers are not counted (up to 32 uses), so nested objects close one `}` after another.

The mask: far from the end (r > g + horizon) the grammar's tokens, unchanged. Near it, only tokens t
whose state after t still has a plan that fits, g(t) ≤ r − 1, each checked by consuming it, planning
and rolling back. Checked are all the grammar's tokens when they are few (a structural choice), else
the priority tokens among them (inside a string or number: closing now, or one more short token).
The row keeps its plan while it follows it, and the plan's next token is kept when no other token
fits, so a row that enters the last stretch with a plan that fits finishes within its budget; one
token of the loose stretch can only defeat that by opening, in one token, structure that takes more
than the horizon to close. A row whose plan does not fit (or whose policy finds none) keeps the
grammar's mask: it ends "unfinished", as before.

The mask is a function of the row's tokens and budget (the plan from a state is a function of that
state; a followed plan, of the tokens since it was made): the same row gets the same mask whatever
batch it is in, refilled or not, so the books stay exact — log q is read from the restricted,
renormalised distribution actually sampled from.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import numpy as np

from steering.controls.json_keys import KeyTracker

HORIZON = 16  # tokens of slack before the plan is enforced
CLOSER_USES = 32  # a closer chosen this often in one plan is counted like any token (a loop of quotes)
FEW = 64  # a mask with at most this many tokens is checked token by token

# Closers first, then what starts the cheapest values, then everything printable.
_CLOSERS = ('"}', '"]', "}}", "]}", "}]", '"', "}", "]", ")", "'", ">", ";", ",", ":", "!", "?", ".", "\n")
_STARTERS = (".", "-", "e", "+", "true", "false", "null", "t", "f", "n", "{", "[", "(")
_PRIORITY_TEXTS = (
    *_CLOSERS,
    *string.digits,
    *_STARTERS,
    *(string.ascii_lowercase + string.ascii_uppercase + string.punctuation + " "),
)


def priority_tokens(ll_tokenizer: Any, texts: Sequence[str] = _PRIORITY_TEXTS) -> list[int]:
    """EOS, then each of `texts` that is a single token of this tokenizer, in order, once each."""
    tokens = [int(t) for t in ll_tokenizer.eos_tokens] or [int(ll_tokenizer.eos_token)]
    for text in texts:
        ids = ll_tokenizer.tokenize_str(text)
        if len(ids) == 1 and int(ids[0]) not in tokens:
            tokens.append(int(ids[0]))
    return tokens


class ClosingPlanner:
    """Closing plans for llguidance matchers, and the budget-restricted set of a row's tokens."""

    def __init__(self, ll_tokenizer: Any, token_bytes: list[bytes], *, horizon: int = HORIZON) -> None:
        self.priority = priority_tokens(ll_tokenizer)
        self.closers = set(priority_tokens(ll_tokenizer, _CLOSERS[:9]))  # EOS, JSON's brackets and quote
        self.token_bytes = token_bytes  # every token's bytes (to follow JSON keys along a plan)
        self.priority_array = np.asarray(self.priority, dtype=np.int64)
        self.horizon = horizon

    def plan(self, matcher: Any, limit: int, keys: KeyTracker | None = None) -> list[int] | None:
        """The greedy policy's tokens from the matcher's state to a stopped one, or None when it
        takes more than `limit` tokens or finds no token. The matcher is left as it was.

        Args:
            matcher: the row's matcher.
            limit: the most tokens the plan may take.
            keys: the row's JSON keys (with `unique_keys`): the plan repeats no key either.
        """
        path: list[int] = []
        uses: dict[int, int] = {}
        keys = keys.copy() if keys is not None else None
        try:
            while not matcher.is_stopped():
                if matcher.is_error() or len(path) >= limit:
                    return None
                step = [int(t) for t in matcher.compute_ff_tokens()]
                if not step:  # a choice: counted, so that the plan does not go round in a loop
                    step = self._next(matcher, uses, keys)
                    uses.update({t: uses.get(t, 0) + 1 for t in step})
                accepted = matcher.try_consume_tokens(step) if step else 0
                if accepted == 0:
                    return None
                path.extend(step[:accepted])
                if keys is not None:
                    for token in step[:accepted]:
                        keys.feed(self.token_bytes[token])
            return path if len(path) <= limit else None
        finally:
            if path:
                matcher.rollback(len(path))

    def _next(self, matcher: Any, uses: dict[int, int], keys: KeyTracker | None) -> list[int]:
        """The first accepted closer (while used fewer than `CLOSER_USES` times in this plan); else the
        accepted token this plan has chosen least, the first in priority order among equals."""
        best: tuple[int, int] | None = None  # (uses, token)
        for token in self.priority:
            closer = token in self.closers and uses.get(token, 0) < CLOSER_USES
            if best is not None and best[0] == 0 and not closer:
                break  # closers come first in the priority list; an unused token is as good as it gets
            if matcher.validate_tokens([token]) != 1:
                continue
            if keys is not None and keys.repeats_key(self.token_bytes[token]):
                continue
            if closer:
                return [token]
            if best is None or uses.get(token, 0) < best[0]:
                best = (uses.get(token, 0), token)
        return [] if best is None else [best[1]]

    def fits(self, matcher: Any, token: int, limit: int, keys: KeyTracker | None = None) -> bool:
        """Whether the state after `token` has a plan of at most `limit` tokens."""
        if not matcher.consume_token(token):
            return False  # an error state: the matcher cannot be rolled back out of it
        after = None
        if keys is not None:
            after = keys.copy()
            after.feed(self.token_bytes[token])
        try:
            return self.plan(matcher, limit, after) is not None
        finally:
            matcher.rollback(1)

    def restrict(
        self,
        matcher: Any,
        allowed: np.ndarray,
        remaining: int,
        plan: Sequence[int] | None,
        keys: KeyTracker | None = None,
    ) -> np.ndarray | None:
        """The allowed token ids that keep a plan within the budget, or None to keep `allowed`.

        Args:
            matcher: the row's matcher, at the state the mask is for (left as it was).
            allowed: (K,) sorted ids the grammar (and any other mask) allows.
            remaining: tokens the row may still sample, this one included (≥ 1).
            plan: the row's closing plan from this state (None: none fits in `remaining`).
            keys: the row's JSON keys, when keys may not repeat.
        """
        if plan is None or remaining > len(plan) + self.horizon:
            return None
        few = len(allowed) <= FEW
        candidates = allowed if few else allowed[np.isin(allowed, self.priority_array)]
        kept = [int(t) for t in candidates if self.fits(matcher, int(t), remaining - 1, keys)]
        if not kept and plan:  # the plan's first token fits by construction; keep it if it is allowed
            first = plan[0]
            if bool(np.isin(first, allowed)):
                kept = [first]
        return np.asarray(sorted(kept), dtype=np.int64) if kept else None

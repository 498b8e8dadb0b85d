"""`BatchDecoder`: rows decoded together over one KV cache, one token per step, with exact books.

The public API `generate` is built on, and the one samplers use (SMC): build it from `DecodeRow`s and
logit controls, then `step()` (or `sample()` + `advance()`), `select(indices, generators)` to resample,
`refill(slots, waiting)` for continuous batching, `lookahead(tokens)` to score a continuation of every
row without moving it, and read `stats` for counts and timings.

Per step: the model's logits → float32 log-softmax (the base books) → `observe_state`, then the logit
controls in order → log-softmax again (`logq`) → one uniform per row from that row's own
`torch.Generator` → inverse-CDF draw (`steering.decode.draw`). Each control learns a row's budget
(`set_budget`) when the row starts. After each sampled token every control
`consume`s it; constraints (`decides_completion`) say whether the row is complete, and every control
may refuse an ending (`accepts`). Hooks are called directly: the contract is in `steering.controls.base`.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import torch

from steering.controls.base import DecodeState, as_logit_control, forward_rows
from steering.decode.draw import draw
from steering.decode.rows import DecodeRow
from steering.decode.splice import can_splice, splice
from steering.decode.stats import DecodeStats
from steering.decode.stops import find_stop, search_start
from steering.models.language_model import LanguageModel


class BatchDecoder:
    """Rows decoded together over one KV cache: prefill once, then one token per `step()`.

    `select(indices, generators)` re-forms the batch from existing rows (SMC resampling: rows, cache
    and pending logits follow the indices; duplicated rows get fresh generators so that they diverge).
    `refill(slots, waiting)` puts new rows into the slots of rows that have ended (continuous batching).
    With `budgeted`, a row that reaches its `budget` ends there ("length"); without, the caller counts.

    Args:
        model: the model to decode.
        rows: the rows of the batch (their contexts are prefilled together, left-padded).
        controls: logit controls, in order (plain callables are wrapped, see `as_logit_control`).
        stops: stop sequences, matched on decoded text.
        budgeted: end rows at their `budget`.
        stats: where to add counts and timings (default: a fresh `DecodeStats`, in `self.stats`).
    """

    def __init__(
        self,
        model: LanguageModel,
        rows: list[DecodeRow],
        *,
        controls: Sequence[object] = (),
        stops: Sequence[str] = (),
        budgeted: bool = False,
        stats: DecodeStats | None = None,
    ) -> None:
        self.model, self.rows, self.stops = model, rows, tuple(stops)
        self.controls = [as_logit_control(c) for c in controls]
        self.budgeted = budgeted
        self.stats = stats if stats is not None else DecodeStats()
        prefill = self._prefill(rows)
        for control in self.controls:
            control.start(tokenizer=model.tokenizer, prompt_width=prefill["width"], batch_size=len(rows))
            for i, row in enumerate(rows):
                control.set_budget(i, budget=row.budget or None)
        self.finishers = [c for c in self.controls if c.decides_completion]
        self.sequences, self.mask = prefill["sequences"], prefill["mask"]
        self.cache, self.logits = prefill["cache"], prefill["logits"]
        self.next_position = prefill["next_position"]
        self.last_tokens = self.sequences[:, -1:]
        self.eos = torch.tensor(model.eos_token_ids, device=model.device)
        self._sampled: list[int] = []  # the tokens of the last `sample()`, fed by `advance()`
        self._ready: list[tuple[int, DecodeRow]] = []  # prefilled rows waiting for a slot: (index, row)
        self._ready_prefill: dict[str, Any] = {}

    def _prefill(self, rows: list[DecodeRow]) -> dict[str, Any]:
        """One forward over the left-padded contexts of `rows`: their cache and first logits."""
        began = time.perf_counter()
        model = self.model
        width = max(len(r.context_ids) for r in rows)
        ids = torch.full((len(rows), width), model.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row.context_ids) :] = torch.tensor(row.context_ids)
            mask[i, width - len(row.context_ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0).to(model.device)
        ids, mask = ids.to(model.device), mask.to(model.device)
        with forward_rows([r.prompt_index for r in rows]):
            logits, cache = model.forward_step(ids, mask, positions)
        self.stats.prefill_forwards += 1
        self.stats.prefilled_rows += len(rows)
        self.stats.prefill_s += time.perf_counter() - began
        return {
            "width": width,
            "sequences": ids,
            "mask": mask,
            "cache": cache,
            "logits": logits,
            "next_position": positions[:, -1:] + 1,
        }

    @property
    def live(self) -> bool:
        """Whether any row has not ended."""
        return any(r.stop_reason is None for r in self.rows)

    @property
    def can_refill(self) -> bool:
        """Whether `refill` works here: a cache `splice` understands and controls that restart a row."""
        return all(c.can_restart_row for c in self.controls) and can_splice(self.cache)

    def step(self, *, last: bool = False) -> bool:
        """Sample one token for every live row; run the forward for the next one unless `last`.

        Returns whether any row is still live (and a forward was run for it).
        """
        self.sample()
        if last or not self.live:
            return False
        self.advance()
        return True

    def sample(self) -> None:
        """Draw the next token of every live row from the pending logits and record it."""
        began = time.perf_counter()
        if self.controls:
            state = DecodeState(
                self.model, self.cache, self.mask, self.next_position - 1, self.last_tokens, self.sequences
            )
            for control in self.controls:
                control.observe_state(state)
        logp_base = self.logits.float().log_softmax(-1)
        tokens, logq_picked, kl = draw(logp_base, self.sequences, self.controls, self.rows)
        self._sampled = tokens.tolist()
        self._record(
            logq=logq_picked.tolist(),
            logp=logp_base.gather(-1, tokens[:, None]).squeeze(-1).tolist(),
            kl=kl.tolist(),
            is_eos=torch.isin(tokens, self.eos).tolist(),
        )
        self.stats.sample_calls += 1
        self.stats.sample_s += time.perf_counter() - began

    def _record(self, *, logq: list[float], logp: list[float], kl: list[float], is_eos: list[bool]) -> None:
        """Append the sampled tokens to the live rows; end rows (EOS, stop, constraint, budget)."""
        for i, row in enumerate(self.rows):
            if row.stop_reason is not None:
                continue
            row.tokens.append(self._sampled[i])
            row.logq.append(logq[i])
            row.logp.append(logp[i])
            row.kl_steps.append(kl[i])
            _update_text(self.model, row, self.stops, is_eos=is_eos[i])
            for control in self.controls:
                control.consume(row.tokens, row=i)
            # Every finisher sees every token (grammars advance their matcher here), so no short-circuit.
            complete = [c.is_complete(row.tokens, row=i) for c in self.finishers]
            if row.stop_reason is None and self.finishers and all(complete):
                row.text = self.model.decode(row.tokens)
                row.stop_reason = "stop"
            if row.stop_reason is not None and not all(c.accepts(row.tokens, row=i) for c in self.controls):
                row.stop_reason = "unfinished"
            if self.budgeted and row.stop_reason is None and len(row.tokens) == row.budget:
                self._close(i)
                row.stop_reason = row.stop_reason or "length"

    def advance(self) -> None:
        """Run the forward pass on the tokens just sampled (ended rows are fed padding)."""
        began = time.perf_counter()
        model = self.model
        feed = torch.tensor(
            [
                t if r.stop_reason is None else model.pad_token_id
                for t, r in zip(self._sampled, self.rows, strict=True)
            ],
            device=model.device,
        )[:, None]
        self.sequences = torch.cat([self.sequences, feed], dim=-1)
        self.mask = torch.cat([self.mask, torch.ones_like(feed)], dim=-1)
        with forward_rows([r.prompt_index for r in self.rows]):
            self.logits, self.cache = model.forward_step(feed, self.mask, self.next_position, self.cache)
        self.next_position = self.next_position + 1
        self.last_tokens = feed
        self.stats.step_forwards += 1
        self.stats.step_s += time.perf_counter() - began

    @torch.no_grad()
    def lookahead(self, tokens: Sequence[int]) -> torch.Tensor:
        """Score the same continuation after every row, leaving the decoder as it was.

        The first token's log-probability is read from the pending logits; the others from one
        teacher-forced pass of `tokens[:-1]` through a shallow copy of the cache (cache layers
        replace their tensors on update, so the decoder's own cache, mask and logits are untouched).
        The numbers are the plain forward's (before any logit control).

        Args:
            tokens: K ≥ 1 token ids.

        Returns:
            (N, K) float64 on the CPU: log π(tokens[j] | row i's context and tokens, tokens[:j]).
        """
        from transformers import DynamicCache

        began = time.perf_counter()
        model = self.model
        count, width = len(self.rows), len(tokens)
        first = self.logits.float().log_softmax(-1)[:, tokens[0]]
        if width == 1:
            self.stats.lookahead_s += time.perf_counter() - began
            return first[:, None].cpu().double()
        cache = DynamicCache(config=model.module.config)
        cache.layers = [copy.copy(layer) for layer in self.cache.layers]
        feed = torch.tensor([list(tokens[:-1])] * count, device=model.device)
        mask = torch.cat([self.mask, torch.ones_like(feed)], dim=-1)
        positions = self.next_position + torch.arange(width - 1, device=model.device)
        with forward_rows([r.prompt_index for r in self.rows]):
            out = model.module(
                input_ids=feed,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
            )
        following = torch.tensor(list(tokens[1:]), device=model.device).expand(count, -1)[..., None]
        rest = out.logits.float().log_softmax(-1).gather(-1, following).squeeze(-1)
        scored = torch.cat([first[:, None], rest], dim=1).cpu().double()
        self.stats.lookahead_forwards += 1
        self.stats.lookahead_s += time.perf_counter() - began
        return scored

    def refill(self, slots: list[int], waiting: deque[DecodeRow]) -> list[DecodeRow]:
        """Put waiting rows into the ended rows' `slots`; returns the rows placed.

        Waiting rows are prefilled a batch at a time, ahead of need (the rest wait, prefilled, for the
        next slots to free up): one forward per batch of new rows instead of one per refill.
        """
        began = time.perf_counter()
        placed: list[DecodeRow] = []
        slots = list(slots)
        while slots and (self._ready or waiting):
            if not self._ready:
                group = [waiting.popleft() for _ in range(min(len(self.rows), len(waiting)))]
                self._ready_prefill = self._prefill(group)
                self._ready = list(enumerate(group))
            count = min(len(slots), len(self._ready))
            here, slots = slots[:count], slots[count:]
            taken, self._ready = self._ready[:count], self._ready[count:]
            self._splice(here, [j for j, _ in taken], [row for _, row in taken])
            placed.extend(row for _, row in taken)
        self.stats.refilled_rows += len(placed)
        self.stats.refill_s += time.perf_counter() - began
        return placed

    @property
    def ready(self) -> int:
        """Rows prefilled and waiting for a slot."""
        return len(self._ready)

    def _splice(self, slots: list[int], take: list[int], rows: list[DecodeRow]) -> None:
        prefill = self._ready_prefill
        index = torch.tensor(slots, device=self.model.device)
        picked = torch.tensor(take, device=self.model.device)
        grids = {"sequences": self.sequences, "mask": self.mask}
        new_grids = {"sequences": prefill["sequences"], "mask": prefill["mask"]}
        pads = {"sequences": self.model.pad_token_id, "mask": 0}
        merged = splice(self.cache, grids, slots, prefill["cache"], new_grids, take, pads)
        self.sequences, self.mask = merged["sequences"], merged["mask"]
        self.logits = self.logits.clone()
        self.logits[index] = prefill["logits"][picked].to(self.logits.dtype)
        self.next_position = self.next_position.clone()
        self.next_position[index] = prefill["next_position"][picked]
        self.last_tokens = self.sequences[:, -1:]
        for slot, row in zip(slots, rows, strict=True):
            self.rows[slot] = row
            for control in self.controls:
                control.restart_row(slot, prompt_ids=row.context_ids)
                control.set_budget(slot, budget=row.budget or None)

    def select(self, indices: list[int], generators: list[torch.Generator]) -> None:
        """Re-form the batch: row j becomes a copy of row indices[j], drawing from generators[j]."""
        index = torch.tensor(indices, device=self.model.device)
        self.cache.reorder_cache(index)
        for control in self.controls:
            control.select_rows(indices)
        self.logits = self.logits[index]
        self.sequences = self.sequences[index]
        self.mask = self.mask[index]
        self.next_position = self.next_position[index]
        self.last_tokens = self.last_tokens[index]
        self.rows = [
            dataclasses.replace(
                self.rows[i],
                generator=generator,
                tokens=list(self.rows[i].tokens),
                logq=list(self.rows[i].logq),
                logp=list(self.rows[i].logp),
                kl_steps=list(self.rows[i].kl_steps),
            )
            for i, generator in zip(indices, generators, strict=True)
        ]

    def finish(self) -> None:
        """Decode the text of rows that ran out of budget; mark unfinished constraints."""
        for i, row in enumerate(self.rows):
            if row.stop_reason is None:
                self._close(i)

    def _close(self, i: int) -> None:
        """A row that ran out of budget: its text, and "unfinished" if a constraint had not finished."""
        row = self.rows[i]
        row.text = self.model.decode(row.tokens)
        unfinished = bool(self.finishers) or not all(c.accepts(row.tokens, row=i) for c in self.controls)
        row.stop_reason = "unfinished" if unfinished else None


def _update_text(model: LanguageModel, row: DecodeRow, stops: tuple[str, ...], *, is_eos: bool) -> None:
    """Record EOS, or decode and look for a stop sequence (only when there are stop sequences)."""
    if is_eos:
        row.text = model.decode(row.tokens[:-1])
        row.stop_reason = "eos"
        return
    if not stops:
        return
    previous = len(row.text)
    row.text = model.decode(row.tokens)
    index = find_stop(row.text, stops, start=search_start(previous, stops))
    if index is not None:
        row.text = row.text[:index]
        row.stop_reason = "stop"

"""`generate`: one batched, KV-cached sampling loop that keeps exact books.

What "base" means. `logp_base` is the log-probability of each sampled token under the unmodified
model conditioned on the user's **raw** prompt (tokenised with BOS, no template, no demonstrations,
no logit controls). When only logit controls are active, it is read from the same forward pass as
`logq`; when a context control changed the input, the sampled tokens are rescored teacher-forced on
the raw prompt after generation. With no controls at all `logq` and `logp_base` are the same numbers.

Per step: the model's logits (bf16 or fp32 compute) → float32 log-softmax (the base books) → logit
controls in order → log-softmax again (`logq`) → one uniform per row from that row's own
`torch.Generator` → inverse-CDF draw. Each (prompt, sample) row has its own seed, so a row's sample
does not depend on how rows were batched.

Optional hooks a logit control may define (all duck-typed, see `steering.controls.base`):
- `start(tokenizer=, prompt_width=, batch_size=)` before each batch (compile, reset per-row state);
- `observe_state(state)` before each step, with the `DecodeState` (model, KV cache, mask, positions)
  for controls that run the model themselves (PPLM);
- `consume(generated, row=)` after each sampled token (advance per-row automata);
- `is_complete(generated, row=)`: the constraint is finished, stop this row ("stop");
- `accepts(generated, row=)`: may the text end here? A row that ends (EOS, stop, budget) where a
  control says no is marked "unfinished" — never returned as a valid sample.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, cast

import torch

from steering.controls.base import ContextControl, LogitControl, describe, split_controls
from steering.decode.samples import Sample, Samples
from steering.decode.sampling import invert_cdf, probabilities, row_seed, sample_inverse_cdf, step_kl
from steering.decode.splice import can_splice, splice
from steering.decode.stops import find_stop, search_start
from steering.errors import InvalidArgument
from steering.models.language_model import LanguageModel

Progress = Callable[[int], None]


@dataclass
class DecodeState:
    """What the engine holds at one step, for controls that run the model themselves (PPLM).

    Attributes:
        model: the model being decoded.
        cache: the KV cache after the last forward (it includes `last_tokens`).
        attention_mask: (B, L) 1 for real tokens, 0 for left padding, covering every cached position.
        last_positions: (B, 1) position ids of `last_tokens`.
        last_tokens: (B, 1) the tokens whose forward produced this step's logits.
        input_ids: (B, L) every token so far (left-padded prompt, then the generated tokens).
    """

    model: LanguageModel
    cache: Any
    attention_mask: torch.Tensor
    last_positions: torch.Tensor
    last_tokens: torch.Tensor
    input_ids: torch.Tensor


@dataclass
class _Row:
    prompt_index: int
    sample_index: int
    context_ids: list[int]
    generator: torch.Generator
    tokens: list[int]
    logq: list[float]
    logp: list[float]
    kl_steps: list[float]
    text: str = ""
    stop_reason: str | None = None
    budget: int = 0  # max new tokens of this row (when the decoder is budgeted)


def generate(
    model: LanguageModel,
    prompts: str | Sequence[str],
    *,
    controls: Sequence[object] = (),
    n: int = 1,
    max_new_tokens: int | Sequence[int] = 64,
    stop: Sequence[str] = (),
    seed: int = 0,
    batch_size: int = 8,
    progress: Progress | None = None,
    score_base: bool = True,
) -> Samples:
    """Sample continuations of `prompts` under `controls`, with per-token log q and log p_base.

    Args:
        model: from `load_model`.
        prompts: one prompt or a list; each must be non-empty.
        controls: context and logit controls, applied in order (see `steering.controls`).
        n: samples per prompt.
        max_new_tokens: generation budget per sample; a list gives each prompt its own.
        stop: stop sequences (matched on decoded text, across token boundaries, trimmed from the
            text); context controls may add their own (the QA wrapper stops at "\\nQ:").
        seed: same seed, same samples.
        batch_size: rows decoded together.
        progress: called with the number of token slots advanced (total = Σ over rows of the budget).
        score_base: when a context or model control changed the forward pass, `logp_base` needs one
            teacher-forced pass of the plain model on the raw prompt after generation (about 20% extra
            at batch 8 on a CPU). False skips it for throughput-only use: `logp_base` is then NaN and so
            are `kl` and `log_weight` — unknown, never made up. Logit controls never need it.

    Returns:
        `Samples`, prompt-major (prompt 0's n samples first).
    """
    prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
    budgets = _budgets(max_new_tokens, len(prompt_list))
    _validate(prompt_list, n=n, max_new_tokens=max(budgets, default=1), batch_size=batch_size, stop=stop)
    context_controls, logit_controls, model_controls = split_controls(controls)
    stops = tuple(dict.fromkeys([*stop, *(s for c in context_controls for s in c.stop)]))
    contexts = [_render(p, context_controls, model) for p in prompt_list]
    context_ids = [model.encode(c) for c in contexts]
    for index, ids in enumerate(context_ids):
        if len(ids) + budgets[index] > model.context_length:
            raise InvalidArgument(
                f"prompt {index} is too long: {len(ids)} tokens plus max_new_tokens={budgets[index]} "
                f"exceed the model's context window of {model.context_length}",
                received=prompt_list[index][:80],
                fix="shorten the prompt or lower max_new_tokens",
            )
    rows = [
        _Row(
            j,
            k,
            context_ids[j],
            torch.Generator().manual_seed(row_seed(seed, j, k)),
            [],
            [],
            [],
            [],
            budget=budgets[j],
        )
        for j in range(len(prompt_list))
        for k in range(n)
    ]
    # Decode similar lengths together (less padding); results keep the prompt-major order.
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i].context_ids))
    with ExitStack() as stack:
        for control in model_controls:
            stack.enter_context(control.attached(model))
        _decode_rows(model, [rows[i] for i in order], logit_controls, stops, batch_size, progress)
    # The forward pass saw a changed input or a changed model: rescore with the plain model on the raw prompt.
    rescored = bool(context_controls) or bool(model_controls)
    if rescored and score_base:
        raw_ids = [model.encode(p) for p in prompt_list]
        base = model.logprobs([raw_ids[r.prompt_index] for r in rows], [r.tokens for r in rows])
    elif rescored:
        base = [torch.full((len(r.tokens),), float("nan")) for r in rows]
    items = []
    for i, row in enumerate(rows):
        items.append(
            Sample(
                prompt=prompt_list[row.prompt_index],
                prompt_index=row.prompt_index,
                context=contexts[row.prompt_index],
                text=row.text,
                token_ids=row.tokens,
                logq=torch.tensor(row.logq, dtype=torch.float32),
                logp_base=base[i] if rescored else torch.tensor(row.logp, dtype=torch.float32),
                stop_reason=row.stop_reason or "length",
                step_kl=None if rescored else torch.tensor(row.kl_steps, dtype=torch.float32),
            )
        )
    return Samples(items=items, model_name=model.name, controls=[describe(c) for c in controls])


def _budgets(max_new_tokens: int | Sequence[int], prompts: int) -> list[int]:
    """One budget per prompt from an int or a list (checked)."""
    if isinstance(max_new_tokens, int) and not isinstance(max_new_tokens, bool):
        budgets = [max_new_tokens] * prompts
    elif isinstance(max_new_tokens, Sequence) and not isinstance(max_new_tokens, str):
        budgets = list(max_new_tokens)
        if len(budgets) != prompts:
            raise InvalidArgument(
                f"max_new_tokens has {len(budgets)} budgets for {prompts} prompts",
                received=budgets[:8],
                fix="give one budget per prompt, or a single integer",
            )
    else:
        raise InvalidArgument(
            "max_new_tokens must be a positive integer or a list of them",
            received=max_new_tokens,
            fix="use e.g. max_new_tokens=64",
        )
    for value in budgets:
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InvalidArgument(
                "max_new_tokens must be a positive integer", received=value, fix="use e.g. max_new_tokens=64"
            )
    return budgets


def _validate(
    prompts: list[str], *, n: int, max_new_tokens: int, batch_size: int, stop: Sequence[str]
) -> None:
    if not prompts:
        raise InvalidArgument(
            "no prompts were given", received="an empty list", fix="pass at least one prompt"
        )
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise InvalidArgument(
                f"prompt {index} is not a string", received=type(prompt).__name__, fix="pass text prompts"
            )
        if not prompt.strip():
            raise InvalidArgument(
                f"prompt {index} is empty",
                received=repr(prompt),
                fix="give some text to continue (e.g. 'Once upon a time')",
            )
    for name, value in (("n", n), ("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InvalidArgument(
                f"{name} must be a positive integer", received=value, fix=f"use e.g. {name}=1"
            )
    if isinstance(stop, str):
        raise InvalidArgument(
            "stop must be a list of strings", received=repr(stop), fix=f"use stop=[{stop!r}]"
        )
    if any(not isinstance(s, str) or not s for s in stop):
        raise InvalidArgument(
            "stop sequences must be non-empty strings", received=list(stop), fix="remove empty ones"
        )


def _render(prompt: str, controls: list[ContextControl], model: LanguageModel) -> str:
    text = prompt
    for control in controls:
        text = control.render(text, tokenizer=model.tokenizer)
    return text


@torch.no_grad()
def _decode_rows(
    model: LanguageModel,
    rows: list[_Row],
    controls: list[LogitControl],
    stops: tuple[str, ...],
    batch_size: int,
    progress: Progress | None,
) -> None:
    """Decode every row, `batch_size` at a time, refilling a slot as soon as its row ends.

    With refilling (continuous batching) a short row does not hold its slot idle until the longest
    row of its batch ends. It needs a cache layout `splice` understands and controls that can restart
    one row (`restart_row`, or no per-row hooks at all); otherwise batches are decoded one after the
    other, each until its last row ends.
    """
    waiting = deque(rows)
    while waiting:
        first = [waiting.popleft() for _ in range(min(batch_size, len(waiting)))]
        decoder = BatchDecoder(model, first, controls, stops, budgeted=True)
        refill = decoder.can_refill
        while True:
            before = [len(r.tokens) for r in decoder.rows]
            decoder.sample()
            if progress is not None:
                progress(_slots_advanced(decoder.rows, before))
            idle = [i for i, r in enumerate(decoder.rows) if r.stop_reason is not None]
            if decoder.live:
                decoder.advance()
            if refill and idle and (waiting or decoder.ready):
                decoder.refill(idle, waiting)
            elif not decoder.live:
                break
        decoder.finish()


def _slots_advanced(rows: list[_Row], before: list[int]) -> int:
    """Token slots a step used up: one per sampled token, plus the unused budget of rows that ended."""
    advanced = 0
    for row, length in zip(rows, before, strict=True):
        if len(row.tokens) > length:
            advanced += 1 + (row.budget - len(row.tokens) if row.stop_reason is not None else 0)
    return advanced


_ROW_HOOKS = ("start", "observe_state", "consume", "is_complete", "accepts")


class BatchDecoder:
    """Rows decoded together over one KV cache: prefill once, then one token per `step()`.

    `select(indices)` re-forms the batch from existing rows (SMC resampling: rows, cache and pending
    logits follow the indices; duplicated rows get fresh generators so that they diverge).
    `refill(slots, rows)` puts new rows into the slots of rows that have ended (continuous batching).
    With `budgeted`, a row that reaches its `budget` ends there ("length"); without, the caller counts.
    """

    def __init__(
        self,
        model: LanguageModel,
        rows: list[_Row],
        controls: list[LogitControl],
        stops: tuple[str, ...],
        *,
        budgeted: bool = False,
    ) -> None:
        self.model, self.rows, self.controls, self.stops = model, rows, controls, stops
        self.budgeted = budgeted
        prefill = self._prefill(rows)
        for control in controls:
            start = getattr(control, "start", None)
            if callable(start):
                start(tokenizer=model.tokenizer, prompt_width=prefill["width"], batch_size=len(rows))
        self.finishers: list[Any] = [c for c in controls if callable(getattr(c, "is_complete", None))]
        self.consumers: list[Any] = [c for c in controls if callable(getattr(c, "consume", None))]
        self.judges: list[Any] = [c for c in controls if callable(getattr(c, "accepts", None))]
        self.observers: list[Any] = [c for c in controls if callable(getattr(c, "observe_state", None))]
        self.sequences, self.mask = prefill["sequences"], prefill["mask"]
        self.cache, self.logits = prefill["cache"], prefill["logits"]
        self.next_position = prefill["next_position"]
        self.last_tokens = self.sequences[:, -1:]
        self.eos = torch.tensor(model.eos_token_ids, device=model.device)
        self._sampled: list[int] = []  # the tokens of the last `sample()`, fed by `advance()`
        self._ready: list[tuple[int, _Row]] = []  # prefilled rows waiting for a slot: (index in prefill, row)
        self._ready_prefill: dict[str, Any] = {}

    def _prefill(self, rows: list[_Row]) -> dict[str, Any]:
        """One forward over the left-padded contexts of `rows`: their cache and first logits."""
        model = self.model
        width = max(len(r.context_ids) for r in rows)
        ids = torch.full((len(rows), width), model.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row.context_ids) :] = torch.tensor(row.context_ids)
            mask[i, width - len(row.context_ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0).to(model.device)
        ids, mask = ids.to(model.device), mask.to(model.device)
        out = model.module(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1
        )
        return {
            "width": width,
            "sequences": ids,
            "mask": mask,
            "cache": out.past_key_values,
            "logits": out.logits[:, -1, :],
            "next_position": positions[:, -1:] + 1,
        }

    @property
    def live(self) -> bool:
        return any(r.stop_reason is None for r in self.rows)

    @property
    def can_refill(self) -> bool:
        """Whether `refill` works here: a cache `splice` understands and controls that restart a row."""
        controls_ok = all(
            callable(getattr(c, "restart_row", None)) or not any(hasattr(c, h) for h in _ROW_HOOKS)
            for c in self.controls
        )
        return controls_ok and can_splice(self.cache)

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
        model, rows = self.model, self.rows
        if self.observers:
            state = DecodeState(
                model, self.cache, self.mask, self.next_position - 1, self.last_tokens, self.sequences
            )
            for control in self.observers:
                control.observe_state(state)
        logp_base = self.logits.float().log_softmax(-1)
        tokens, logq_picked, kl = _draw(logp_base, self.sequences, self.controls, rows)
        picked_q = logq_picked.tolist()
        picked_p = logp_base.gather(-1, tokens[:, None]).squeeze(-1).tolist()
        is_eos = torch.isin(tokens, self.eos).tolist()
        self._sampled = tokens.tolist()
        kl_list = kl.tolist()
        for i, row in enumerate(rows):
            if row.stop_reason is not None:
                continue
            row.tokens.append(self._sampled[i])
            row.logq.append(picked_q[i])
            row.logp.append(picked_p[i])
            row.kl_steps.append(kl_list[i])
            _update_text(model, row, self.stops, is_eos[i])
            for control in self.consumers:
                control.consume(row.tokens, row=i)
            # Every finisher sees every token (grammars advance their matcher here), so no short-circuit.
            complete = [c.is_complete(row.tokens, row=i) for c in self.finishers]
            if row.stop_reason is None and self.finishers and all(complete):
                row.text = model.decode(row.tokens)
                row.stop_reason = "stop"
            if row.stop_reason is not None and not all(c.accepts(row.tokens, row=i) for c in self.judges):
                row.stop_reason = "unfinished"
            if self.budgeted and row.stop_reason is None and len(row.tokens) == row.budget:
                self._close(i)
                row.stop_reason = row.stop_reason or "length"

    def advance(self) -> None:
        """Run the forward pass on the tokens just sampled (ended rows are fed padding)."""
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
        out = model.module(
            input_ids=feed,
            attention_mask=self.mask,
            position_ids=self.next_position,
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self.cache = out.past_key_values
        self.logits = out.logits[:, -1, :]
        self.next_position = self.next_position + 1
        self.last_tokens = feed

    def refill(self, slots: list[int], waiting: deque[_Row]) -> list[_Row]:
        """Put waiting rows into the ended rows' `slots`; returns the rows placed.

        Waiting rows are prefilled a batch at a time, ahead of need (the rest wait, prefilled, for the
        next slots to free up): one forward per batch of new rows instead of one per refill.
        """
        placed: list[_Row] = []
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
        return placed

    @property
    def ready(self) -> int:
        """Rows prefilled and waiting for a slot."""
        return len(self._ready)

    def _splice(self, slots: list[int], take: list[int], rows: list[_Row]) -> None:
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
                restart = getattr(control, "restart_row", None)
                if callable(restart):
                    restart(slot, prompt_ids=row.context_ids)

    def select(self, indices: list[int], generators: list[torch.Generator]) -> None:
        """Re-form the batch: row j becomes a copy of row indices[j], drawing from generators[j]."""
        index = torch.tensor(indices, device=self.model.device)
        self.cache.reorder_cache(index)
        for control in self.controls:
            select_rows = getattr(control, "select_rows", None)
            if callable(select_rows):
                select_rows(indices)
        self.logits = self.logits[index]
        self.sequences = self.sequences[index]
        self.mask = self.mask[index]
        self.next_position = self.next_position[index]
        self.last_tokens = self.last_tokens[index]
        self.rows = [
            _Row(
                r.prompt_index,
                r.sample_index,
                r.context_ids,
                generator,
                list(r.tokens),
                list(r.logq),
                list(r.logp),
                list(r.kl_steps),
                r.text,
                r.stop_reason,
                r.budget,
            )
            for r, generator in ((self.rows[i], g) for i, g in zip(indices, generators, strict=True))
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
        unfinished = bool(self.finishers) or not all(c.accepts(row.tokens, row=i) for c in self.judges)
        row.stop_reason = "unfinished" if unfinished else None


def _draw(
    logp_base: torch.Tensor, sequences: torch.Tensor, controls: list[LogitControl], rows: list[_Row]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step: apply the logit controls, sample, and return (tokens, log q of them, step KL)."""
    point_mass = bool(controls) and getattr(controls[-1], "point_mass", False)
    pooled = logp_base.device.type == "cpu"  # on a GPU the dense kernels are cheap; per-row work syncs
    if pooled and controls and all(callable(getattr(c, "token_pools", None)) for c in controls):
        uniforms = _uniforms(rows, logp_base.device)
        pools = [cast(Any, c).token_pools(sequences, logp_base.shape[-1]) for c in controls]
        return _draw_from_pools(logp_base, _intersect(pools), uniforms, rows)
    scores = logp_base
    for control in controls[:-1] if point_mass else controls:
        scores = control(sequences, scores)
    if point_mass:
        # Greedy: q is a point mass on the argmax, so log q = 0 and KL(q_t ‖ p_t) = −log p_t(token).
        tokens = scores.argmax(dim=-1)
        picked = torch.zeros(tokens.shape, device=tokens.device)
        kl = -logp_base.gather(-1, tokens[:, None]).squeeze(-1)
        return tokens, picked, kl
    uniforms = _uniforms(rows, logp_base.device)
    if controls and all(getattr(c, "masks_only", False) for c in controls):
        return _draw_masked(logp_base, scores != float("-inf"), uniforms)
    logq = scores.log_softmax(-1) if controls else logp_base
    probs = probabilities(scores)
    tokens = sample_inverse_cdf(logq, uniforms, probs=probs)
    kl = step_kl(logq, logp_base, probs=probs) if controls else torch.zeros(len(rows), device=logq.device)
    return tokens, logq.gather(-1, tokens[:, None]).squeeze(-1), kl


def _uniforms(rows: list[_Row], device: torch.device) -> torch.Tensor:
    """One U[0, 1) draw per row from the row's own generator."""
    return torch.stack([torch.rand((), generator=r.generator) for r in rows]).to(device)


def _draw_masked(
    logp_base: torch.Tensor, allowed: torch.Tensor, uniforms: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The exact fast path of pools, which only remove tokens: (tokens, log q of them, step KL).

    q = p restricted to the kept tokens and renormalised, so log q = log p − log Z_kept and
    KL(q_t ‖ p_t) = −log Z_kept exactly: no second log-softmax and no pass over the vocabulary for
    the KL; Z_kept is the total the draw sums anyway.
    """
    kept = probabilities(logp_base).mul_(allowed)
    tokens, mass = invert_cdf(kept, uniforms)
    log_kept = mass.log().to(logp_base.dtype)
    return tokens, logp_base.gather(-1, tokens[:, None]).squeeze(-1) - log_kept, -log_kept


def _intersect(pools: list[list[torch.Tensor | None]]) -> list[torch.Tensor | None]:
    """Per row, the tokens every control allows; a pool is ids, a bool row, or None (every token)."""
    merged = list(pools[0])
    for other in pools[1:]:
        for i, b in enumerate(other):
            a = merged[i]
            if b is None or a is None:
                merged[i] = a if b is None else b
            elif a.dtype == torch.bool and b.dtype == torch.bool:
                merged[i] = a & b
            elif a.dtype == torch.bool:
                merged[i] = b[a[b]]
            else:
                merged[i] = a[b[a]] if b.dtype == torch.bool else a[torch.isin(a, b)]
    return merged


def _draw_from_pools(
    logp_base: torch.Tensor, pools: list[torch.Tensor | None], uniforms: torch.Tensor, rows: list[_Row]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The mask-only step from each row's pool (`token_pools`): the dense path's numbers, less work.

    A pool of token ids is sampled without touching the rest of the vocabulary: log q = log p −
    log Z_pool, KL = −log Z_pool, the token inverts the pool's CDF in token order. Bool rows (large
    pools) and None (every token) go through `_draw_masked` together. Ended rows are skipped: their
    token is never used.
    """
    batch, vocab = logp_base.shape
    tokens = torch.zeros(batch, dtype=torch.long)
    picked = torch.zeros(batch, dtype=logp_base.dtype)
    kl = torch.zeros(batch, dtype=logp_base.dtype)
    dense: list[int] = []
    for i, pool in enumerate(pools):
        if rows[i].stop_reason is not None:
            continue
        if pool is None or pool.dtype == torch.bool or len(pool) == 0:
            dense.append(i)
            continue
        values = logp_base[i, pool]
        log_kept = torch.logsumexp(values, 0)
        cdf = values.softmax(0).to(torch.float64).cumsum(0)
        target = uniforms[i].to(torch.float64) * cdf[-1]
        index = int(torch.searchsorted(cdf, target[None], right=True).clamp_(max=len(pool) - 1))
        tokens[i] = pool[index]
        picked[i] = values[index] - log_kept
        kl[i] = -log_kept
    if dense:
        allowed = torch.ones((len(dense), vocab), dtype=torch.bool)
        for j, i in enumerate(dense):
            pool = pools[i]
            if pool is not None and pool.dtype == torch.bool:
                allowed[j] = pool
            elif pool is not None:  # an empty pool: nothing allowed
                allowed[j] = False
        chosen = torch.tensor(dense)
        tokens[chosen], picked[chosen], kl[chosen] = _draw_masked(
            logp_base[chosen], allowed, uniforms[chosen]
        )
    return tokens, picked, kl


def _update_text(model: LanguageModel, row: _Row, stops: tuple[str, ...], is_eos: bool) -> None:
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

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

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import torch

from steering.controls.base import ContextControl, LogitControl, describe, split_controls
from steering.decode.samples import Sample, Samples
from steering.decode.sampling import row_seed, sample_inverse_cdf, step_kl
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


def generate(
    model: LanguageModel,
    prompts: str | Sequence[str],
    *,
    controls: Sequence[object] = (),
    n: int = 1,
    max_new_tokens: int = 64,
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
        max_new_tokens: generation budget per sample.
        stop: stop sequences (matched on decoded text, across token boundaries, trimmed from the
            text); context controls may add their own (the QA wrapper stops at "\\nQ:").
        seed: same seed, same samples.
        batch_size: rows decoded together.
        progress: called with the number of token slots advanced (total = rows × max_new_tokens).
        score_base: when a context or model control changed the forward pass, `logp_base` needs one
            teacher-forced pass of the plain model on the raw prompt after generation (about 20% extra
            at batch 8 on a CPU). False skips it for throughput-only use: `logp_base` is then NaN and so
            are `kl` and `log_weight` — unknown, never made up. Logit controls never need it.

    Returns:
        `Samples`, prompt-major (prompt 0's n samples first).
    """
    prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
    _validate(prompt_list, n=n, max_new_tokens=max_new_tokens, batch_size=batch_size, stop=stop)
    context_controls, logit_controls, model_controls = split_controls(controls)
    stops = tuple(dict.fromkeys([*stop, *(s for c in context_controls for s in c.stop)]))
    contexts = [_render(p, context_controls, model) for p in prompt_list]
    context_ids = [model.encode(c) for c in contexts]
    for index, ids in enumerate(context_ids):
        if len(ids) + max_new_tokens > model.context_length:
            raise InvalidArgument(
                f"prompt {index} is too long: {len(ids)} tokens plus max_new_tokens={max_new_tokens} "
                f"exceed the model's context window of {model.context_length}",
                received=prompt_list[index][:80],
                fix="shorten the prompt or lower max_new_tokens",
            )
    rows = [
        _Row(j, k, context_ids[j], torch.Generator().manual_seed(row_seed(seed, j, k)), [], [], [], [])
        for j in range(len(prompt_list))
        for k in range(n)
    ]
    # Decode similar lengths together (less padding); results keep the prompt-major order.
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i].context_ids))
    with ExitStack() as stack:
        for control in model_controls:
            stack.enter_context(control.attached(model))
        for start in range(0, len(order), batch_size):
            batch = [rows[i] for i in order[start : start + batch_size]]
            _decode_batch(model, batch, logit_controls, max_new_tokens, stops, progress)
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
def _decode_batch(
    model: LanguageModel,
    rows: list[_Row],
    controls: list[LogitControl],
    max_new_tokens: int,
    stops: tuple[str, ...],
    progress: Progress | None,
) -> None:
    decoder = BatchDecoder(model, rows, controls, stops)
    done = 0
    while done < max_new_tokens:
        done += 1
        live = decoder.step(last=done == max_new_tokens)
        if progress is not None:
            progress(len(rows))
        if not live:
            break
    if progress is not None and done < max_new_tokens:
        progress(len(rows) * (max_new_tokens - done))
    decoder.finish()


class BatchDecoder:
    """Rows decoded together over one KV cache: prefill once, then one token per `step()`.

    `select(indices)` re-forms the batch from existing rows (SMC resampling: rows, cache and pending
    logits follow the indices; duplicated rows get fresh generators so that they diverge).
    """

    def __init__(
        self, model: LanguageModel, rows: list[_Row], controls: list[LogitControl], stops: tuple[str, ...]
    ) -> None:
        self.model, self.rows, self.controls, self.stops = model, rows, controls, stops
        width = max(len(r.context_ids) for r in rows)
        ids = torch.full((len(rows), width), model.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row.context_ids) :] = torch.tensor(row.context_ids)
            mask[i, width - len(row.context_ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        for control in controls:
            start = getattr(control, "start", None)
            if callable(start):
                start(tokenizer=model.tokenizer, prompt_width=width, batch_size=len(rows))
        self.finishers: list[Any] = [c for c in controls if callable(getattr(c, "is_complete", None))]
        self.consumers: list[Any] = [c for c in controls if callable(getattr(c, "consume", None))]
        self.judges: list[Any] = [c for c in controls if callable(getattr(c, "accepts", None))]
        self.observers: list[Any] = [c for c in controls if callable(getattr(c, "observe_state", None))]
        device = model.device
        self.sequences = ids.to(device)
        self.mask = mask.to(device)
        out = model.module(
            input_ids=self.sequences,
            attention_mask=self.mask,
            position_ids=positions.to(device),
            use_cache=True,
            logits_to_keep=1,
        )
        self.cache = out.past_key_values
        self.logits = out.logits[:, -1, :]
        self.next_position = positions[:, -1:].to(device) + 1
        self.last_tokens = self.sequences[:, -1:]
        self.eos = torch.tensor(model.eos_token_ids, device=device)

    @property
    def live(self) -> bool:
        return any(r.stop_reason is None for r in self.rows)

    def step(self, *, last: bool = False) -> bool:
        """Sample one token for every live row; run the forward for the next one unless `last`.

        Returns whether any row is still live (and a forward was run for it).
        """
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
        token_list = tokens.tolist()
        kl_list = kl.tolist()
        for i, row in enumerate(rows):
            if row.stop_reason is not None:
                continue
            row.tokens.append(token_list[i])
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
        if last or not self.live:
            return False
        feed = torch.tensor(
            [
                t if r.stop_reason is None else model.pad_token_id
                for t, r in zip(token_list, rows, strict=True)
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
        return True

    def select(self, indices: list[int], generators: list[torch.Generator]) -> None:
        """Re-form the batch: row j becomes a copy of row indices[j], drawing from generators[j]."""
        index = torch.tensor(indices, device=self.model.device)
        self.cache.reorder_cache(index)
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
            )
            for r, generator in ((self.rows[i], g) for i, g in zip(indices, generators, strict=True))
        ]

    def finish(self) -> None:
        """Decode the text of rows that ran out of budget; mark unfinished constraints."""
        for i, row in enumerate(self.rows):
            if row.stop_reason is None:
                row.text = self.model.decode(row.tokens)
                # A constraint that did not finish within the budget: never a valid sample.
                unfinished = bool(self.finishers) or not all(
                    c.accepts(row.tokens, row=i) for c in self.judges
                )
                row.stop_reason = "unfinished" if unfinished else None


def _draw(
    logp_base: torch.Tensor, sequences: torch.Tensor, controls: list[LogitControl], rows: list[_Row]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step: apply the logit controls, sample, and return (tokens, log q of them, step KL)."""
    point_mass = bool(controls) and getattr(controls[-1], "point_mass", False)
    scores = logp_base
    for control in controls[:-1] if point_mass else controls:
        scores = control(sequences, scores)
    if point_mass:
        # Greedy: q is a point mass on the argmax, so log q = 0 and KL(q_t ‖ p_t) = −log p_t(token).
        tokens = scores.argmax(dim=-1)
        picked = torch.zeros(tokens.shape, device=tokens.device)
        kl = -logp_base.gather(-1, tokens[:, None]).squeeze(-1)
        return tokens, picked, kl
    logq = scores.log_softmax(-1) if controls else logp_base
    uniforms = torch.stack([torch.rand((), generator=r.generator) for r in rows]).to(logq.device)
    tokens = sample_inverse_cdf(logq, uniforms)
    kl = step_kl(logq, logp_base) if controls else torch.zeros(len(rows), device=logq.device)
    return tokens, logq.gather(-1, tokens[:, None]).squeeze(-1), kl


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

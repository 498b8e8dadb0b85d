"""`generate`: one batched, KV-cached sampling loop that keeps exact books.

What "base" means. `logp_base` is the log-probability of each sampled token under the unmodified
model conditioned on the user's **raw** prompt (tokenised with BOS, no template, no demonstrations,
no logit controls). When only logit controls are active, it is read from the same forward pass as
`logq`; when a context control changed the input, the sampled tokens are rescored teacher-forced on
the raw prompt after generation. With no controls at all `logq` and `logp_base` are the same numbers.

Per step (`steering.decode.decoder.BatchDecoder`): the model's logits (bf16 or fp32 compute) →
float32 log-softmax (the base books) → logit controls in order → log-softmax again (`logq`) → one
uniform per row from that row's own `torch.Generator` → inverse-CDF draw. Each (prompt, sample) row
has its own seed, so a row's sample does not depend on how rows were batched.

Logit controls follow the contract of `steering.controls.base` (`LogitControl`): the decoder calls
their hooks directly — `start` before each batch, `observe_state` before each step, `consume` after
each sampled token, `is_complete` for constraints (`decides_completion`), `accepts` when a row ends
(a row that ends where a control says no is "unfinished", never a valid sample), `restart_row` when a
slot is refilled (only when every control `can_restart_row`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import ExitStack

import torch

from steering.controls.base import ContextControl, LogitControl, describe, split_controls
from steering.decode.decoder import BatchDecoder
from steering.decode.handoff import OnSample, SampleHandoff
from steering.decode.rows import DecodeRow
from steering.decode.samples import Sample, Samples
from steering.decode.sampling import row_seed
from steering.decode.stats import DecodeStats
from steering.errors import InvalidArgument, check_seed
from steering.models.language_model import LanguageModel

Progress = Callable[[int], None]


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
    on_sample: OnSample | None = None,
    prompt_offset: int = 0,
) -> Samples:
    """Sample continuations of `prompts` under `controls`, with per-token log q and log p_base.

    Args:
        model: from `load_model`.
        prompts: one prompt or a list; each must be non-empty.
        controls: context, model and logit controls, applied in order (see `steering.controls`).
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
        on_sample: called with each `Sample` once it and every sample before it (in the returned
            prompt-major order) are complete — while decoding when only logit controls are used;
            after decoding, `batch_size` rows at a time, when the base rescoring pass is needed. On
            Ctrl-C (KeyboardInterrupt) the samples already complete are passed to it, in the same
            order, before the interrupt goes on: a caller that writes them loses no finished sample.
            Each call runs with Ctrl-C held back until it returns.
        prompt_offset: the index of `prompts[0]` in a larger list whose parts are sampled apart
            (RL's rollout workers): row seeds use the index in that list, so the parts' samples are
            the samples of the whole list.

    Returns:
        `Samples`, prompt-major (prompt 0's n samples first), with the decoder's counts and timings
        in `Samples.stats`.

    Raises:
        InvalidArgument: `model` is not a `LanguageModel`, `seed` is not an integer in [0, 2**63),
            `controls` is not a list of control instances, or a prompt, budget or stop is invalid.
    """
    _check_model(model)
    seed = check_seed(seed)
    if isinstance(prompt_offset, bool) or not isinstance(prompt_offset, int) or prompt_offset < 0:
        raise InvalidArgument(
            "prompt_offset must be a whole number ≥ 0", received=repr(prompt_offset), fix="use 0"
        )
    prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
    budgets = _budgets(max_new_tokens, len(prompt_list))
    _validate(prompt_list, n=n, max_new_tokens=max(budgets, default=1), batch_size=batch_size, stop=stop)
    context_controls, logit_controls, model_controls = split_controls(controls)
    _check_backend(model, model_controls)
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
        DecodeRow(
            prompt_index=j,
            sample_index=k,
            context_ids=context_ids[j],
            generator=torch.Generator().manual_seed(row_seed(seed, prompt_offset + j, k)),
            budget=budgets[j],
        )
        for j in range(len(prompt_list))
        for k in range(n)
    ]
    # Decode similar lengths together (less padding); results keep the prompt-major order.
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i].context_ids))
    stats = DecodeStats()
    # The forward pass sees a changed input or a changed model: rescore with the plain model on the raw prompt.
    rescored = bool(context_controls) or bool(model_controls)

    def build(done: list[DecodeRow]) -> list[Sample]:
        return _samples(model, done, prompt_list, contexts, rescored=rescored, score_base=score_base)

    handoff = SampleHandoff(rows, build=build, on_sample=on_sample, during_decoding=not rescored)
    try:
        with ExitStack() as stack:
            for control in model_controls:
                stack.enter_context(control.attached(model))
            began = time.perf_counter()
            _decode_rows(
                model,
                [rows[i] for i in order],
                controls=logit_controls,
                stops=stops,
                batch_size=batch_size,
                progress=progress,
                stats=stats,
                ended=handoff.ended,
            )
            stats.decode_s += time.perf_counter() - began
    except KeyboardInterrupt:
        handoff.interrupted()  # model controls are detached by now: the rescoring pass is the plain model's
        raise
    items = handoff.finished(chunk=batch_size)
    return Samples(items=items, model_name=model.name, controls=[describe(c) for c in controls], stats=stats)


def _samples(
    model: LanguageModel,
    rows: list[DecodeRow],
    prompts: list[str],
    contexts: list[str],
    *,
    rescored: bool,
    score_base: bool,
) -> list[Sample]:
    """The `Sample` of each ended row, its base books read from the decode or rescored on the raw prompt."""
    if rescored and score_base:
        raw_ids = {j: model.encode(prompts[j]) for j in sorted({r.prompt_index for r in rows})}
        base = model.logprobs([raw_ids[r.prompt_index] for r in rows], [r.tokens for r in rows])
    elif rescored:
        base = [torch.full((len(r.tokens),), float("nan")) for r in rows]
    else:
        base = [torch.tensor(r.logp, dtype=torch.float32) for r in rows]
    return [
        Sample(
            prompt=prompts[row.prompt_index],
            prompt_index=row.prompt_index,
            context=contexts[row.prompt_index],
            text=row.text,
            token_ids=row.tokens,
            logq=torch.tensor(row.logq, dtype=torch.float32),
            logp_base=base[i],
            stop_reason=row.stop_reason or "length",
            step_kl=None if rescored else torch.tensor(row.kl_steps, dtype=torch.float32),
            sample_index=row.sample_index,
        )
        for i, row in enumerate(rows)
    ]


def _check_model(model: object) -> None:
    """Refuse anything but a loaded `LanguageModel` (a name is not loaded behind the caller's back)."""
    if isinstance(model, LanguageModel):
        return
    if isinstance(model, str):
        raise InvalidArgument(
            "generate takes a loaded model, not a model name",
            received=repr(model),
            fix=f"load it once and pass it: model = load_model({model!r}); generate(model, …)",
        )
    raise InvalidArgument(
        "generate takes a model from load_model",
        received=type(model).__name__,
        fix='pass load_model("gemma-270m") (or another name from `steer models`)',
    )


def _check_backend(model: LanguageModel, model_controls: Sequence[object]) -> None:
    """Model controls change weights or hidden states: only the torch backend has them to change."""
    if model.backend == "torch" or not model_controls:
        return
    shown = ", ".join(describe(c) for c in model_controls)
    raise InvalidArgument(
        f"{shown} changes the model's weights or hidden states, which the {model.backend} backend "
        "does not expose; it needs the torch backend",
        received=f"{model.name} loaded with backend={model.backend!r}",
        fix=f"load_model({model.name!r}) (the torch backend; --backend torch), or drop the model control",
    )


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
    rows: list[DecodeRow],
    *,
    controls: list[LogitControl],
    stops: tuple[str, ...],
    batch_size: int,
    progress: Progress | None,
    stats: DecodeStats,
    ended: Callable[[list[DecodeRow]], None],
) -> None:
    """Decode every row, `batch_size` at a time, refilling a slot as soon as its row ends.

    `ended` is called with the batch's rows after each completed step (and after a batch's last one),
    so a row it sees ended is recorded in full.

    With refilling (continuous batching) a short row does not hold its slot idle until the longest
    row of its batch ends. It needs a cache layout `splice` understands and controls that can restart
    one row (every control's `can_restart_row`); otherwise batches are decoded one after the other,
    each until its last row ends.
    """
    waiting = deque(rows)
    while waiting:
        first = [waiting.popleft() for _ in range(min(batch_size, len(waiting)))]
        decoder = BatchDecoder(model, first, controls=controls, stops=stops, budgeted=True, stats=stats)
        refill = decoder.can_refill
        while True:
            before = [len(r.tokens) for r in decoder.rows]
            decoder.sample()
            if progress is not None:
                progress(_slots_advanced(decoder.rows, before))
            ended(decoder.rows)
            idle = [i for i, r in enumerate(decoder.rows) if r.stop_reason is not None]
            if decoder.live:
                decoder.advance()
            if refill and idle and (waiting or decoder.ready):
                decoder.refill(idle, waiting)
            elif not decoder.live:
                break
        decoder.finish()
        ended(decoder.rows)


def _slots_advanced(rows: list[DecodeRow], before: list[int]) -> int:
    """Token slots a step used up: one per sampled token, plus the unused budget of rows that ended."""
    advanced = 0
    for row, length in zip(rows, before, strict=True):
        if len(row.tokens) > length:
            advanced += 1 + (row.budget - len(row.tokens) if row.stop_reason is not None else 0)
    return advanced

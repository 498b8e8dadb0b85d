"""`DecodeRow`: one (prompt, sample) row of a batch being decoded, with its books so far."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(kw_only=True)
class DecodeRow:
    """One row the decoder grows a token at a time; build it with keywords.

    Example: `DecodeRow(prompt_index=0, sample_index=k, context_ids=ids, generator=torch.Generator())`.

    Attributes:
        prompt_index: index of the row's prompt in the call.
        sample_index: index of the sample among that prompt's samples.
        context_ids: the tokens the model is conditioned on (the rendered prompt, with BOS).
        generator: the row's own random stream (one uniform per sampled token).
        tokens: the sampled tokens so far.
        logq: log q of each sampled token (the distribution it was drawn from).
        logp: log p of each sampled token under the model's plain forward (before the logit controls).
        kl_steps: KL(q_t ‖ p_t) over the vocabulary at each step.
        text: the decoded text, once known (a stop sequence trimmed).
        stop_reason: None while live; "eos", "stop", "length", "unfinished" (or a caller's own, e.g.
            SMC's "pruned") once ended.
        budget: most tokens this row may sample (read when the decoder is budgeted).
    """

    prompt_index: int
    sample_index: int
    context_ids: list[int]
    generator: torch.Generator
    tokens: list[int] = field(default_factory=list)
    logq: list[float] = field(default_factory=list)
    logp: list[float] = field(default_factory=list)
    kl_steps: list[float] = field(default_factory=list)
    text: str = ""
    stop_reason: str | None = None
    budget: int = 0

"""Candidates for annotation: sample answers through `steering.generate` and store them with their books.

`add_candidates` is what `steer feedback add` and the RLHF/RLAIF loop (`steering.recipes.feedback_loop`)
both do: every prompt stored once, `n` samples per prompt stored as responses with their provenance
(model, adapter, the decoding settings, seed) and the engine's books (the sums of log q and log p_base
over the sampled tokens, and the KL estimate), then the work people and judges do on them queued. All
in one transaction: a failure part way stores nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from steering.decode import Samples, generate
from steering.feedback.store import ITEM_KINDS, FeedbackStore
from steering.models import LanguageModel


@dataclass(frozen=True)
class Candidates:
    """What `add_candidates` stored: prompt ids (in the order given), the samples, the queued item ids."""

    prompt_ids: list[int]
    samples: Samples
    items: list[int]


def finite_or_none(value: float) -> float | None:
    """None for a NaN book (unknown, e.g. no base rescoring), never a made-up number."""
    return value if math.isfinite(value) else None


def add_candidates(
    store: FeedbackStore,
    model: LanguageModel,
    prompts: Sequence[str],
    *,
    n: int = 2,
    controls: Sequence[object] = (),
    max_new_tokens: int = 64,
    stop: Sequence[str] = (),
    seed: int = 0,
    batch_size: int = 8,
    source: str | None = None,
    adapter: str | None = None,
    settings: Mapping[str, Any] | None = None,
    kinds: Sequence[str] = ITEM_KINDS,
    rubrics: Sequence[str] = ("helpful",),
    progress: Callable[[int], None] | None = None,
) -> Candidates:
    """Sample `n` answers to each prompt under `controls` and store them, with the items to annotate.

    Args:
        store: an open `FeedbackStore`.
        model: the model that answers; its name is the responses' `model`.
        controls: the decoding's controls (an adapter, a template, sampling settings).
        source: where the prompts came from (stored with each prompt).
        adapter: the adapter's path, for the responses' provenance (the control itself is in `controls`).
        settings: the decoding settings to record with each response (temperature, template, …).
        kinds: which items to queue per prompt (compare every pair, rank, rate per rubric, critique).
        progress: called with the token slots decoded (`steering.generate`'s progress).
    """
    samples = generate(
        model,
        list(prompts),
        controls=list(controls),
        n=n,
        max_new_tokens=max_new_tokens,
        stop=stop,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
    recorded = {"max_new_tokens": max_new_tokens, **(settings or {})}
    items: list[int] = []
    with store.batch():  # every candidate and queue item, or none
        prompt_ids = [store.add_prompt(text, source=source) for text in prompts]
        for sample in samples:
            store.add_response(
                prompt_ids[sample.prompt_index],
                sample.text,
                model=model.name,
                adapter=adapter,
                controls=recorded,
                seed=seed,
                logq=finite_or_none(float(sample.logq.sum())),
                logp_base=finite_or_none(float(sample.logp_base.sum())),
                kl=finite_or_none(sample.kl),
                meta={
                    "sample_index": sample.sample_index,
                    "stop_reason": sample.stop_reason,
                    "tokens": len(sample.token_ids),
                },
            )
        for prompt_id in prompt_ids:
            items += store.add_items_for_prompt(prompt_id, kinds=kinds, rubrics=rubrics)
    return Candidates(prompt_ids, samples, items)

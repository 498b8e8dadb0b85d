"""Put freshly prefilled rows into a running batch's KV cache (continuous batching).

A batch's cache is a grid of columns shared by every row: each row's tokens are right-aligned, the
columns left of them are padding (attention mask 0). New rows are prefilled together, ahead of need
(one forward for a batch of prompts costs about one decode step on a CPU, so prefilling them one by
one as slots free up would cost a step each); splicing left-pads the narrower of the two caches to
the wider, writes the new rows over the finished ones, then drops leading columns that no row
attends to any more. Keys/values are per row, so after the
splice each row attends exactly to its own tokens at its own position ids: the same numbers a
fresh batch would compute (up to the padding-dependent rounding any batched forward has).

Supported: Hugging Face `DynamicCache` made of full-attention and sliding-window layers (Gemma 3,
Llama, Qwen, …). A sliding layer keeps only the last `sliding_window − 1` columns; splicing keeps
that invariant. Other caches (static, quantised, state-space) are not spliced: `can_splice` says
no and the engine keeps its batches fixed instead.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer


def can_splice(cache: Any) -> bool:
    """Whether `splice` understands this cache's layout."""
    if type(cache) is not DynamicCache:
        return False
    for layer in cache.layers:
        if type(layer) is DynamicSlidingWindowLayer:
            if layer.record_past:
                return False
        elif type(layer) is not DynamicLayer:
            return False
    return True


def _stored(layer: Any, width: int) -> int:
    """Columns a layer keeps for a cache `width` columns wide."""
    if isinstance(layer, DynamicSlidingWindowLayer):
        return min(width, layer.sliding_window - 1)
    return width


def _fit(states: torch.Tensor, want: int) -> torch.Tensor:
    """The last `want` columns of (B, H, cols, D) `states`, zero-padded on the left when it has fewer."""
    have = states.shape[-2]
    if want <= have:
        return states[..., have - want :, :]
    pad = states.new_zeros((*states.shape[:-2], want - have, states.shape[-1]))
    return torch.cat([pad, states], dim=-2)


def _set_width(cache: Any, width: int) -> None:
    layer: Any
    for layer in cache.layers:
        if not layer.is_initialized:
            continue
        want = _stored(layer, width)
        layer.keys, layer.values = _fit(layer.keys, want), _fit(layer.values, want)
        if isinstance(layer, DynamicSlidingWindowLayer):
            layer.cumulative_length = width


def _left_pad(grid: torch.Tensor, width: int, value: int) -> torch.Tensor:
    """(B, w) → (B, width), padding on the left with `value` (or dropping leftmost columns)."""
    have = grid.shape[-1]
    if width <= have:
        return grid[:, have - width :]
    return torch.nn.functional.pad(grid, (width - have, 0), value=value)


def splice(
    cache: Any,
    grids: dict[str, torch.Tensor],
    slots: list[int],
    new_cache: Any,
    new_grids: dict[str, torch.Tensor],
    take: list[int],
    pad_values: dict[str, int],
) -> dict[str, torch.Tensor]:
    """Write rows `take` of `new_cache` into rows `slots` of `cache`, in place (`new_cache` is unchanged).

    Args:
        cache: the running batch's cache, `width` = `grids["mask"].shape[1]` columns.
        grids: (B, width) tensors aligned with the columns: at least "mask" (1 = real token).
        slots: the rows of `cache` to overwrite.
        new_cache: a prefill of new rows.
        new_grids: the same keys as `grids`, one row per row of `new_cache`.
        take: the rows of `new_cache` to write, one per slot.
        pad_values: the padding value of each grid (the mask's must be 0).

    Returns:
        The grids after the splice, trimmed of leading columns that every row masks out.
    """
    width = max(grids["mask"].shape[1], new_grids["mask"].shape[1])
    _set_width(cache, width)
    index = torch.tensor(slots, device=grids["mask"].device)
    rows = torch.tensor(take, device=grids["mask"].device)
    layer: Any
    new_layer: Any
    for layer, new_layer in zip(cache.layers, new_cache.layers, strict=True):
        if layer.is_initialized:
            want = _stored(layer, width)
            layer.keys[index] = _fit(new_layer.keys[rows], want).to(layer.keys.dtype)
            layer.values[index] = _fit(new_layer.values[rows], want).to(layer.values.dtype)
    merged = {}
    for name, grid in grids.items():
        grid = _left_pad(grid, width, pad_values[name]).clone()
        grid[index] = _left_pad(new_grids[name][rows], width, pad_values[name]).to(grid.dtype)
        merged[name] = grid
    # Columns that no row attends to any more (the finished rows' old prompts) cost attention time.
    used = merged["mask"].any(0).nonzero()
    first = int(used[0]) if len(used) else 0
    if first:
        width -= first
        _set_width(cache, width)
        merged = {name: grid[:, first:] for name, grid in merged.items()}
    return merged

"""What the annotation app shows of an item, per annotator: the order of its answers (randomised, stable,
recorded) and a multi-turn prompt's transcript.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from steering.feedback.store import Item


def shown_swapped(annotator_id: int, item_id: int) -> bool:
    """Whether this annotator sees this item's two answers swapped (b on the left).

    A hash, not a coin kept in memory: the same person sees the same order after a reload or a restart,
    different people and items get each order about half the time, and the order shown is recorded.
    """
    return hashlib.sha256(f"order:{annotator_id}:{item_id}".encode()).digest()[0] & 1 == 1


def shown_order(annotator_id: int, item: Item) -> list[int]:
    """The response ids of `item` in the order this annotator sees them."""
    ids = list(item.response_ids)
    if item.kind == "compare":
        return ids[::-1] if shown_swapped(annotator_id, item.id) else ids
    seed = int.from_bytes(hashlib.sha256(f"order:{annotator_id}:{item.id}".encode()).digest()[:8], "big")
    random.Random(seed).shuffle(ids)
    return ids


def messages_of(meta: dict[str, Any]) -> list[dict[str, str]]:
    """A multi-turn prompt's messages (`meta["messages"]`: role and content strings), else []."""
    messages = meta.get("messages")
    if not isinstance(messages, list):
        return []
    return [
        {"role": m["role"], "content": m["content"]}
        for m in messages
        if isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
    ]

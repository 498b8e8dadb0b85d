"""Shared pieces of the agents tests."""

from __future__ import annotations

from pathlib import Path

from random_adapters import random_adapter as _random

from steering.agents import load_situations


def random_adapter(model, folder: Path) -> Path:
    """A LoRA with random (non-zero) weights on `model`, saved to `folder` and taken out of the model again."""
    return _random(model, folder, scale=0.5, name="agent")


def pool(name: str) -> tuple[list[str], list[str]]:
    """The shipped pool's train situations inside `name`'s scope, and the others (its outsiders)."""
    train = [s for s in load_situations() if s.split == "train"]
    return [s.text for s in train if name in s.scopes], [s.text for s in train if name not in s.scopes]

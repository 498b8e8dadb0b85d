"""Shared pieces of the agents tests."""

from __future__ import annotations

from pathlib import Path

from random_adapters import random_adapter as _random


def random_adapter(model, folder: Path) -> Path:
    """A LoRA with random (non-zero) weights on `model`, saved to `folder` and taken out of the model again."""
    return _random(model, folder, scale=0.5, name="agent")

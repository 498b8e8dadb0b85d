"""A LoRA adapter with random (non-zero) weights, for tests that need one to load (controls, agents)."""

from __future__ import annotations

from pathlib import Path

import torch


def random_adapter(model, folder: Path, *, seed: int = 0, scale: float = 0.3, name: str = "random") -> Path:
    """Add a rank-4 LoRA to `model`, fill it with seeded N(0, scale²) weights, save it to `folder` and take
    it out of the model again (it stays as it was)."""
    from steering.train.adapters import add_lora, remove_adapter, save_adapter

    params = add_lora(model, name, rank=4, alpha=8, dropout=0.0)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed)
        for param in params:
            param.copy_(torch.randn(param.shape, generator=generator) * scale)
    save_adapter(model, name, folder)
    remove_adapter(model, name)
    return folder

"""Shared pieces of the agents tests."""

from __future__ import annotations

from pathlib import Path

import torch


def random_adapter(model, folder: Path) -> Path:
    """A LoRA with random (non-zero) weights on `model`, saved to `folder` and taken out of the model again."""
    from steering.train.adapters import add_lora, remove_adapter, save_adapter

    params = add_lora(model, "agent", rank=4, alpha=8, dropout=0.0)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for param in params:
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    save_adapter(model, "agent", folder)
    remove_adapter(model, "agent")
    return folder

"""Full fine-tuning: every weight of the model trained, saved as a model directory (`full=true`).

`FullWeights` is the loop's `TrainedWeights` for it (SFT's `weights` hook returns it when `full` is
set): `make_parameters` unfreezes the model and keeps a copy of the original weights, `save` writes a
Hugging Face model directory (safetensors + config + tokenizer, loadable with `load_model(DIR)` and
`steer generate --model DIR`), `load` resumes from one, and `release` puts the original weights back,
so the caller's model comes back as it was — like a LoRA run, which takes its adapter out.

It costs what full fine-tuning costs: AdamW keeps two more copies of every weight, and a checkpoint
holds the whole model and the optimizer state (about 3 GB for gemma-270m in float32). SFT only: DPO's
reference and RL's base books are the model with its adapter disabled, which a full run has not got.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from steering.models import LanguageModel

WEIGHTS = "model.safetensors"


class FullWeights:
    """The loop's weight owner for `full=true`: all of the model's parameters."""

    def __init__(self) -> None:
        self.original: dict[str, torch.Tensor] = {}
        self.flags: dict[str, bool] = {}

    def make_parameters(self, model: LanguageModel, config: Any) -> list[torch.nn.Parameter]:
        self.original = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
        params = []
        for name, param in model.module.named_parameters():
            self.flags[name] = param.requires_grad
            param.requires_grad_(True)
            params.append(param)
        return params

    def save(self, model: LanguageModel, directory: Path, meta: dict[str, Any]) -> None:
        """A Hugging Face model directory in `directory` (the loop makes the write atomic)."""
        from safetensors.torch import save_model

        module = model.module
        save_model(module, str(directory / WEIGHTS))  # shared (tied) tensors written once
        config = module.config.to_dict()
        config.pop("quantization_config", None)
        (directory / "config.json").write_text(json.dumps(config, indent=2))
        if getattr(module, "generation_config", None) is not None:
            module.generation_config.save_pretrained(directory)
        model.tokenizer.save_pretrained(directory)
        (directory / "steering.json").write_text(
            json.dumps({"base_model": model.name, "full": True, **meta}, indent=2)
        )

    def load(self, model: LanguageModel, directory: Path) -> None:
        from safetensors.torch import load_model

        load_model(model.module, str(Path(directory) / WEIGHTS))

    def release(self, model: LanguageModel) -> None:
        with torch.no_grad():
            model.module.load_state_dict(self.original)
        for name, param in model.module.named_parameters():
            param.requires_grad_(self.flags.get(name, param.requires_grad))
        self.original, self.flags = {}, {}

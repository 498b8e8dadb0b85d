"""Activation steering: add a direction to the residual stream at chosen layers (forward hooks).

A vector is built from contrast pairs — the mean output of a decoder layer over positive prompts minus
the mean over negative prompts — saved as safetensors plus JSON metadata (model, layers, hidden size,
norms), and applied with strength α to every position's hidden state at those layers. Because it
changes the model itself, the engine rescores the sampled tokens with the *unhooked* model to fill
`logp_base`, so the KL of steering is measured exactly like any other control's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from steering.errors import InvalidArgument, ModelLoadError
from steering.models.language_model import LanguageModel
from steering.paths import atomic_write_text


def decoder_layers(module: Any) -> torch.nn.ModuleList:
    """The decoder layers of a causal LM (`model.layers` for Llama, Gemma, Qwen, Mistral…)."""
    inner = getattr(module, "model", module)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise InvalidArgument(
            "cannot find the decoder layers of this model",
            received=type(module).__name__,
            fix="activation steering supports models with a `model.layers` ModuleList",
        )
    return layers


def _check_layers(layers: Sequence[int], count: int) -> list[int]:
    if not layers:
        raise InvalidArgument("choose at least one layer", received=list(layers), fix="use e.g. layers=[6]")
    bad = [layer for layer in layers if not 0 <= layer < count]
    if bad:
        raise InvalidArgument(
            f"layer indices must be in 0..{count - 1}", received=bad, fix=f"this model has {count} layers"
        )
    return sorted(set(layers))


@torch.no_grad()
def _mean_layer_outputs(
    model: LanguageModel, prompts: Sequence[str], layers: list[int]
) -> dict[int, torch.Tensor]:
    """Mean over prompts of the mean over tokens (BOS excluded) of each chosen layer's output, in float32."""
    blocks = decoder_layers(model.module)
    sums = {layer: torch.zeros(model.module.config.hidden_size) for layer in layers}
    captured: dict[int, torch.Tensor] = {}

    def capture(layer: int):
        def hook(_module, _args, output):
            captured[layer] = output[0] if isinstance(output, tuple) else output

        return hook

    handles = [blocks[layer].register_forward_hook(capture(layer)) for layer in layers]
    try:
        for prompt in prompts:
            ids = torch.tensor([model.encode(prompt)], device=model.device)
            model.module(input_ids=ids, use_cache=False, logits_to_keep=1)
            # Skip the BOS position: it carries a huge, prompt-independent activation (an attention sink)
            # that would otherwise dominate the mean.
            skip = (
                1
                if model.bos_token_id is not None
                and int(ids[0, 0]) == model.bos_token_id
                and ids.shape[1] > 1
                else 0
            )
            for layer in layers:
                sums[layer] += captured[layer][0, skip:].float().mean(0).cpu()
    finally:
        for handle in handles:
            handle.remove()
    return {layer: total / len(prompts) for layer, total in sums.items()}


@dataclass
class SteeringVector:
    """Directions per layer plus the strength α with which they are added.

    Attributes:
        vectors: layer index → (hidden_size,) float32 direction.
        model_name: the model it was built on (checked when applied).
        hidden_size: checked when applied.
        alpha: strength; 0 leaves the model unchanged, negative steers the other way.
    """

    vectors: dict[int, torch.Tensor]
    model_name: str
    hidden_size: int
    alpha: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.alpha, (int, float)) or not math.isfinite(self.alpha):
            raise InvalidArgument(
                "the steering strength α must be a finite number", received=self.alpha, fix="use e.g. 4.0"
            )

    def __repr__(self) -> str:
        return f"SteeringVector(model={self.model_name!r}, layers={sorted(self.vectors)}, alpha={self.alpha})"

    def with_alpha(self, alpha: float) -> SteeringVector:
        return SteeringVector(self.vectors, self.model_name, self.hidden_size, alpha)

    def save(self, path: str | Path) -> Path:
        """Write `path` (safetensors) and `path` + `.json` (metadata), each atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({f"layer.{k}": v.contiguous() for k, v in self.vectors.items()}, str(tmp))
        tmp.replace(path)
        meta = {
            "model": self.model_name,
            "hidden_size": self.hidden_size,
            "layers": sorted(self.vectors),
            "norms": {str(k): float(v.norm()) for k, v in self.vectors.items()},
        }
        atomic_write_text(path.with_suffix(path.suffix + ".json"), json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, *, alpha: float = 1.0) -> SteeringVector:
        path = Path(path)
        meta_path = path.with_suffix(path.suffix + ".json")
        if not path.is_file() or not meta_path.is_file():
            raise ModelLoadError(
                f"steering vector {path} (or its metadata {meta_path.name}) does not exist",
                received=str(path),
                fix="build one with `steer vector build`",
            )
        try:
            meta = json.loads(meta_path.read_text())
            tensors = load_file(str(path))
            vectors = {int(name.split(".", 1)[1]): tensor.float() for name, tensor in tensors.items()}
            return cls(vectors, str(meta["model"]), int(meta["hidden_size"]), alpha)
        except (OSError, ValueError, KeyError) as error:
            raise ModelLoadError(
                f"could not read the steering vector {path}",
                received=f"{type(error).__name__}: {error}",
                fix="rebuild it with `steer vector build`",
            ) from error

    def check(self, model: LanguageModel) -> None:
        """Refuse a vector built for another model or hidden size."""
        hidden = int(model.module.config.hidden_size)
        if self.hidden_size != hidden or any(v.numel() != hidden for v in self.vectors.values()):
            raise InvalidArgument(
                f"this steering vector has hidden size {self.hidden_size}, the model {model.name} has {hidden}",
                received=f"vector built on {self.model_name}",
                fix=f"build a vector on {model.name} with `steer vector build --model {model.name}`",
            )
        if self.model_name != model.name:
            raise InvalidArgument(
                f"this steering vector was built on {self.model_name}, not on {model.name}",
                received=self.model_name,
                fix=f"build a vector on {model.name}",
            )
        _check_layers(list(self.vectors), len(decoder_layers(model.module)))

    @contextmanager
    def attached(self, model: LanguageModel) -> Iterator[None]:
        """Add α·v to the chosen layers' outputs inside the block; hooks are removed even on error."""
        self.check(model)
        blocks = decoder_layers(model.module)
        handles = []

        def add(vector: torch.Tensor):
            def hook(_module, _args, output):
                if isinstance(output, tuple):
                    return (output[0] + vector.to(output[0].dtype), *output[1:])
                return output + vector.to(output.dtype)

            return hook

        try:
            for layer, vector in self.vectors.items():
                scaled = (self.alpha * vector).to(model.device)
                handles.append(blocks[layer].register_forward_hook(add(scaled)))
            yield
        finally:
            for handle in handles:
                handle.remove()


def build_steering_vector(
    model: LanguageModel, *, positive: Sequence[str], negative: Sequence[str], layers: Sequence[int]
) -> SteeringVector:
    """Mean-difference direction at `layers`: mean(layer output | positive) − mean(… | negative)."""
    if not positive or not negative:
        raise InvalidArgument(
            "a steering vector needs positive and negative examples",
            received=f"{len(positive)} positive, {len(negative)} negative",
            fix="give at least one prompt of each (a few dozen work better)",
        )
    chosen = _check_layers(list(layers), len(decoder_layers(model.module)))
    pos = _mean_layer_outputs(model, positive, chosen)
    neg = _mean_layer_outputs(model, negative, chosen)
    return SteeringVector(
        {layer: pos[layer] - neg[layer] for layer in chosen}, model.name, int(model.module.config.hidden_size)
    )

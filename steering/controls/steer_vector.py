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
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from steering.controls.adapter import read_json_file, read_weights
from steering.errors import InvalidArgument, ModelLoadError
from steering.models.language_model import LanguageModel
from steering.paths import writing

# Below this ‖mean(positive) − mean(negative)‖ / ‖mean(positive)‖ the two sets are the same to the model:
# float sums in another order differ by ~1e-7, a real contrast by 1e-2 or more.
MIN_RELATIVE_NORM = 1e-4


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
    source: str | None = None  # the file it was loaded from, named in errors

    def __post_init__(self) -> None:
        if not isinstance(self.alpha, (int, float)) or not math.isfinite(self.alpha):
            raise InvalidArgument(
                "the steering strength α must be a finite number", received=self.alpha, fix="use e.g. 4.0"
            )

    def __repr__(self) -> str:
        return f"SteeringVector(model={self.model_name!r}, layers={sorted(self.vectors)}, alpha={self.alpha})"

    def with_alpha(self, alpha: float) -> SteeringVector:
        return SteeringVector(self.vectors, self.model_name, self.hidden_size, alpha, self.source)

    def save(self, path: str | Path) -> Path:
        """Write `path` (safetensors) and `path` + `.json` (metadata).

        Both are written to temporary files first and renamed only once both are complete, so a
        failure leaves no partial file and no stray temporary. `path` must be a file path, not a
        directory (a directory is refused: the vector's name is the user's to choose).
        """
        path, meta_path = check_vector_path(path)
        meta = {
            "model": self.model_name,
            "hidden_size": self.hidden_size,
            "layers": sorted(self.vectors),
            "norms": {str(k): float(v.norm()) for k, v in self.vectors.items()},
        }
        payloads = (
            (path, save({f"layer.{k}": v.contiguous() for k, v in self.vectors.items()})),
            (meta_path, json.dumps(meta, indent=2).encode()),
        )
        temporaries: list[str] = []
        try:
            with writing(path, what="the steering vector", fix="choose a writable file path for --out"):
                for target, data in payloads:
                    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
                    temporaries.append(tmp)
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(data)
                        handle.flush()
                        os.fsync(handle.fileno())
                for (target, _), tmp in zip(payloads, temporaries, strict=True):
                    os.replace(tmp, target)
        finally:
            for tmp in temporaries:
                Path(tmp).unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path, *, alpha: float = 1.0) -> SteeringVector:
        """Read a vector written by `save`, refusing a corrupt or foreign file with what is wrong in it.

        Raises:
            ModelLoadError: a file is missing, not safetensors / JSON, or they disagree with each other.
        """
        path = Path(path)
        if path.suffix == ".json" and path.with_suffix("").is_file():
            path = path.with_suffix("")  # the metadata file was given: use the vector beside it
        meta_path = path.with_suffix(path.suffix + ".json")
        if not path.is_file() or not meta_path.is_file():
            missing = path if not path.is_file() else meta_path
            raise ModelLoadError(
                f"the steering vector {path} needs two files, and {missing} does not exist",
                received=str(path),
                fix="build one with `steer vector build` (it writes VECTOR.safetensors and VECTOR.safetensors.json)",
            )
        meta = _read_meta(meta_path)
        vectors = _read_vectors(path, hidden_size=meta["hidden_size"])
        if "layers" in meta and sorted(meta["layers"]) != sorted(vectors):
            raise ModelLoadError(
                f"the steering vector {path} and its metadata {meta_path.name} list different layers",
                received=f"tensors for layers {sorted(vectors)}, metadata layers {meta['layers']}",
                fix="keep the two files of one `steer vector build` together, or rebuild the vector",
            )
        return cls(vectors, meta["model"], meta["hidden_size"], alpha, str(path))

    def check(self, model: LanguageModel) -> None:
        """Refuse a vector built for another model, hidden size or layer count."""
        hidden = int(model.module.config.hidden_size)
        origin = f"the steering vector {self.source}" if self.source else "this steering vector"
        if self.hidden_size != hidden or any(v.numel() != hidden for v in self.vectors.values()):
            raise InvalidArgument(
                f"{origin} has hidden size {self.hidden_size}, the model {model.name} has {hidden}",
                received=f"vector built on {self.model_name}",
                fix=f"build a vector on {model.name} with `steer vector build --model {model.name}`",
            )
        if self.model_name != model.name:
            raise InvalidArgument(
                f"{origin} was built on {self.model_name}, not on {model.name}",
                received=self.model_name,
                fix=f"build a vector on {model.name} with `steer vector build --model {model.name}`",
            )
        count = len(decoder_layers(model.module))
        outside = sorted(layer for layer in self.vectors if not 0 <= layer < count)
        if outside:
            raise InvalidArgument(
                f"{origin} steers layers {outside}, but {model.name} has {count} layers (0..{count - 1})",
                received=sorted(self.vectors),
                fix=f"build a vector for {model.name} with --layers in 0..{count - 1}",
            )

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


def check_vector_path(path: str | Path) -> tuple[Path, Path]:
    """The two files a vector is written to, (`path`, `path` + ".json"); refuses a directory.

    Creates the parent directory.

    Raises:
        InvalidArgument: `path` (or its metadata path) is an existing directory, or its parent cannot be made.
    """
    path = Path(path)
    meta_path = path.with_suffix(path.suffix + ".json")
    for target in (path, meta_path):
        if target.is_dir():
            raise InvalidArgument(
                f"the steering vector's output {target} is a directory; it must be a file path",
                received=str(target),
                fix=f"name the file, e.g. --out {path / 'vector.safetensors'}",
            )
    fix = "choose a path in a writable folder for --out"
    with writing(path.parent, what="the steering vector's folder", fix=fix, action="create"):
        path.parent.mkdir(parents=True, exist_ok=True)
    return path, meta_path


def _read_meta(meta_path: Path) -> dict[str, Any]:
    """The metadata JSON of a vector, checked: an object with a string `model` and a positive `hidden_size`."""
    fix = "rebuild the vector with `steer vector build` (it writes this file next to the .safetensors)"
    meta = read_json_file(meta_path, what="steering vector metadata", fix=fix)
    hidden = meta.get("hidden_size")
    layers = meta.get("layers", [])
    problems = [
        *(["'model' must be a string"] if not isinstance(meta.get("model"), str) else []),
        *(
            ["'hidden_size' must be a positive integer"]
            if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1
            else []
        ),
        *(
            ["'layers' must be a list of integers"]
            if not isinstance(layers, list) or not all(type(x) is int for x in layers)
            else []
        ),
    ]
    if problems:
        raise ModelLoadError(
            f"the steering vector metadata {meta_path} is not in the expected shape: {'; '.join(problems)}",
            received={k: meta.get(k) for k in ("model", "hidden_size", "layers")},
            fix=fix,
        )
    return meta


def _read_vectors(path: Path, *, hidden_size: int) -> dict[int, torch.Tensor]:
    """The `layer.N` tensors of a vector file, checked: safetensors, 1-D of `hidden_size`, finite."""
    fix = "rebuild it with `steer vector build`"
    tensors = read_weights(path, what="steering vector", fix=fix)
    vectors: dict[int, torch.Tensor] = {}
    for name, tensor in tensors.items():
        prefix, _, index = name.partition(".")
        if prefix != "layer" or not index.isdigit():
            raise ModelLoadError(
                f"{path} holds a tensor named {name!r}; a steering vector's tensors are named layer.N",
                received=sorted(tensors)[:6],
                fix=f"{fix} (this file was not written by it)",
            )
        if tensor.dim() != 1 or tensor.numel() != hidden_size or not tensor.is_floating_point():
            raise ModelLoadError(
                f"{path}: tensor {name} must be a float vector of hidden size {hidden_size} (its metadata)",
                received=f"{tensor.dtype} of shape {tuple(tensor.shape)}",
                fix=fix,
            )
        vectors[int(index)] = tensor.float()
    if not vectors:
        raise ModelLoadError(f"{path} holds no layer vectors", received="no tensors", fix=fix)
    return vectors


def _check_prompts(prompts: Sequence[str], which: str) -> list[str]:
    if isinstance(prompts, str) or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise InvalidArgument(
            f"the {which} examples must be a list of non-empty strings",
            received=repr(prompts)[:200],
            fix=f'pass e.g. {which}=["I love this.", "What a joy."]',
        )
    return list(prompts)


def build_steering_vector(
    model: LanguageModel, *, positive: Sequence[str], negative: Sequence[str], layers: Sequence[int]
) -> SteeringVector:
    """Mean-difference direction at `layers`: mean(layer output | positive) − mean(… | negative).

    Raises:
        InvalidArgument: an empty set, the same examples on both sides, or a direction of (near) zero
            norm — a zero vector would steer nothing while looking like it worked.
    """
    if not positive or not negative:
        raise InvalidArgument(
            "a steering vector needs positive and negative examples",
            received=f"{len(positive)} positive, {len(negative)} negative",
            fix="give at least one prompt of each (a few dozen work better)",
        )
    positive, negative = _check_prompts(positive, "positive"), _check_prompts(negative, "negative")
    if sorted(positive) == sorted(negative):
        raise InvalidArgument(
            "the positive and negative examples are the same texts, so their difference is zero",
            received=f"{len(positive)} examples on each side, identical",
            fix="give examples of the behaviour you want as positive and of its opposite as negative",
        )
    chosen = _check_layers(list(layers), len(decoder_layers(model.module)))
    pos = _mean_layer_outputs(model, positive, chosen)
    neg = _mean_layer_outputs(model, negative, chosen)
    vectors = {layer: pos[layer] - neg[layer] for layer in chosen}
    flat = {
        layer: float(vectors[layer].norm() / pos[layer].norm().clamp_min(1e-12))
        for layer in chosen
        if not float(vectors[layer].norm()) > MIN_RELATIVE_NORM * float(pos[layer].norm())
    }
    if flat:
        raise InvalidArgument(
            "the positive and negative examples give (nearly) the same activations, so the steering "
            "vector would be zero",
            received=", ".join(f"layer {k}: relative norm {v:.1e}" for k, v in flat.items()),
            fix="use examples that differ in the behaviour to steer (e.g. happy vs sad sentences)",
        )
    return SteeringVector(vectors, model.name, int(model.module.config.hidden_size))

"""Training on top of an adapter (`init_adapter=DIR`): the reference is the adapter's policy, not the base.

InstructGPT's RL starts from the SFT policy and penalises KL to *that* policy: a penalty towards the
raw base would pull the policy back to a model that never stops. Here the start adapter's LoRA
update is merged into the weights for the run,

    W' = W + s₀·B₀A₀            (s = lora_alpha / r, peft's scaling)

so "adapters off" — what DPO and RL use as their reference — is the start policy, and a fresh LoRA
(B₁A₁, scaling s₁) trains on top. The saved adapter is the exact sum of the two updates, one LoRA of
rank r₀ + r₁ that loads on the plain base like any other:

    s₀·B₀A₀ + s₁·B₁A₁ = [s₀B₀ | s₁B₁] · [A₀ ; A₁]     (scaling 1: lora_alpha = r = r₀ + r₁)

Checkpoints keep the fresh LoRA alone (resume puts it back on the merged weights); only the final
adapter is stacked, once (`steering.json` records `stacked_on`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from steering.controls.adapter import META, check_adapter, check_adapter_folder
from steering.errors import InvalidArgument
from steering.models.language_model import LanguageModel
from steering.paths import atomic_dir

PREFIX = "base_model.model."
# What stacking cannot express as one plain LoRA: refused with the key named.
UNSUPPORTED = ("rank_pattern", "alpha_pattern", "use_rslora", "use_dora")


def lora_scaling(config: dict[str, Any], where: Path) -> float:
    """peft's scaling s = lora_alpha / r of an adapter_config.json (the plain-LoRA cases only)."""
    for key in UNSUPPORTED:
        if config.get(key):
            raise InvalidArgument(
                f"the adapter in {where} uses {key}, which cannot be trained on top of",
                received=f"{key}={config[key]!r}",
                fix="start from a plain LoRA adapter (steer train sft makes one)",
            )
    return float(config["lora_alpha"]) / float(config["r"])


def read_lora(directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """An adapter folder's config and its tensors (safetensors: no code runs while reading)."""
    from safetensors.torch import load_file

    config = json.loads((directory / "adapter_config.json").read_text(encoding="utf-8"))
    return config, load_file(str(directory / "adapter_model.safetensors"))


def lora_pairs(tensors: dict[str, torch.Tensor], where: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Module path → (A, B) of each LoRA'd layer, from peft's saved keys."""
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, a in tensors.items():
        if key.endswith(".lora_A.weight"):
            module = key.removeprefix(PREFIX).removesuffix(".lora_A.weight")
            b = tensors.get(key.replace(".lora_A.", ".lora_B."))
            if b is None:
                raise InvalidArgument(
                    f"the adapter in {where} has lora_A without lora_B for {module}",
                    received=key,
                    fix="use an adapter folder written by peft or steer train",
                )
            pairs[module] = (a, b)
    if not pairs or len(pairs) * 2 != len(tensors):
        raise InvalidArgument(
            f"the adapter in {where} is not a plain LoRA adapter (only lora_A/lora_B matrices)",
            received=f"{len(tensors)} tensors, {len(pairs)} LoRA pairs",
            fix="start from an adapter made by steer train sft (no trained embeddings or extra heads)",
        )
    return pairs


def weight_at(model: LanguageModel, path: str) -> torch.Tensor:
    """The weight of the Linear a LoRA key names (inside a peft wrapper, its `base_layer`'s)."""
    module = model.module.get_submodule(path)
    weight = getattr(module, "base_layer", module).weight
    assert isinstance(weight, torch.Tensor)
    return weight


@contextmanager
def merged_into_weights(model: LanguageModel, adapter: str | Path) -> Iterator[dict[str, Any]]:
    """The adapter's update added into the model's weights inside the block; the weights restored after.

    Yields the start adapter's description (its path, rank, scaling) for the run's records.

    Raises:
        InvalidArgument: not an adapter folder, one trained on another base, or not a plain LoRA.
    """
    directory = check_adapter_folder(adapter)
    check_adapter(model, directory)  # another base model: refused with both names
    config, tensors = read_lora(directory)
    scaling = lora_scaling(config, directory)
    originals: dict[str, torch.Tensor] = {}
    try:
        with torch.no_grad():
            for path, (a, b) in lora_pairs(tensors, directory).items():
                weight = weight_at(model, path)
                originals[path] = weight.detach().clone()
                delta = scaling * (b.to(torch.float32) @ a.to(torch.float32))
                weight.copy_((weight.to(torch.float32) + delta.to(weight.device)).to(weight.dtype))
        yield {"path": str(directory), "r": int(config["r"]), "scaling": scaling}
    finally:
        with torch.no_grad():
            for path, weight in originals.items():
                weight_at(model, path).copy_(weight)


def stack_adapters(start: str | Path, trained: Path) -> None:
    """Rewrite the adapter folder `trained` (a LoRA trained on `start` merged) as start + trained.

    The result is exact (see the module docstring) and atomic; a folder already stacked is left alone.

    Raises:
        InvalidArgument: the two adapters LoRA different layers.
    """
    meta = json.loads((trained / META).read_text(encoding="utf-8"))
    if meta.get("stacked_on"):
        return
    start = Path(start)
    config0, tensors0 = read_lora(start)
    config1, tensors1 = read_lora(trained)
    s0, s1 = lora_scaling(config0, start), lora_scaling(config1, trained)
    pairs0, pairs1 = lora_pairs(tensors0, start), lora_pairs(tensors1, trained)
    if set(pairs0) != set(pairs1):
        raise InvalidArgument(
            "the start adapter and the trained one put LoRA on different layers",
            received=f"only in the start: {sorted(set(pairs0) - set(pairs1))[:3]}; "
            f"only in the new: {sorted(set(pairs1) - set(pairs0))[:3]}",
            fix="train with the start adapter's target_modules",
        )
    stacked: dict[str, torch.Tensor] = {}
    for path, (a0, b0) in pairs0.items():
        a1, b1 = pairs1[path]
        key = PREFIX + path
        stacked[key + ".lora_A.weight"] = torch.cat([a0.float(), a1.float()], dim=0).contiguous()
        stacked[key + ".lora_B.weight"] = torch.cat([s0 * b0.float(), s1 * b1.float()], dim=1).contiguous()
    rank = int(config0["r"]) + int(config1["r"])
    config = {**config1, "r": rank, "lora_alpha": rank, "lora_dropout": 0.0}
    start_meta = json.loads((start / META).read_text(encoding="utf-8"))
    meta |= {"stacked_on": {"path": str(start), "r": int(config0["r"]), "meta": start_meta}}
    from safetensors.torch import save_file

    with atomic_dir(trained) as tmp:
        save_file(stacked, str(tmp / "adapter_model.safetensors"))
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        for extra in trained.iterdir():  # a method's own files (none for LoRA-only methods)
            if extra.name not in ("adapter_model.safetensors", "adapter_config.json", META):
                (tmp / extra.name).write_bytes(extra.read_bytes())

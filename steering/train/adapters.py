"""Training-side LoRA helpers: add an adapter to train, save it in peft's format, take it out again.

One base model, many named adapters (transformers' PEFT integration injects them in place, so the
`LanguageModel` and the decode engine are unchanged). The base distribution is always the model with
adapters disabled, so DPO/RL use the same weights with the adapter off as their reference (no second
copy). `LoraWeights` is the loop's default `TrainedWeights`. Generating with a trained adapter is
`steering.controls.Adapter`, a model control (re-exported here until every importer moved).

An adapter directory holds `adapter_config.json` + `adapter_model.safetensors` (what
`peft.PeftModel.from_pretrained` and `model.load_adapter` read) and `steering.json`: which base model
it was trained on, so that loading it on another base is refused with both names shown.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from steering.controls.adapter import META, base_fingerprint
from steering.errors import InvalidArgument
from steering.models.language_model import LanguageModel
from steering.paths import atomic_dir


def add_lora(
    model: LanguageModel,
    name: str,
    *,
    rank: int = 16,
    alpha: int = 32,
    dropout: float = 0.05,
    target_modules: str | list[str] = "all-linear",
) -> list[Any]:
    """Inject a fresh LoRA adapter `name` into the model, make it the active one; returns its parameters."""
    from peft import LoraConfig

    for field, value in (("rank", rank), ("alpha", alpha)):
        if not isinstance(value, (int, float)) or value <= 0:
            raise InvalidArgument(
                f"LoRA {field} must be positive", received=value, fix=f"use e.g. {field}=16"
            )
    if not 0.0 <= dropout < 1.0:
        raise InvalidArgument("LoRA dropout must be in [0, 1)", received=dropout, fix="use e.g. 0.05")
    config = LoraConfig(
        r=int(rank), lora_alpha=int(alpha), lora_dropout=dropout, target_modules=target_modules
    )
    module = model.module
    if name in (getattr(module, "peft_config", None) or {}):
        raise InvalidArgument(
            f"the model already has an adapter named {name!r}", received=name, fix="use another name"
        )
    try:
        module.add_adapter(config, adapter_name=name)
    except ValueError as error:  # peft: no layer matches target_modules
        raise InvalidArgument(
            f"LoRA cannot be added to {model.name}: {str(error)[:300]}",
            received=f"target_modules={target_modules!r}",
            fix='use target_modules="all-linear", or names of linear layers such as ["q_proj", "v_proj"]',
        ) from None
    module.set_adapter(name)
    module.enable_adapters()
    params = [p for n, p in module.named_parameters() if f".{name}." in n and "lora_" in n]
    for param in params:
        param.requires_grad_(True)
    return params


def remove_adapter(model: LanguageModel, name: str) -> None:
    """Take adapter `name` out of the model (its weights are dropped; the base is untouched)."""
    module = model.module
    if name in (getattr(module, "peft_config", None) or {}):
        module.delete_adapter(name)
        if getattr(module, "peft_config", None):
            # peft makes a remaining adapter the active one: switch it off, the state `Adapter.load`
            # leaves a model in (adapters loaded, the base answering until one is attached).
            module.disable_adapters()


def write_adapter_files(
    model: LanguageModel, name: str, directory: Path, *, extra: dict[str, Any] | None = None
) -> None:
    """Write adapter `name` in peft's format into the existing `directory` (not atomic by itself).

    `extra` goes into steering.json, after the base model's fingerprint.
    """
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    module = model.module
    state = get_peft_model_state_dict(module, adapter_name=name, save_embedding_layers=False)
    # peft's own layout: keys under "base_model.model." (PeftModel.from_pretrained and load_adapter read it).
    tensors = {f"base_model.model.{key}": value.detach().cpu().contiguous() for key, value in state.items()}
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    config = module.peft_config[name]
    config.base_model_name_or_path = model.name
    config.save_pretrained(str(directory))
    meta = {**base_fingerprint(model), "adapter": name, **(extra or {})}
    (directory / META).write_text(json.dumps(meta, indent=2) + "\n")


def save_adapter(
    model: LanguageModel,
    name: str,
    directory: Path,
    extra: dict[str, Any] | None = None,
    write_more: Callable[[Path], None] | None = None,
) -> Path:
    """Write adapter `name` as a peft adapter directory, atomically (a reader never sees half of it).

    `extra` goes into steering.json; `write_more(tmp_dir)` adds files of the method (a reward head).
    """
    with atomic_dir(Path(directory)) as tmp:
        write_adapter_files(model, name, tmp, extra=extra)
        if write_more is not None:
            write_more(tmp)
    return Path(directory)


def load_adapter_weights(model: LanguageModel, name: str, directory: Path) -> None:
    """Put a checkpoint's adapter weights into the live adapter `name` (same names, same shapes).

    Raises:
        InvalidArgument: the checkpoint's weights do not fit this model's adapter.
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    saved = load_file(str(directory / "adapter_model.safetensors"))
    state = {key.removeprefix("base_model.model."): value for key, value in saved.items()}
    result = set_peft_model_state_dict(model.module, state, adapter_name=name)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise InvalidArgument(
            f"the checkpoint adapter in {directory} does not fit this model",
            received=unexpected[:4],
            fix="resume with the same model and LoRA settings",
        )


class LoraWeights:
    """The training loop's default `TrainedWeights`: a fresh LoRA adapter named after the method."""

    def __init__(self, name: str) -> None:
        self.name = name

    def make_parameters(self, model: LanguageModel, config: Any) -> list[Any]:
        """Add the adapter with the config's LoRA settings (rank, alpha, dropout, target modules)."""
        return add_lora(
            model,
            self.name,
            rank=config.lora_rank,
            alpha=config.lora_alpha,
            dropout=config.lora_dropout,
            target_modules=config.target_modules,
        )

    def save(self, model: LanguageModel, directory: Path, meta: dict[str, Any]) -> None:
        write_adapter_files(model, self.name, directory, extra=meta)

    def load(self, model: LanguageModel, directory: Path) -> None:
        load_adapter_weights(model, self.name, directory)

    def release(self, model: LanguageModel) -> None:
        remove_adapter(model, self.name)


@contextmanager
def adapters_disabled(model: LanguageModel) -> Iterator[None]:
    """The base model: every adapter off inside, restored after (the reference of DPO and RL)."""
    module = model.module
    active = bool(getattr(module, "_hf_peft_config_loaded", False)) and _enabled(module)
    if active:
        module.disable_adapters()
    try:
        yield
    finally:
        if active:
            module.enable_adapters()


def _enabled(module: Any) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(not layer.disable_adapters for layer in module.modules() if isinstance(layer, BaseTunerLayer))

"""LoRA adapters on a loaded model: add one to train, save it in peft's format, use it to generate.

One base model, many named adapters (transformers' PEFT integration injects them in place, so the
`LanguageModel` and the decode engine are unchanged). The base distribution is always the model with
adapters disabled: `Adapter` is a model control — active while sampling, disabled for the exact base
books — so KL to the base is exact for fine-tuned models too, and DPO/RL use the same weights with
the adapter off as their reference (no second copy).

An adapter directory holds `adapter_config.json` + `adapter_model.safetensors` (what
`peft.PeftModel.from_pretrained` and `model.load_adapter` read) and `steering.json`: which base model
it was trained on, so that loading it on another base is refused with both names shown.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steering.errors import InvalidArgument
from steering.models.language_model import LanguageModel
from steering.paths import atomic_dir

META = "steering.json"


def base_fingerprint(model: LanguageModel) -> dict[str, Any]:
    """What an adapter must match: the base model's name and the shapes its weights plug into."""
    config = model.module.config
    return {
        "base_model": model.name,
        "model_type": str(getattr(config, "model_type", "")),
        "hidden_size": int(getattr(config, "hidden_size", 0)),
        "num_hidden_layers": int(getattr(config, "num_hidden_layers", 0)),
        "vocab_size": int(getattr(config, "vocab_size", 0)),
    }


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
    module.add_adapter(config, adapter_name=name)
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
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    module = model.module
    state = get_peft_model_state_dict(module, adapter_name=name, save_embedding_layers=False)
    # peft's own layout: keys under "base_model.model." (PeftModel.from_pretrained and load_adapter read it).
    tensors = {f"base_model.model.{key}": value.detach().cpu().contiguous() for key, value in state.items()}
    with atomic_dir(Path(directory)) as tmp:
        save_file(tensors, str(tmp / "adapter_model.safetensors"))
        config = module.peft_config[name]
        config.base_model_name_or_path = model.name
        config.save_pretrained(str(tmp))
        meta = {**base_fingerprint(model), "adapter": name, **(extra or {})}
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        if write_more is not None:
            write_more(tmp)
    return Path(directory)


def check_adapter(model: LanguageModel, directory: Path) -> dict[str, Any]:
    """Refuse a missing or foreign adapter directory; returns its steering.json."""
    directory = Path(directory)
    if not (directory / "adapter_config.json").is_file():
        raise InvalidArgument(
            f"{directory} is not an adapter directory (no adapter_config.json)",
            received=str(directory),
            fix="pass the `adapter` folder of a training run (steer train … writes RUN/adapter)",
        )
    meta_path = directory / META
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    expected = base_fingerprint(model)
    shapes = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")
    mismatched = [key for key in shapes if key in meta and meta[key] != expected[key]]
    if mismatched:
        raise InvalidArgument(
            f"the adapter in {directory} was trained on {meta.get('base_model')!r}, not on {model.name!r}",
            received=", ".join(f"{k}: {meta[k]} vs {expected[k]}" for k in mismatched),
            fix=f"load it with --model {meta.get('base_model')}, or train an adapter for {model.name}",
        )
    return meta


@dataclass
class Adapter:
    """A model control: the adapter in `path` is active while sampling, disabled for the base books."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def key(self) -> str:
        """The adapter's name in the model: a digest of its path (module names cannot hold '.' or '/')."""
        import hashlib

        return "adapter_" + hashlib.sha1(str(self.path.resolve()).encode()).hexdigest()[:12]

    def load(self, model: LanguageModel) -> None:
        """Inject the adapter's weights, leaving the adapters disabled.

        One loaded `Adapter` per model at a time: another one is taken out first (loading a second
        peft adapter next to a first re-initialises the first's weights in transformers 5).
        """
        module = model.module
        loaded = getattr(module, "peft_config", None) or {}
        if self.key in loaded:
            return
        check_adapter(model, self.path)
        for name in [n for n in loaded if n.startswith("adapter_")]:
            module.delete_adapter(name)
        module.load_adapter(str(self.path), adapter_name=self.key)
        module.disable_adapters()

    @contextmanager
    def attached(self, model: LanguageModel) -> Iterator[None]:
        self.load(model)
        module = model.module
        module.set_adapter(self.key)
        module.enable_adapters()
        try:
            yield
        finally:
            module.disable_adapters()

    def __repr__(self) -> str:
        return f"Adapter({str(self.path)!r})"


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

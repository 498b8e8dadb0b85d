"""`Adapter`: a trained peft adapter (LoRA) as a model control — on while sampling, off for the base books.

One base model, many named adapters (transformers' PEFT integration injects them in place, so the
`LanguageModel` and the decode engine are unchanged). The base distribution is always the model with
adapters disabled: `Adapter` is active while the engine samples and disabled when it rescores the
sampled tokens under the base, so log p_base, KL and importance weights stay exact for fine-tuned
models too.

An adapter directory (what `steer train …` writes in RUN/adapter) holds `adapter_config.json` +
`adapter_model.safetensors` (what `peft.PeftModel.from_pretrained` and `model.load_adapter` read) and
`steering.json`: which base model it was trained on, so that loading it on another base is refused
with both names shown. Training-side helpers (adding, saving, removing adapters) are in
`steering.train.adapters`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steering.errors import InvalidArgument
from steering.models.language_model import LanguageModel

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


def check_adapter(model: LanguageModel, directory: Path) -> dict[str, Any]:
    """Refuse a missing or foreign adapter directory; returns its steering.json.

    Raises:
        InvalidArgument: no adapter_config.json, or the adapter was trained on a base of other shapes.
    """
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
    """A model control: the adapter in `path` is active while sampling, disabled for the base books.

    Use it like any control: `generate(model, prompts, controls=[Adapter("runs/qa/adapter")])`.
    """

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def key(self) -> str:
        """The adapter's name in the model: a digest of its path (module names cannot hold '.' or '/')."""
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
        """The adapter on inside the block (loaded first if needed), off again after."""
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

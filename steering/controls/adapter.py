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

Every file is checked before peft sees it, so a corrupt or foreign adapter is refused with the file
and what is wrong with it: `adapter_config.json` must be a JSON object naming a `peft_type`;
`adapter_model.safetensors` must be a complete safetensors file of finite tensors; each LoRA matrix
must fit the layer it plugs into. The base it was trained on is read from `steering.json`, or, for
an adapter written by peft elsewhere, from `adapter_config.json`'s `base_model_name_or_path`: an
adapter whose base is a bundled model's name loads only on that model; any other recorded base
(a Hub id, a path) is checked by the shapes of its weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from steering.controls.base import current_rows
from steering.errors import InvalidArgument, ModelLoadError
from steering.models.language_model import LanguageModel
from steering.paths import unfinished_run_note

META = "steering.json"
CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
RETRAIN = "train it again (steer train … writes RUN/adapter), or copy the whole adapter folder again"


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


def read_json_file(path: Path, *, what: str, fix: str) -> dict[str, Any]:
    """A JSON object from a model file (adapter, soft prompt, vector metadata).

    Raises:
        ModelLoadError: the file cannot be read, is not UTF-8 JSON, or is not a JSON object.
    """
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(
            f"the {what} {path} is not readable JSON", received=f"{type(error).__name__}: {error}", fix=fix
        ) from None
    if not isinstance(value, dict):
        raise ModelLoadError(
            f"the {what} {path} must hold a JSON object", received=f"a JSON {type(value).__name__}", fix=fix
        )
    return value


def read_weights(path: Path, *, what: str, fix: str) -> dict[str, Any]:
    """The tensors of a safetensors file, all finite.

    Raises:
        ModelLoadError: the file is truncated, not safetensors, or holds NaN/inf values.
    """
    from safetensors.torch import load

    try:
        tensors = load(path.read_bytes())
    except Exception as error:  # safetensors raises its own error type for every malformed file
        raise ModelLoadError(
            f"the {what} {path} is not a readable safetensors file (truncated, corrupt or another format)",
            received=f"{type(error).__name__}: {error}",
            fix=fix,
        ) from None
    bad = [
        name for name, tensor in tensors.items() if tensor.is_floating_point() and not tensor.isfinite().all()
    ]
    if bad:
        raise ModelLoadError(f"the {what} {path} holds NaN or infinite values", received=bad[:4], fix=fix)
    return tensors


def check_base(recorded: str, model: LanguageModel, *, what: str) -> None:
    """Refuse `what` (an adapter, a soft prompt) recorded as trained on another bundled model.

    A recorded base that is not a bundled model's name (a Hub id or a path from elsewhere) is not
    compared by name: the caller checks shapes instead.
    """
    from steering.models.registry import REGISTRY

    if recorded and recorded in REGISTRY and recorded != model.name:
        raise InvalidArgument(
            f"{what} was trained on {recorded!r}, not on {model.name!r}",
            received=f"trained on {recorded}, loading on {model.name}",
            fix=f"load it with --model {recorded}, or train one for {model.name}",
        )


def _misfits(model: LanguageModel, tensors: dict[str, Any]) -> list[str]:
    """LoRA matrices that do not fit this model: their layer is missing or of another width."""
    modules = dict(model.module.named_modules())
    problems = []
    for key, tensor in tensors.items():
        name = key.removeprefix("base_model.model.")
        for marker, axis, attribute in ((".lora_A.", 1, "in_features"), (".lora_B.", 0, "out_features")):
            if marker not in name:
                continue
            layer_name = name.split(marker)[0]
            layer = modules.get(layer_name)
            size = getattr(layer, attribute, None)
            if layer is None:
                problems.append(f"{layer_name}: no such layer")
            elif isinstance(size, int) and (tensor.dim() != 2 or tensor.shape[axis] != size):
                problems.append(f"{layer_name}: {tuple(tensor.shape)} vs {attribute}={size}")
    return problems


def check_adapter_folder(directory: str | Path) -> Path:
    """Refuse a path that is not an adapter folder (missing, or no adapter config in it).

    Raises:
        InvalidArgument: names the path, and the adapter folder next to it if there is one.
    """
    directory = Path(directory)
    if not (directory / CONFIG).is_file():
        near = [d for d in (directory / "adapter", directory.parent) if (d / CONFIG).is_file()]
        hint = f"; did you mean {near[0]}?" if near else ""
        problem = "does not exist" if not directory.exists() else f"is not an adapter directory (no {CONFIG})"
        raise InvalidArgument(
            f"{directory} {problem}{hint}",
            received=str(directory),
            fix="pass the `adapter` folder of a training run (steer train … writes RUN/adapter)",
        )
    return directory


def check_adapter(model: LanguageModel, directory: Path) -> dict[str, Any]:
    """Refuse a missing, corrupt or foreign adapter directory; returns its steering.json ({} if none).

    Raises:
        InvalidArgument: not an adapter directory, or the adapter was trained on another base.
        ModelLoadError: a file of the adapter is corrupt (not JSON, truncated safetensors, NaN weights).
    """
    directory = check_adapter_folder(directory)
    config = read_json_file(directory / CONFIG, what="adapter config", fix=RETRAIN)
    if not isinstance(config.get("peft_type"), str):
        raise ModelLoadError(
            f"the adapter config {directory / CONFIG} is not a peft adapter config (no 'peft_type')",
            received=sorted(config)[:8],
            fix=RETRAIN,
        )
    meta = (
        read_json_file(directory / META, what="adapter metadata", fix=RETRAIN)
        if (directory / META).is_file()
        else {}
    )
    recorded = str(meta.get("base_model") or config.get("base_model_name_or_path") or "")
    what = f"the adapter in {directory}"
    expected = base_fingerprint(model)
    shapes = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")
    mismatched = [key for key in shapes if key in meta and meta[key] != expected[key]]
    if mismatched:
        raise InvalidArgument(
            f"{what} was trained on {recorded!r}, not on {model.name!r}",
            received=", ".join(f"{k}: {meta[k]} vs {expected[k]}" for k in mismatched),
            fix=f"load it with --model {recorded}, or train an adapter for {model.name}",
        )
    check_base(recorded, model, what=what)
    weights = directory / WEIGHTS
    if not weights.is_file():
        other = [p.name for p in directory.glob("adapter_model.*")]
        raise ModelLoadError(
            f"{what} has no {WEIGHTS}"
            + (f" (only {other}: pickled weights are not loaded)" if other else ""),
            received=sorted(p.name for p in directory.iterdir())[:8],
            fix="save the adapter with safetensors (peft's save_pretrained does by default), or " + RETRAIN,
        )
    tensors = read_weights(weights, what="adapter weights file", fix=RETRAIN)
    misfits = _misfits(model, tensors)
    if misfits:
        raise InvalidArgument(
            f"{what} was trained on {recorded or 'another base'!r}, not on {model.name!r}: "
            f"{len(misfits)} of its LoRA matrices do not fit this model's layers",
            received="; ".join(misfits[:3]),
            fix=f"load it with the model it was trained on, or train an adapter for {model.name}",
        )
    return meta


@contextmanager
def _beside_others_quietly() -> Iterator[None]:
    """Load an adapter next to others without transformers' and peft's notes about it.

    transformers reports the other adapters' weights as "MISSING … newly initialized" (they are not:
    `tests/controls/test_adapter.py` checks each still gives its own numbers) and peft warns that the
    model has several adapters, which is the point here.
    """
    # The report is logged by the peft integration's logger (transformers 5); the report module's own too.
    loggers = [
        logging.getLogger(n) for n in ("transformers.integrations.peft", "transformers.utils.loading_report")
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@dataclass
class Adapter:
    """A model control: the adapter in `path` is active while sampling, disabled for the base books.

    Use it like any control: `generate(model, prompts, controls=[Adapter("runs/qa/adapter")])`.
    """

    path: Path

    def __post_init__(self) -> None:
        self.path = check_adapter_folder(self.path)  # a wrong path is said now, not after the model loads

    @property
    def key(self) -> str:
        """The adapter's name in the model: a digest of its path (module names cannot hold '.' or '/')."""
        return "adapter_" + hashlib.sha1(str(self.path.resolve()).encode()).hexdigest()[:12]

    def load(self, model: LanguageModel, *, alone: bool = True) -> None:
        """Inject the adapter's weights, leaving the adapters disabled.

        With `alone` (the default) the other loaded `Adapter`s are taken out first, so a process that
        uses many adapters in turn (reflection rounds, recipe stages) holds one at a time;
        `MixedAdapters` loads several beside each other (`alone=False`).
        """
        module = model.module
        loaded = getattr(module, "peft_config", None) or {}
        if self.key in loaded:
            return
        check_adapter(model, self.path)
        note = unfinished_run_note(self.path)  # RUN/adapter of a run that was killed or interrupted
        if note:
            logging.getLogger(__name__).warning(note)
        for name in [n for n in loaded if n.startswith("adapter_") and alone]:
            module.delete_adapter(name)
        others = bool(getattr(module, "peft_config", None))
        try:
            with _beside_others_quietly() if others else nullcontext():
                module.load_adapter(str(self.path), adapter_name=self.key)
        except Exception as error:  # what the checks above cannot foresee (a config peft rejects)
            if self.key in (getattr(module, "peft_config", None) or {}):
                module.delete_adapter(self.key)
            raise ModelLoadError(
                f"peft could not load the adapter in {self.path}",
                received=f"{type(error).__name__}: {str(error)[:200]}",
                fix=RETRAIN,
            ) from error
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


BASE_ROW = "__base__"  # peft's name for "no adapter" in a mixed batch


@dataclass
class MixedAdapters:
    """A model control: prompt i is decoded with `adapters[i]` (None: the base), every row in one forward.

    The rows of one batch may wear different adapters (peft's mixed-adapter batches): each LoRA layer
    is called with `adapter_names`, one per row, and adds each adapter's update to its own rows only.
    The numbers are those of decoding each prompt with its own `Adapter` (tests check them), with one
    forward per step for all of them instead of one `generate` call per adapter. The engine says which
    prompt each row belongs to (`controls.base.forward_rows`); the base books are the plain model's.

        generate(model, prompts, controls=[MixedAdapters([tutor, None, tutor, critic])])
    """

    adapters: Sequence[Path | str | None]
    _wearing: tuple[Adapter | None, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.adapters, str | Path) or not len(self.adapters):
            raise InvalidArgument(
                "MixedAdapters takes one adapter folder (or None: the base) per prompt",
                received=repr(self.adapters)[:80],
                fix="pass a list, e.g. MixedAdapters([tutor_dir, None, critic_dir])",
            )
        self.adapters = tuple(None if a is None else check_adapter_folder(a) for a in self.adapters)
        self._wearing = tuple(None if a is None else Adapter(Path(a)) for a in self.adapters)

    def names(self) -> list[str]:
        """The adapter name of each prompt (peft's "__base__" for none)."""
        return [BASE_ROW if a is None else a.key for a in self._wearing]

    @contextmanager
    def attached(self, model: LanguageModel) -> Iterator[None]:
        """Every distinct adapter loaded beside the others, enabled, and each row routed to its own."""
        from peft.tuners.lora import LoraLayer

        distinct = {a.key: a for a in self._wearing if a is not None}
        if not distinct:  # every prompt on the base: nothing to attach
            yield
            return
        for adapter in distinct.values():
            adapter.load(model, alone=False)
        names = self.names()

        def route(_: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
            rows = current_rows()
            if rows is None:
                raise InvalidArgument(
                    "MixedAdapters ran the model without knowing which prompt each row belongs to",
                    received="a forward pass outside the decode engine",
                    fix="use it through generate(), or wrap the call in steering.controls.forward_rows(indices)",
                )
            if max(rows, default=0) >= len(names):
                raise InvalidArgument(
                    f"MixedAdapters names {len(names)} adapters, one per prompt, but got prompt {max(rows)}",
                    received=f"{len(names)} adapters",
                    fix="pass one adapter (or None) per prompt given to generate",
                )
            return args, {**kwargs, "adapter_names": [names[r] for r in rows]}

        module = model.module
        # A LoraLayer is a torch module (peft mixes it into nn.Linear and friends); its type says not.
        layers = [cast(torch.nn.Module, m) for m in module.modules() if isinstance(m, LoraLayer)]
        hooks = [layer.register_forward_pre_hook(route, with_kwargs=True) for layer in layers]
        module.enable_adapters()
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()
            module.disable_adapters()

    def __repr__(self) -> str:
        shown = ", ".join("None" if a is None else repr(str(a)) for a in self.adapters)
        return f"MixedAdapters([{shown}])"

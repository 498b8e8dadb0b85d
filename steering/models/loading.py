"""`load_model`: a registry name, a `.gguf` file or a Hugging Face directory → `LanguageModel`."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from steering.errors import InvalidArgument, ModelLoadError, ModelNotFound, did_you_mean
from steering.models.cache import cache_is_valid, check_gguf, convert_gguf, sha256_file
from steering.models.language_model import LanguageModel
from steering.models.registry import REGISTRY, RegistryEntry
from steering.models.tiny import tiny_random_model
from steering.paths import steering_home, unfinished_run_note


def force_offline() -> None:
    """The library never reaches a model hub: weights come from packages or local files.

    Forced, not defaulted: HF_HUB_OFFLINE=0 in the environment must not let a load of ours go online.
    huggingface_hub reads the variable once, when it is imported, so when it was imported before us its
    setting is turned on too; and every `from_pretrained` of ours passes `local_files_only=True`.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]


force_offline()

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# torch: transformers on the dequantised weights (every control, training). llamacpp: the GGUF itself
# through llama-cpp-python (logit controls, pools, grammars, books; `steering.models.llamacpp`).
BACKENDS = ("torch", "llamacpp")


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if not isinstance(dtype, str) or dtype not in DTYPES:
        hint = did_you_mean(dtype, DTYPES) if isinstance(dtype, str) else ""
        raise InvalidArgument(
            "unknown dtype",
            received=repr(dtype),
            fix=f"use one of {', '.join(DTYPES)}" + hint,
        )
    return DTYPES[dtype]


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    dtype: str | torch.dtype = "bfloat16",
    device: str = "cpu",
    home: Path | None = None,
    backend: str = "torch",
) -> LanguageModel:
    """Load a model for steering.

    Args:
        name_or_path: a registry name (`gemma-270m`, `smollm2-135m-instruct`, `tiny-random`, `tiny-letters`; see
            `steer models`), a path to a `.gguf` file, or a local Hugging Face model directory.
        dtype: compute dtype ("bfloat16" by default: fastest on CPU; log-probabilities are float32).
        device: torch device string.
        home: cache root; defaults to `STEERING_HOME` or `~/.cache/steering`.
        backend: "torch" (default: transformers on the dequantised weights; every control and
            training) or "llamacpp" (the GGUF file run by llama.cpp: faster decoding, logit controls,
            pools and grammars with exact books; `dtype` and `device` do not apply; needs the
            `llamacpp` extra). See `steering.models.llamacpp`.

    The first load of a GGUF converts it to a cached safetensors copy (tens of seconds); later loads
    read the cache (seconds). A partial or corrupt cache is rebuilt.

    Raises:
        InvalidArgument: `name_or_path` is not a string or path, or `dtype` is unknown.
        ModelNotFound: no such registry name or path.
    """
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise InvalidArgument(
            "load_model takes a model name or path",
            received=repr(name_or_path),
            fix="pass a registry name (" + ", ".join(REGISTRY) + "; `steer models` lists them), a .gguf "
            "file or a Hugging Face model directory",
        )
    force_offline()
    if backend not in BACKENDS:
        raise InvalidArgument(
            "unknown backend." + (did_you_mean(backend, BACKENDS) if isinstance(backend, str) else ""),
            received=repr(backend),
            fix="use backend='torch' (default) or backend='llamacpp'",
        )
    torch_dtype = resolve_dtype(dtype)
    home = home or steering_home()
    if backend == "llamacpp":
        from steering.models.llamacpp import load_llamacpp

        return load_llamacpp(name_or_path, home=home)
    if name_or_path in ("tiny-random", "tiny-letters"):
        tiny_module, tokenizer = tiny_random_model(dtype=torch_dtype, letters=name_or_path == "tiny-letters")
        module: Any = tiny_module
        return _wrap(module.to(torch.device(device)), tokenizer, name=name_or_path)
    if name_or_path in REGISTRY:
        folder = _cached_registry_model(REGISTRY[name_or_path], home)
        return _load_folder(folder, name=name_or_path, dtype=torch_dtype, device=device)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        folder = _cached_gguf_file(path, home)
        return _load_folder(folder, name=str(path), dtype=torch_dtype, device=device)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFound(
                f"{path} is a directory but not a Hugging Face model directory (no config.json)",
                received=str(path),
                fix="point at a directory made by `save_pretrained`, a .gguf file, or a registry name",
            )
        note = unfinished_run_note(path)  # RUN/model of a full fine-tuning run that did not finish
        if note:
            log.warning(note)
        return _load_folder(path, name=str(path), dtype=torch_dtype, device=device)
    looks_like_path = os.sep in name_or_path or name_or_path.endswith(".gguf") or name_or_path.startswith(".")
    if looks_like_path:
        raise ModelNotFound(
            f"the model path {name_or_path} does not exist",
            received=name_or_path,
            fix="check the path, or use a registry name: " + ", ".join(REGISTRY),
        )
    raise ModelNotFound(
        f"unknown model name '{name_or_path}'." + did_you_mean(name_or_path, REGISTRY),
        received=name_or_path,
        fix="known names: " + ", ".join(REGISTRY) + " (`steer models` lists them); or pass a path",
    )


def cache_folder(entry_name: str, home: Path) -> Path:
    return home / "models" / entry_name


def _cached_registry_model(entry: RegistryEntry, home: Path) -> Path:
    target = cache_folder(entry.name, home)
    if cache_is_valid(target):
        return target
    if target.exists():
        log.warning("the cached copy of %s at %s is incomplete or corrupt; rebuilding it", entry.name, target)
    assert entry.locate is not None
    workdir = Path(tempfile.mkdtemp(prefix=".assemble-", dir=_ensure(home / "models")))
    try:
        gguf_path, expected = entry.locate(workdir)
        digest = expected or sha256_file(gguf_path)
        convert_gguf(gguf_path, target, source_sha256=digest, name=entry.name)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return target


def _cached_gguf_file(path: Path, home: Path) -> Path:
    check_gguf(path)
    digest = sha256_file(path)
    target = home / "models" / f"file-{path.stem}-{digest[:12]}"
    if not cache_is_valid(target):
        convert_gguf(path, target, source_sha256=digest, name=str(path))
    return target


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _load_folder(folder: Path, *, name: str, dtype: torch.dtype, device: str) -> LanguageModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        module: Any = AutoModelForCausalLM.from_pretrained(
            folder, dtype=dtype, trust_remote_code=False, local_files_only=True
        )
    except Exception as error:
        raise ModelLoadError(
            f"could not load the model in {folder}",
            received=f"{type(error).__name__}: {error}",
            fix="if this is a steering cache, delete the folder and load again to rebuild it",
        ) from error
    return _wrap(module.to(torch.device(device)).eval(), tokenizer, name=name)


def contiguous_head_input(_module: torch.nn.Module, args: tuple) -> tuple:
    # clone, not .contiguous(): a (B, 1, H) slice counts as contiguous but keeps its parent's strides.
    return (args[0].clone(memory_format=torch.contiguous_format), *args[1:])


def _wrap(module: Any, tokenizer: Any, *, name: str) -> LanguageModel:
    module.requires_grad_(False)
    head = module.get_output_embeddings()
    if head is not None:
        # `logits_to_keep` hands the output layer a non-contiguous slice of the hidden states; on CPU
        # torch then runs a batched matmul that copies the whole (vocab × hidden) weight per row —
        # seconds per prefill with a 262k vocabulary. A contiguous input takes the plain matmul path.
        head.register_forward_pre_hook(contiguous_head_input)
    tokens = special_tokens(tokenizer, module.config, getattr(module, "generation_config", None), name=name)
    param = next(module.parameters())
    return LanguageModel(
        module=module,
        tokenizer=tokenizer,
        name=name,
        device=param.device,
        dtype=param.dtype,
        eos_token_ids=tokens.eos_token_ids,
        pad_token_id=tokens.pad_token_id,
        context_length=tokens.context_length,
        add_bos=tokens.add_bos,
    )


@dataclass(frozen=True)
class SpecialTokens:
    """What a `LanguageModel` needs besides its weights, read from the tokenizer and the configs."""

    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    add_bos: bool
    context_length: int


def special_tokens(tokenizer: Any, config: Any, generation: Any, *, name: str) -> SpecialTokens:
    """End-of-text ids (the generation config's, then the model config's, plus the tokenizer's), the
    padding id, whether prompts start with BOS, and the context window: the same for every backend."""
    eos = getattr(generation, "eos_token_id", None) or config.eos_token_id or tokenizer.eos_token_id
    eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else (int(eos),)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
        eos_ids = (*eos_ids, int(tokenizer.eos_token_id))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    adds_bos = tokenizer.bos_token_id is not None and bool(probe) and probe[0] == tokenizer.bos_token_id
    # Some tokenizers (byte-level ones built in code) do not add BOS themselves but the model expects it.
    adds_bos = adds_bos or name in ("tiny-random", "tiny-letters")
    context = int(getattr(config, "max_position_embeddings", 2048))
    return SpecialTokens(
        eos_token_ids=eos_ids, pad_token_id=int(pad), add_bos=adds_bos, context_length=context
    )


def converted_folder(name_or_path: str, home: Path | None = None) -> Path:
    """The cached Hugging Face copy (config, tokenizer, weights) of a registry model or a .gguf file,
    converted on first use; another backend reads its tokenizer and configs from it."""
    home = home or steering_home()
    if name_or_path in REGISTRY and REGISTRY[name_or_path].locate is not None:
        return _cached_registry_model(REGISTRY[name_or_path], home)
    return _cached_gguf_file(Path(name_or_path).expanduser(), home)


def cached_models(home: Path | None = None) -> dict[str, Path | None]:
    """Registry name → cache folder if a valid cache exists, else None."""
    home = home or steering_home()
    result: dict[str, Path | None] = {}
    for name in REGISTRY:
        folder = cache_folder(name, home)
        result[name] = folder if cache_is_valid(folder) else None
    return result


__all__ = [
    "BACKENDS",
    "DTYPES",
    "ModelLoadError",
    "SpecialTokens",
    "cached_models",
    "converted_folder",
    "load_model",
    "resolve_dtype",
    "special_tokens",
]

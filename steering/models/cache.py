"""GGUF → cached safetensors copy, written atomically with a manifest, validated on every load.

Layout: `STEERING_HOME/models/<key>/` holding `model.safetensors`, `config.json`,
`generation_config.json`, tokenizer files and `manifest.json`. The directory appears only once it is
complete (atomic rename), and the manifest records the source checksum, the library versions and a
fingerprint of every file, so a partial or corrupt copy is detected and rebuilt, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from steering.errors import ModelLoadError
from steering.paths import atomic_dir

CACHE_FORMAT = 1
MANIFEST = "manifest.json"
GGUF_MAGIC = b"GGUF"
_FINGERPRINT_BYTES = 1 << 20

log = logging.getLogger(__name__)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(path: Path) -> dict[str, object]:
    """Size plus a hash of the first and last MiB: cheap enough for every load, catches truncation."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        digest.update(handle.read(_FINGERPRINT_BYTES))
        if size > _FINGERPRINT_BYTES:
            handle.seek(max(size - _FINGERPRINT_BYTES, _FINGERPRINT_BYTES))
            digest.update(handle.read())
    return {"size": size, "head_tail_sha256": digest.hexdigest()}


def check_gguf(path: Path) -> None:
    """Raise ModelLoadError unless `path` starts with the GGUF magic bytes."""
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise ModelLoadError(
            f"{path} is not a GGUF file (it does not start with the bytes 'GGUF')",
            received=f"first bytes {magic!r}",
            fix="pass a .gguf model file, a Hugging Face model directory, or a registry name (`steer models`)",
        )


def cache_is_valid(folder: Path) -> bool:
    """True when `folder` holds a complete cache of the current format whose files match the manifest."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != CACHE_FORMAT:
            return False
        for name, expected in manifest["files"].items():
            path = folder / name
            if not path.is_file() or fingerprint(path) != expected:
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _library_versions() -> dict[str, str]:
    import gguf
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gguf": getattr(gguf, "__version__", "unknown"),
    }


def convert_gguf(gguf_path: Path, target: Path, *, source_sha256: str, name: str) -> None:
    """Dequantise a GGUF with transformers and write a float32 safetensors copy to `target` atomically."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    check_gguf(gguf_path)
    folder, filename = gguf_path.parent, gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename, local_files_only=True)
        module = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=filename, dtype=torch.float32, local_files_only=True
        )
    except Exception as error:  # transformers raises many types for a bad file
        raise ModelLoadError(
            f"transformers could not read the GGUF file {gguf_path}",
            received=f"{type(error).__name__}: {error}",
            fix="check that the file is a complete GGUF of a supported architecture (llama, gemma3, qwen2, …)",
        ) from error
    with atomic_dir(target) as tmp:
        save_model(module, str(tmp / "model.safetensors"))
        config = module.config.to_dict()
        config.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        module.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_manifest(
            tmp,
            name=name,
            source=str(gguf_path),
            source_sha256=source_sha256,
            versions=_library_versions(),
        )
    log.info("cached %s at %s", name, target)


def write_manifest(folder: Path, **fields: object) -> None:
    """Write the manifest `cache_is_valid` checks: the format, `fields`, and every file's fingerprint.

    Call it last, inside `atomic_dir`, once every other file of the folder is written.
    """
    files = {p.name: fingerprint(p) for p in sorted(folder.iterdir()) if p.is_file()}
    manifest = {"format": CACHE_FORMAT, **fields, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))

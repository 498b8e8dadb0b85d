"""Models: load a bundled model, a GGUF file or a Hugging Face directory as a `LanguageModel`."""

from steering.models.language_model import LanguageModel
from steering.models.loading import cached_models, load_model, resolve_dtype
from steering.models.registry import DEFAULT_MODEL, REGISTRY, RegistryEntry

__all__ = [
    "DEFAULT_MODEL",
    "REGISTRY",
    "LanguageModel",
    "RegistryEntry",
    "cached_models",
    "load_model",
    "resolve_dtype",
]

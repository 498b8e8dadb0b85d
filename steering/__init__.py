"""steering: make a language model do what you want, and know what each control costs.

A base distribution p(x), controls that reshape it, and exact books (log q, log p_base) for every
sample. Start with `load_model` and `generate`.
"""

from steering.decode import Sample, Samples, generate
from steering.errors import SteeringError
from steering.models import LanguageModel, load_model

__version__ = "0.1.0"

__all__ = ["LanguageModel", "Sample", "Samples", "SteeringError", "generate", "load_model"]

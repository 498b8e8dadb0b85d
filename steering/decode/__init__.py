"""Decoding: one batched sampling loop that returns `Samples` with exact log q and log p_base.

`generate` is the entry point; `BatchDecoder` (with `DecodeRow`, `DecodeStats`) is the loop's public
API for samplers that drive decoding step by step (SMC) and for benchmarks that read its counters.
"""

from steering.controls.base import DecodeState
from steering.decode.decoder import BatchDecoder
from steering.decode.engine import generate
from steering.decode.rows import DecodeRow
from steering.decode.samples import Sample, Samples
from steering.decode.sampling import row_seed, sample_inverse_cdf, step_kl
from steering.decode.stats import DecodeStats
from steering.decode.stops import find_stop

__all__ = [
    "BatchDecoder",
    "DecodeRow",
    "DecodeState",
    "DecodeStats",
    "Sample",
    "Samples",
    "find_stop",
    "generate",
    "row_seed",
    "sample_inverse_cdf",
    "step_kl",
]

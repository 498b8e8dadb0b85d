"""Decoding: one batched sampling loop that returns `Samples` with exact log q and log p_base."""

from steering.decode.engine import generate
from steering.decode.samples import Sample, Samples
from steering.decode.sampling import row_seed, sample_inverse_cdf, step_kl
from steering.decode.stops import find_stop

__all__ = ["Sample", "Samples", "find_stop", "generate", "row_seed", "sample_inverse_cdf", "step_kl"]

"""`Posterior`: weighted samples of a target, with the evidence, ESS, KL and what they cost."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from steering.decode.samples import Sample, Samples
from steering.errors import check_seed


@dataclass(frozen=True)
class Posterior:
    """What every sampler returns.

    Attributes:
        samples: the particles (for rejection, only the accepted ones).
        log_weights: (N,) unnormalised log importance weights (−inf for samples that fail a hard
            potential); equal weights for rejection.
        log_evidence: log Ẑ, the estimate of log Σ_x π(x) φ(x) — for hard conditions, the log
            probability of the condition under the base model. −inf when no sample satisfied it.
        log_potentials: (N,) Σ log φ of each sample.
        model_calls: token forward passes spent (rows × steps, including rescoring passes).
        sampler: which sampler made it, with its settings.
    """

    samples: list[Sample]
    log_weights: torch.Tensor
    log_evidence: float
    log_potentials: torch.Tensor
    model_calls: int
    sampler: str

    @property
    def weights(self) -> torch.Tensor:
        """(N,) normalised weights (all zero when nothing satisfied the condition)."""
        if not self.found:
            return torch.zeros(len(self.samples), dtype=torch.float64)
        return self.log_weights.double().softmax(0)

    @property
    def found(self) -> bool:
        """Whether at least one sample has positive weight."""
        return bool(len(self.samples)) and bool(torch.isfinite(self.log_weights).any())

    @property
    def ess(self) -> float:
        """Effective sample size 1 / Σ w̄² (0 when nothing was found)."""
        return float(1.0 / (self.weights**2).sum()) if self.found else 0.0

    @property
    def kl_estimate(self) -> float:
        """KL(target ‖ base) = E_target[log φ] − log Z, estimated with the weights (−log Z for hard)."""
        if not self.found:
            return math.inf
        finite = torch.isfinite(self.log_potentials)
        expected = float((self.weights[finite] * self.log_potentials[finite].double()).sum())
        return expected - self.log_evidence

    def texts(self) -> list[str]:
        return [s.text for s in self.samples]

    def resample(self, k: int, *, seed: int = 0) -> Samples:
        """k unweighted samples drawn by the normalised weights (multinomial)."""
        seed = check_seed(seed)
        if not self.found:
            return Samples(items=[], model_name="", controls=[self.sampler, "resampled"])
        generator = torch.Generator().manual_seed(seed)
        draws = torch.multinomial(self.weights, k, replacement=True, generator=generator)
        return Samples(
            items=[self.samples[i] for i in draws.tolist()], model_name="", controls=[self.sampler]
        )

    def summary(self) -> str:
        if not self.found:
            return f"{self.sampler}: no sample satisfied the condition after {self.model_calls} model calls"
        return (
            f"{self.sampler}: {len(self.samples)} samples, ESS {self.ess:.1f}, log Ẑ {self.log_evidence:.3f}, "
            f"KL(target‖base) ≈ {self.kl_estimate:.3f} nats, {self.model_calls} model calls"
        )

"""Sampling controls: temperature, top-k, top-p, min-p and greedy, as logit controls.

Each takes float32 log-probabilities (B, V) and returns scores; excluded tokens get −inf. Because they
are controls like any other, the tokens they cut and the temperature they apply show up in `logq`,
and so in the KL to the base model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from steering.controls.base import LogitControlBase
from steering.errors import InvalidArgument

NEG_INF = float("-inf")


@dataclass(frozen=True)
class Temperature(LogitControlBase):
    """Divide the scores by `value` (> 0). Below 1 sharpens, above 1 flattens."""

    value: float

    def __post_init__(self) -> None:
        if not (isinstance(self.value, (int, float)) and math.isfinite(self.value) and self.value > 0):
            raise InvalidArgument(
                "temperature must be a finite number above 0",
                received=self.value,
                fix="use e.g. 0.7; for the most likely token use greedy decoding (Greedy(), --temperature 0)",
            )

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores / self.value


@dataclass(frozen=True)
class TopK(LogitControlBase):
    """Keep the `k` highest-scoring tokens."""

    masks_only = True  # only sets tokens to −inf: the engine's exact fast path

    k: int

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or self.k < 1:
            raise InvalidArgument("top-k must be an integer ≥ 1", received=self.k, fix="use e.g. 50")

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        k = min(self.k, scores.shape[-1])
        threshold = scores.topk(k, dim=-1).values[:, -1:]
        return scores.masked_fill(scores < threshold, NEG_INF)


@dataclass(frozen=True)
class TopP(LogitControlBase):
    """Nucleus sampling: keep the smallest set of most likely tokens whose mass reaches `p` ∈ (0, 1]."""

    masks_only = True  # only sets tokens to −inf: the engine's exact fast path

    p: float

    def __post_init__(self) -> None:
        if not (isinstance(self.p, (int, float)) and 0 < self.p <= 1):
            raise InvalidArgument(
                "top-p must be in (0, 1]", received=self.p, fix="use e.g. 0.9 (1 keeps all)"
            )

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.p >= 1:
            return scores
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        probs = sorted_scores.softmax(-1)  # not log_softmax().exp(): exp is slow on −inf
        # Mass strictly before each token; a token is kept while that mass is below p.
        before = probs.cumsum(-1) - probs
        drop_sorted = before >= self.p
        drop_sorted[:, 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        return scores.masked_fill(drop, NEG_INF)


@dataclass(frozen=True)
class MinP(LogitControlBase):
    """Keep tokens whose probability is at least `p` times the most likely token's, p ∈ (0, 1]."""

    masks_only = True  # only sets tokens to −inf: the engine's exact fast path

    p: float

    def __post_init__(self) -> None:
        if not (isinstance(self.p, (int, float)) and 0 < self.p <= 1):
            raise InvalidArgument("min-p must be in (0, 1]", received=self.p, fix="use e.g. 0.05")

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logp = scores.log_softmax(-1)
        threshold = logp.max(dim=-1, keepdim=True).values + math.log(self.p)
        return scores.masked_fill(logp < threshold, NEG_INF)


@dataclass(frozen=True)
class Greedy(LogitControlBase):
    """Always the most likely token (ties: the lowest id). `logq` is 0 for it: a point mass."""

    # A point mass: the engine may take the argmax directly (log q = 0, step KL = −log p_base of the
    # token) instead of building and scanning a (B, V) distribution. Same numbers, less work.
    point_mass = True

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        best = scores.argmax(dim=-1, keepdim=True)
        out = torch.full_like(scores, NEG_INF)
        return out.scatter(-1, best, 0.0)


def sampling_controls(
    *,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
) -> list[object]:
    """The usual sampling knobs as controls, in the conventional order (temperature first).

    `temperature=0` means greedy. `None` leaves a knob off.
    """
    if temperature is not None and temperature == 0:
        return [Greedy()]
    controls: list[object] = []
    if temperature is not None and temperature != 1:
        controls.append(Temperature(temperature))
    if top_k is not None:
        controls.append(TopK(top_k))
    if top_p is not None and top_p != 1:
        controls.append(TopP(top_p))
    elif top_p is not None:
        TopP(top_p)  # validates
    if min_p is not None:
        controls.append(MinP(min_p))
    return controls

"""`Samples`: generated text with the books — per-token log q (used) and log p (base)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from steering.decode.stats import DecodeStats
from steering.errors import check_seed


@dataclass(frozen=True)
class Sample:
    """One generation.

    Attributes:
        prompt: the user's raw prompt.
        prompt_index: index of that prompt in the call.
        context: the text the model was actually conditioned on (after context controls).
        text: generated text, stop sequence trimmed.
        token_ids: generated tokens (including the ones that completed a stop sequence or EOS).
        logq: (T,) log-probability of each token under the distribution it was sampled from.
        logp_base: (T,) log-probability of each token under the base model given the *raw* prompt.
        stop_reason: "stop" (a stop sequence, or a constraint completed), "eos", "length", or
            "unfinished" (a constraint could not complete within max_new_tokens: not a valid sample).
        step_kl: (T,) exact KL(q_t ‖ p_t) over the vocabulary at each step, when the base and the
            sampled distribution share the context (no context controls); else None.
        sample_index: index of this sample among its prompt's samples (0 … n − 1).
    """

    prompt: str
    prompt_index: int
    context: str
    text: str
    token_ids: list[int]
    logq: torch.Tensor
    logp_base: torch.Tensor
    stop_reason: str
    step_kl: torch.Tensor | None = None
    sample_index: int = 0

    @property
    def kl(self) -> float:
        """Σ_t (log q − log p_base): a one-sample estimate of KL(q ‖ p_base) for the sequence."""
        return float((self.logq - self.logp_base).sum())

    @property
    def log_weight(self) -> float:
        """Σ_t (log p_base − log q): the importance weight of this sample for target p_base."""
        return -self.kl

    @property
    def kl_exact_steps(self) -> float | None:
        """Σ_t KL(q_t ‖ p_t): a lower-variance (Rao–Blackwellised) estimate of the same KL."""
        return None if self.step_kl is None else float(self.step_kl.sum())

    def to_record(self) -> dict[str, object]:
        return {
            "prompt": self.prompt,
            "prompt_index": self.prompt_index,
            "sample_index": self.sample_index,
            "context": self.context,
            "text": self.text,
            "tokens": self.token_ids,
            "logq": [round(float(x), 6) for x in self.logq],
            "logp_base": [round(float(x), 6) for x in self.logp_base],
            "kl": round(self.kl, 6),
            "kl_exact_steps": None if self.step_kl is None else round(float(self.step_kl.sum()), 6),
            "log_weight": round(self.log_weight, 6),
            "stop_reason": self.stop_reason,
        }


@dataclass(frozen=True)
class Samples:
    """All generations of one `generate` call, prompt-major: prompt 0's n samples, then prompt 1's…

    `stats` holds the decoder's counts and timings for the call (zeros for sets made otherwise, such
    as `resample`'s).
    """

    items: list[Sample]
    model_name: str
    controls: list[str] = field(default_factory=list)
    stats: DecodeStats = field(default_factory=DecodeStats, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.items)

    def __getitem__(self, index: int) -> Sample:
        return self.items[index]

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.items]

    @property
    def stop_reasons(self) -> list[str]:
        return [s.stop_reason for s in self.items]

    @property
    def unfinished(self) -> list[int]:
        """Indices of the samples whose constraint had not finished when their budget ran out: their
        text is cut, not a valid output (`steer generate` names them and exits 3)."""
        return [i for i, s in enumerate(self.items) if s.stop_reason == "unfinished"]

    @property
    def kl(self) -> torch.Tensor:
        """(N,) per-sample Σ(log q − log p_base)."""
        return torch.tensor([s.kl for s in self.items], dtype=torch.float64)

    @property
    def log_weight(self) -> torch.Tensor:
        """(N,) per-sample Σ(log p_base − log q)."""
        return -self.kl

    def to_records(self) -> list[dict[str, object]]:
        return [s.to_record() for s in self.items]

    def resample(self, *, seed: int = 0, k: int | None = None) -> Samples:
        """Resample each prompt's samples by their self-normalised importance weights.

        With a pool or tweak as the proposal q and the base p as target, the resampled set is
        (asymptotically) distributed as p(x | constraint) instead of the locally renormalised q.
        "unfinished" samples get weight 0. Returns `k` samples per prompt (default: as many as given).
        """
        generator = torch.Generator().manual_seed(check_seed(seed))
        by_prompt: dict[int, list[Sample]] = {}
        for item in self.items:
            by_prompt.setdefault(item.prompt_index, []).append(item)
        chosen: list[Sample] = []
        for index in sorted(by_prompt):
            group = [s for s in by_prompt[index] if s.stop_reason != "unfinished"]
            if not group:
                continue
            weights = torch.tensor([s.log_weight for s in group], dtype=torch.float64).softmax(0)
            draws = torch.multinomial(
                weights, k or len(by_prompt[index]), replacement=True, generator=generator
            )
            chosen.extend(group[i] for i in draws.tolist())
        return Samples(items=chosen, model_name=self.model_name, controls=[*self.controls, "resampled"])

    def effective_sample_size(self) -> float:
        """(Σw)² / Σw² of the normalised importance weights (over all samples)."""
        weights = self.log_weight.softmax(0)
        return float(1.0 / (weights**2).sum()) if len(self.items) else 0.0

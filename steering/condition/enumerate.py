"""Exact enumeration of a target on a tiny vocabulary: every completion, its log π, log φ and mass."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from steering.condition.target import Target
from steering.errors import InvalidArgument

MAX_COMPLETIONS = 200_000


@dataclass(frozen=True)
class Enumeration:
    """Every completion of the target's prompt under π (EOS-terminated or cut at max_new_tokens).

    Attributes:
        completions: token tuples (EOS included where sampled).
        texts: their decoded text.
        log_base: (M,) log π(x).
        log_potential: (M,) Σ log φ(x).
        log_evidence: log Z = log Σ π(x) φ(x).
    """

    completions: list[tuple[int, ...]]
    texts: list[str]
    log_base: torch.Tensor
    log_potential: torch.Tensor
    log_evidence: float

    @property
    def probs(self) -> torch.Tensor:
        """(M,) the exact target distribution."""
        return (self.log_base + self.log_potential - self.log_evidence).exp()

    def distribution(self) -> dict[tuple[int, ...], float]:
        return {c: float(p) for c, p in zip(self.completions, self.probs, strict=True) if p > 0}

    @property
    def kl(self) -> float:
        """KL(target ‖ base) exactly."""
        probs = self.probs
        keep = probs > 0
        return float((probs[keep] * (self.log_potential[keep] - self.log_evidence)).sum())


@torch.no_grad()
def enumerate_target(target: Target) -> Enumeration:
    """All completions, breadth first; refuses when there would be more than 200,000."""
    model = target.model
    vocab = model.vocab_size
    estimate = sum(vocab**k for k in range(1, target.max_new_tokens + 1))
    if estimate > MAX_COMPLETIONS:
        raise InvalidArgument(
            f"enumerating {vocab} tokens to length {target.max_new_tokens} means about {estimate:,} completions",
            received=f"vocabulary {vocab}, max_new_tokens {target.max_new_tokens}",
            fix=f"enumerate only tiny models and lengths (≤ {MAX_COMPLETIONS:,} completions), e.g. tiny-letters",
        )
    prompt = model.encode(target.prompt)
    eos = set(model.eos_token_ids)
    frontier: list[tuple[tuple[int, ...], float]] = [((), 0.0)]
    leaves: list[tuple[tuple[int, ...], float]] = []
    for depth in range(target.max_new_tokens):
        ids = torch.tensor([prompt + list(prefix) for prefix, _ in frontier], device=model.device)
        logp = (
            model.module(input_ids=ids, logits_to_keep=1).logits[:, -1].float().log_softmax(-1).cpu().double()
        )
        grown = []
        for (prefix, log_prefix), row in zip(frontier, logp, strict=True):
            for token, value in enumerate(row.tolist()):
                item = ((*prefix, token), log_prefix + value)
                if token in eos or depth + 1 == target.max_new_tokens:
                    leaves.append(item)
                else:
                    grown.append(item)
        frontier = grown
    texts = [model.decode(list(tokens)) for tokens, _ in leaves]
    log_base = torch.tensor([value for _, value in leaves], dtype=torch.float64)
    log_phi = target.log_potential(texts, [list(tokens) for tokens, _ in leaves])
    log_z = float(torch.logsumexp(log_base + log_phi, 0))
    if not math.isfinite(log_z):
        log_z = float("-inf")
    return Enumeration([tokens for tokens, _ in leaves], texts, log_base, log_phi, log_z)

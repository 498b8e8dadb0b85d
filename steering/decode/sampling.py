"""Pure functions of the sampling step: draw a token, measure the step's KL, seed rows."""

from __future__ import annotations

import hashlib

import torch


def sample_inverse_cdf(logq: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Draw one token per row from exp(logq) by inverting its CDF.

    Args:
        logq: (B, V) normalised log-probabilities (−inf for excluded tokens).
        uniforms: (B,) draws from U[0, 1), one per row.

    Returns:
        (B,) token ids. A token with probability 0 is never returned: the CDF is flat across it.
    """
    cdf = logq.double().exp().cumsum(-1)
    targets = (uniforms.double() * cdf[:, -1]).unsqueeze(-1)
    tokens = torch.searchsorted(cdf, targets, right=True).squeeze(-1)
    return tokens.clamp_(max=logq.shape[-1] - 1)


def step_kl(logq: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """Exact KL(q_t ‖ p_t) per row over the whole vocabulary.

    Args:
        logq: (B, V) log-probabilities actually sampled from.
        logp: (B, V) base log-probabilities.

    Returns:
        (B,) non-negative KL in nats (tokens with q = 0 contribute nothing).
    """
    q = logq.exp()
    terms = torch.where(q > 0, q * (logq - logp), torch.zeros_like(q))
    return terms.sum(-1).clamp_(min=0.0)


def row_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """A 63-bit seed for one (prompt, sample) row, independent of batching and of the other rows."""
    digest = hashlib.blake2b(f"{seed}:{prompt_index}:{sample_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)

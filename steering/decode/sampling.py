"""Pure functions of the sampling step: draw a token, measure the step's KL, seed rows."""

from __future__ import annotations

import hashlib

import torch


def probabilities(scores: torch.Tensor) -> torch.Tensor:
    """exp of normalised scores, through `softmax` rather than `exp`.

    torch's vectorised `exp` leaves its fast path for inputs below about −87 (−inf from a mask: 3×
    slower; results that underflow: 12–36× slower on this CPU), and masked or very peaked rows are full
    of them. The softmax kernel handles them at full speed and gives the same numbers (within 1 ulp).

    Args:
        scores: (B, V) log-probabilities or logits (−inf for excluded tokens).

    Returns:
        (B, V) float32 probabilities summing to 1 per row.
    """
    return scores.float().softmax(-1)


def sample_inverse_cdf(
    logq: torch.Tensor,
    uniforms: torch.Tensor,
    *,
    block: int = 1024,
    probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw one token per row from exp(logq) by inverting its CDF.

    Args:
        logq: (B, V) normalised log-probabilities (−inf for excluded tokens).
        uniforms: (B,) draws from U[0, 1), one per row.
        probs: `probabilities(logq)` when the caller already has it.

    Returns:
        (B,) token ids. A token with probability 0 is never returned.
    """
    tokens, _ = invert_cdf(probabilities(logq) if probs is None else probs, uniforms, block=block)
    return tokens


def invert_cdf(
    weights: torch.Tensor, uniforms: torch.Tensor, *, block: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row in proportion to non-negative `weights` (they need not sum to 1).

    Two levels so that no full-vocabulary cumulative sum is needed: pick a block of `block` tokens by
    its mass (float64 cumulative sum over the blocks), then the token inside it.

    Args:
        weights: (B, V) non-negative; 0 for excluded tokens, at least one positive per row.
        uniforms: (B,) draws from U[0, 1), one per row.

    Returns:
        (B,) token ids (never one of weight 0) and (B,) float64 total weight per row.
    """
    rows, vocab = weights.shape
    padding = (-vocab) % block
    padded = torch.nn.functional.pad(weights, (0, padding)) if padding else weights
    blocks = padded.view(rows, -1, block)
    block_mass = blocks.sum(-1, dtype=torch.float64)
    block_cdf = block_mass.cumsum(-1)
    total = block_cdf[:, -1]
    targets = uniforms.to(torch.float64) * total
    last_block = block_cdf.shape[-1] - 1
    chosen = torch.searchsorted(block_cdf, targets[:, None], right=True).squeeze(-1).clamp_(max=last_block)
    before = (block_cdf - block_mass).gather(-1, chosen[:, None]).squeeze(-1)
    row_index = torch.arange(rows, device=weights.device)
    inner_cdf = blocks[row_index, chosen].to(torch.float64).cumsum(-1)
    inner = torch.searchsorted(inner_cdf, (targets - before)[:, None], right=True).squeeze(-1)
    tokens = chosen * block + inner.clamp_(max=block - 1)
    tokens = tokens.clamp_(max=vocab - 1)
    # Rounding can push a draw that lands at the very end of the mass onto a token with none.
    bad = weights.gather(-1, tokens[:, None]).squeeze(-1) == 0
    if bool(bad.any()):
        positions = torch.arange(vocab, device=weights.device)
        last_with_mass = torch.where(weights[bad] > 0, positions, -1).amax(-1)
        tokens[bad] = last_with_mass
    return tokens, total


def step_kl(logq: torch.Tensor, logp: torch.Tensor, *, probs: torch.Tensor | None = None) -> torch.Tensor:
    """Exact KL(q_t ‖ p_t) per row over the whole vocabulary.

    Args:
        logq: (B, V) log-probabilities actually sampled from.
        logp: (B, V) base log-probabilities.
        probs: `probabilities(logq)` when the caller already has it.

    Returns:
        (B,) non-negative KL in nats (tokens with q = 0 contribute nothing).
    """
    if probs is None:
        probs = probabilities(logq)
    # q = 0 gives 0 · (−inf) = nan: those tokens contribute nothing (nansum). q > 0 where p = 0 is +inf.
    return (probs * (logq - logp)).nansum(-1).clamp_(min=0.0)


def row_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """A 63-bit seed for one (prompt, sample) row, independent of batching and of the other rows."""
    digest = hashlib.blake2b(f"{seed}:{prompt_index}:{sample_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)

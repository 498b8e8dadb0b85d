"""One step's draw: the logit controls, then a token per row, with log q and the step's KL.

The general path applies every control and samples from the renormalised scores. Three exact
shortcuts give the same numbers with less work, each taken only when every control declares it
(see `steering.controls.base`): greedy (`point_mass`, the last control), the masked draw (all
`masks_only`) and the pooled draw (all `offers_token_pools`, on the CPU).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from steering.controls.base import LogitControl
from steering.decode.rows import DecodeRow
from steering.decode.sampling import invert_cdf, probabilities, sample_inverse_cdf, step_kl


def draw(
    logp_base: torch.Tensor, sequences: torch.Tensor, controls: Sequence[LogitControl], rows: list[DecodeRow]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply the logit controls and sample one token per row.

    Args:
        logp_base: (B, V) float32 log-probabilities of the plain forward.
        sequences: (B, L) every token so far (what the controls see as `input_ids`).
        controls: the logit controls, in order.
        rows: the B rows (their generators give the uniforms; ended rows may be skipped).

    Returns:
        (B,) tokens, (B,) log q of them, (B,) KL(q_t ‖ p_t).
    """
    point_mass = bool(controls) and controls[-1].point_mass
    pooled = logp_base.device.type == "cpu"  # on a GPU the dense kernels are cheap; per-row work syncs
    if pooled and controls and all(c.offers_token_pools for c in controls):
        uniforms = row_uniforms(rows, logp_base.device)
        pools = [c.token_pools(sequences, logp_base.shape[-1]) for c in controls]
        return draw_from_pools(logp_base, intersect_pools(pools), uniforms, rows)
    scores = logp_base
    for control in controls[:-1] if point_mass else controls:
        scores = control(sequences, scores)
    if point_mass:
        # Greedy: q is a point mass on the argmax, so log q = 0 and KL(q_t ‖ p_t) = −log p_t(token).
        tokens = scores.argmax(dim=-1)
        picked = torch.zeros(tokens.shape, device=tokens.device)
        kl = -logp_base.gather(-1, tokens[:, None]).squeeze(-1)
        return tokens, picked, kl
    uniforms = row_uniforms(rows, logp_base.device)
    if controls and all(c.masks_only for c in controls):
        return draw_masked(logp_base, scores != float("-inf"), uniforms)
    logq = scores.log_softmax(-1) if controls else logp_base
    probs = probabilities(scores)
    tokens = sample_inverse_cdf(logq, uniforms, probs=probs)
    kl = step_kl(logq, logp_base, probs=probs) if controls else torch.zeros(len(rows), device=logq.device)
    return tokens, logq.gather(-1, tokens[:, None]).squeeze(-1), kl


def row_uniforms(rows: list[DecodeRow], device: torch.device) -> torch.Tensor:
    """(B,) one U[0, 1) draw per row from the row's own generator."""
    return torch.stack([torch.rand((), generator=r.generator) for r in rows]).to(device)


def draw_masked(
    logp_base: torch.Tensor, allowed: torch.Tensor, uniforms: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The exact fast path of pools, which only remove tokens: (tokens, log q of them, step KL).

    q = p restricted to the kept tokens and renormalised, so log q = log p − log Z_kept and
    KL(q_t ‖ p_t) = −log Z_kept exactly: no second log-softmax and no pass over the vocabulary for
    the KL; Z_kept is the total the draw sums anyway.

    Args:
        logp_base: (B, V) log-probabilities; allowed: (B, V) bool; uniforms: (B,).
    """
    kept = probabilities(logp_base).mul_(allowed)
    tokens, mass = invert_cdf(kept, uniforms)
    log_kept = mass.log().to(logp_base.dtype)
    return tokens, logp_base.gather(-1, tokens[:, None]).squeeze(-1) - log_kept, -log_kept


def intersect_pools(pools: list[list[torch.Tensor | None]]) -> list[torch.Tensor | None]:
    """Per row, the tokens every control allows; a pool is ids, a bool row, or None (every token)."""
    merged = list(pools[0])
    for other in pools[1:]:
        for i, b in enumerate(other):
            a = merged[i]
            if b is None or a is None:
                merged[i] = a if b is None else b
            elif a.dtype == torch.bool and b.dtype == torch.bool:
                merged[i] = a & b
            elif a.dtype == torch.bool:
                merged[i] = b[a[b]]
            else:
                merged[i] = a[b[a]] if b.dtype == torch.bool else a[torch.isin(a, b)]
    return merged


def draw_from_pools(
    logp_base: torch.Tensor, pools: list[torch.Tensor | None], uniforms: torch.Tensor, rows: list[DecodeRow]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The mask-only step from each row's pool (`token_pools`): the dense path's numbers, less work.

    A pool of token ids is sampled without touching the rest of the vocabulary: log q = log p −
    log Z_pool, KL = −log Z_pool, the token inverts the pool's CDF in token order. Bool rows (large
    pools) and None (every token) go through `draw_masked` together. Ended rows are skipped: their
    token is never used.
    """
    batch, vocab = logp_base.shape
    tokens = torch.zeros(batch, dtype=torch.long)
    picked = torch.zeros(batch, dtype=logp_base.dtype)
    kl = torch.zeros(batch, dtype=logp_base.dtype)
    dense: list[int] = []
    for i, pool in enumerate(pools):
        if rows[i].stop_reason is not None:
            continue
        if pool is None or pool.dtype == torch.bool or len(pool) == 0:
            dense.append(i)
            continue
        values = logp_base[i, pool]
        log_kept = torch.logsumexp(values, 0)
        cdf = values.softmax(0).to(torch.float64).cumsum(0)
        target = uniforms[i].to(torch.float64) * cdf[-1]
        index = int(torch.searchsorted(cdf, target[None], right=True).clamp_(max=len(pool) - 1))
        tokens[i] = pool[index]
        picked[i] = values[index] - log_kept
        kl[i] = -log_kept
    if dense:
        allowed = torch.ones((len(dense), vocab), dtype=torch.bool)
        for j, i in enumerate(dense):
            pool = pools[i]
            if pool is not None and pool.dtype == torch.bool:
                allowed[j] = pool
            elif pool is not None:  # an empty pool: nothing allowed
                allowed[j] = False
        chosen = torch.tensor(dense)
        tokens[chosen], picked[chosen], kl[chosen] = draw_masked(logp_base[chosen], allowed, uniforms[chosen])
    return tokens, picked, kl

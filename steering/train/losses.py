"""Pure functions of training: schedules, token losses, preference losses, advantages, KL estimators.

Each is a few lines of tensor arithmetic, tested against numbers computed by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

IGNORE = -100  # label of a token that is not trained on (prompt, padding)


def warmup_cosine(step: int, *, warmup: int, total: int, floor: float = 0.0) -> float:
    """Learning-rate multiplier: linear warm-up over `warmup` steps, then cosine decay to `floor`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class _PickedLogProbs(torch.autograd.Function):
    """log softmax(logits)[index] in float32 (float64 stays), with one vocabulary-wide tensor alive, not three.

    `logits.log_softmax(-1).gather(...)` saves the log-softmax output for its backward (a second
    (B, T, V) tensor beside the logits), and its backward builds a zero-filled (B, T, V) gradient for
    the gather and another for the log-softmax. Here the forward saves the logits and the (B, T)
    log-normaliser only, and the backward writes −g·softmax + g·onehot into one new tensor. With
    gemma's 262k vocabulary that is ~1 GB per (B·T = 1024) positions fewer at the peak of an RL step.
    """

    @staticmethod
    def forward(ctx: object, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        scores = logits.to(torch.promote_types(logits.dtype, torch.float32))  # float64 stays
        lse = torch.logsumexp(scores, -1)
        picked = scores.gather(-1, index.unsqueeze(-1)).squeeze(-1) - lse
        ctx.save_for_backward(scores, lse, index)  # type: ignore[attr-defined]
        ctx.dtype = logits.dtype  # type: ignore[attr-defined]
        return picked

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        scores, lse, index = ctx.saved_tensors  # type: ignore[attr-defined]
        result = torch.sub(scores, lse.unsqueeze(-1)).exp_().mul_(-grad.unsqueeze(-1))
        result.scatter_add_(-1, index.unsqueeze(-1), grad.unsqueeze(-1))
        return result.to(ctx.dtype), None  # type: ignore[attr-defined]


def picked_logprobs(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(…,) float32 log p(index) under softmax(logits) over the last axis; `index` (…,) of valid token ids."""
    return _PickedLogProbs.apply(logits, index)  # type: ignore[no-any-return]


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, T) log p(label_t | x_<t) in float32 for next-token labels (0 where the label is IGNORE).

    `logits[:, t]` predicts `labels[:, t + 1]`: the usual causal shift is done here.
    """
    shifted = labels[:, 1:]
    picked = picked_logprobs(logits[:, :-1], shifted.clamp(min=0))
    return picked.masked_fill(shifted == IGNORE, 0.0)


def trained_positions(labels: torch.Tensor) -> torch.Tensor:
    """(P,) the positions t whose next token is trained in some row: where the LM head is needed.

    Pass them as `logits_to_keep` so that the 262k-wide head and log-softmax run only there (the
    prompt positions of every row are skipped); `kept_token_logprobs` reads the result.
    """
    return (labels[:, 1:] != IGNORE).any(0).nonzero().squeeze(-1)


def kept_token_logprobs(logits: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(B, P) log p(labels[t + 1] | x_≤t) at `positions` from logits computed only there (0 where IGNORE)."""
    following = labels[:, positions + 1]
    picked = picked_logprobs(logits, following.clamp(min=0))
    return picked.masked_fill(following == IGNORE, 0.0)


def first_stop_logprob(
    logits: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor, stop_ids: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) log P(any of `stop_ids`) where each row's completion starts — the chance of an empty reply —
    from logits computed only at `positions`, and (B,) whether that row's first label is not a stop
    (a row whose completion is empty is not penalised for being empty)."""
    following = labels[:, positions + 1]
    first = (following != IGNORE).int().argmax(-1)  # every row has a trained token (encode_completion)
    rows = logits[torch.arange(len(first)), first].float()
    log_stop = torch.logsumexp(rows[:, list(stop_ids)], -1) - torch.logsumexp(rows, -1)
    first_label = following[torch.arange(len(first)), first]
    return log_stop, ~torch.isin(first_label, torch.tensor(list(stop_ids), device=labels.device))


def unlikelihood(log_p: torch.Tensor) -> torch.Tensor:
    """−log(1 − p) from log p (Welleck et al., 2019), stable near p = 1: the loss of a token *not* taken."""
    return -torch.log(-torch.expm1(log_p.clamp(max=-1e-6)))


def soft_preference_loss(logits: torch.Tensor, p_chosen: torch.Tensor | None = None) -> torch.Tensor:
    """(N,) −[p·log σ(z) + (1 − p)·log σ(−z)]: the cross-entropy of σ(z) = P(chosen ≻ rejected) against
    the target p (per row, (N,)); `p_chosen=None` is p = 1, −log σ(z), exactly.

    This is TRL's conservative DPO ("sigmoid" loss with `label_smoothing` ε, i.e. p = 1 − ε for every row:
    `-F.logsigmoid(beta * logits) * (1 - label_smoothing) - F.logsigmoid(-beta * logits) * label_smoothing`
    in `DPOTrainer.dpo_loss`, trl/trainer/dpo_trainer.py; Mitchell 2023, "A note on DPO with noisy
    preferences"), with p given per row so that a judge's soft label P(A ≻ B) is the target. The loss is
    least at σ(z) = p, so a pair labelled 0.6 is pushed to a small margin only, not to an infinite one.
    """
    if p_chosen is None:
        return -F.logsigmoid(logits)
    return -(p_chosen * F.logsigmoid(logits) + (1.0 - p_chosen) * F.logsigmoid(-logits))


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, p_chosen: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean −[p·log σ(Δ) + (1 − p)·log σ(−Δ)], Δ = r_chosen − r_rejected: pairwise reward-model loss.

    `chosen`, `rejected` and `p_chosen` are (N,); p = P(chosen ≻ rejected) per pair (None: 1, the
    hard-label loss −log σ(Δ)). See `soft_preference_loss`.
    """
    return soft_preference_loss(chosen - rejected, p_chosen).mean()


def plackett_luce_loss(scores: torch.Tensor) -> torch.Tensor:
    """−log P(ranking) for scores ordered best first: Σ_i [logsumexp(s_i..s_n) − s_i] (one ranking, (n,))."""
    tail = torch.logcumsumexp(scores.flip(0), 0).flip(0)
    return (tail - scores)[:-1].sum()


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    *,
    beta: float,
    kind: str = "dpo",
    p_chosen: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DPO or IPO on (N,) sequence log-probabilities; returns (mean loss, margins h (N,)).

    h = (log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l)), and p = P(y_w ≻ y_l) per pair
    ((N,); None: 1, the hard label).
    DPO: −[p·log σ(β·h) + (1 − p)·log σ(−β·h)] (`soft_preference_loss`; p = 1: −log σ(β·h)).
    IPO: (h − (2p − 1)/(2β))². IPO regresses h onto τ⁻¹·I with I ~ Bernoulli(P(y ≻ y')); over both
    orders of a pair, (h − p/β)² + (−h − (1 − p)/β)² = 2·(h − (2p − 1)/(2β))² + const, so p = 1 gives the
    usual target 1/(2β) and p = ½ the target 0. (TRL applies label smoothing to its sigmoid loss only.)
    """
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    if kind == "dpo":
        loss = soft_preference_loss(beta * margin, p_chosen).mean()
    elif kind == "ipo":
        target = 1.0 if p_chosen is None else 2.0 * p_chosen - 1.0
        loss = ((margin - target / (2.0 * beta)) ** 2).mean()
    else:
        raise ValueError(f"unknown preference loss {kind!r}")
    return loss, margin.detach()


def group_advantages(rewards: torch.Tensor, *, normalise: bool = False) -> torch.Tensor:
    """Leave-one-out baseline per group (RLOO): A_i = r_i − mean_{j≠i} r_j; rows of (groups, k).

    With `normalise`, divide by the group's standard deviation (GRPO's choice).
    """
    k = rewards.shape[-1]
    if k < 2:
        raise ValueError("group baselines need at least 2 samples per prompt")
    baseline = (rewards.sum(-1, keepdim=True) - rewards) / (k - 1)
    advantages = rewards - baseline
    if normalise:
        advantages = advantages / (rewards.std(-1, keepdim=True) + 1e-6)
    return advantages


def kl_k1(logq: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """k1 = log q − log p per sampled token (unbiased for KL(q‖p) under q, can be negative)."""
    return logq - logp


def kl_k3(logq: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """k3 = (r − 1) − log r with r = p/q per sampled token (unbiased, non-negative, lower variance)."""
    log_ratio = logp - logq
    return torch.expm1(log_ratio) - log_ratio

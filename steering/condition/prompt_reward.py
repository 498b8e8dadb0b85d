"""The prompt as a reward: π(x)·exp(λ·Σ_{i∈S} δ(x_i, y_i)) → π(x | x_S = y_S) as λ → ∞.

Jermyn, "Conditioning, Prompts, and Fine-Tuning" (2022); fine-tuning with a KL penalty as Bayesian
inference: Korbak, Perez & Buckley, "RL with KL penalties is better viewed as Bayesian inference" (2022).

Fixing tokens y_S at positions S is a hard condition; rewarding each match with λ is a soft one, and
the soft target approaches the hard one as λ grows. How fast is exactly computable: the conditional
is the soft target restricted to the event A = {x_S = y_S} (on A the reward is the constant λ|S|), so

    KL(π(· | A) ‖ target_λ) = −log target_λ(A),

the log of the probability that a sample of the soft target already satisfies the condition. One
number per λ, the fraction satisfying the condition, says both how close the target is and what a
sampler of it gets.

`prompt_as_reward` computes it exactly by enumeration (tiny vocabularies) or estimates it with
importance sampling, the proposal boosting each fixed token by λ at its position (`ForceTokens` with
`strength=λ`; forced when λ = ∞), whose exact weights make the estimate consistent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from steering.condition.enumerate import enumerate_target
from steering.condition.potentials import FixedTokens, fixed_tokens
from steering.condition.samplers import importance
from steering.condition.target import Target
from steering.controls.pool import ForceTokens
from steering.errors import InvalidArgument
from steering.models.language_model import LanguageModel


@dataclass(frozen=True)
class PromptRewardPoint:
    """The soft target at one λ.

    Attributes:
        strength: λ (math.inf = the hard condition itself).
        satisfied: target_λ(x_S = y_S), exact or estimated.
        kl_to_conditional: KL(π(· | x_S = y_S) ‖ target_λ) = −log `satisfied`, nats.
        log_evidence: log Z_λ = log E_π[exp(λ·#matches)] (exact or estimated).
        ess: effective sample size of the estimate (None when exact).
        model_calls: token passes spent by the sampler (0 for an exact point).
        method: "exact" or the sampler's description.
    """

    strength: float
    satisfied: float
    kl_to_conditional: float
    log_evidence: float
    ess: float | None
    model_calls: int
    method: str


def prompt_as_reward(
    model: LanguageModel,
    prompt: str,
    spans: dict[int, Any],
    strengths: Sequence[float] = (0.0, 1.0, 2.0, 4.0, 8.0, math.inf),
    *,
    max_new_tokens: int = 8,
    exact: bool = False,
    n: int = 64,
    seed: int = 0,
    batch_size: int = 8,
) -> list[PromptRewardPoint]:
    """How π(x)·exp(λ·Σδ(x_i, y_i)) approaches π(x | x_S = y_S), one point per λ in `strengths`.

    Args:
        model: the base model π.
        prompt: the text completions follow.
        spans: the fixed tokens, {position: text or token ids} (0 = first generated token).
        strengths: the λ values (non-negative; `math.inf` is the hard condition).
        max_new_tokens: completion length limit (part of π's definition).
        exact: enumerate every completion (tiny vocabularies only) instead of sampling.
        n: importance samples per λ when not exact.
        seed: same seed, same estimates.
        batch_size: rows decoded together.
    """
    values = list(strengths)
    if not values or any(
        not isinstance(s, (int, float)) or isinstance(s, bool) or math.isnan(s) or s < 0 for s in values
    ):
        raise InvalidArgument(
            "strengths must be a non-empty list of non-negative numbers (math.inf = the hard condition)",
            received=values,
            fix="use e.g. [0, 1, 2, 4, 8, math.inf]",
        )
    points = []
    for strength in values:
        hard = math.isinf(strength)
        potential = fixed_tokens(spans, strength=None if hard else float(strength))
        target = Target(model, prompt, [potential], max_new_tokens=max_new_tokens)
        bound = target.resolved[0]
        assert isinstance(bound, FixedTokens)
        if exact:
            points.append(_exact_point(target, bound, strength))
        else:
            proposal = ForceTokens(dict(spans), strength=None if hard else float(strength))
            posterior = importance(
                target, n_particles=n, proposal=[proposal], seed=seed, batch_size=batch_size
            )
            weights = posterior.weights.tolist()
            satisfied = sum(
                w
                for s, w in zip(posterior.samples, weights, strict=True)
                if bound.matches(s.token_ids) == len(bound.ids)
            )
            points.append(
                PromptRewardPoint(
                    strength,
                    satisfied,
                    -math.log(satisfied) if satisfied > 0 else math.inf,
                    posterior.log_evidence,
                    posterior.ess,
                    posterior.model_calls,
                    posterior.sampler,
                )
            )
    return points


def _exact_point(target: Target, bound: FixedTokens, strength: float) -> PromptRewardPoint:
    exact = enumerate_target(target)
    probs = exact.probs.tolist()
    satisfied = sum(
        p
        for tokens, p in zip(exact.completions, probs, strict=True)
        if bound.matches(tokens) == len(bound.ids)
    )
    return PromptRewardPoint(
        strength,
        satisfied,
        -math.log(satisfied) if satisfied > 0 else math.inf,
        exact.log_evidence,
        None,
        0,
        "exact",
    )

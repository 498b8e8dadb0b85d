"""Conditioning: sample exactly from π(x | condition) and π(x)·exp(r(x)/β), and say what it cost.

A `Target` is the base model's distribution over completions of a prompt times potentials (hard
predicates such as `ends_with`, soft rewards). Samplers share one signature,
`sampler(target, *, n_particles, budget, seed, proposal, …) -> Posterior`, and are registered by name
in `SAMPLERS` (what `steer sample --sampler` offers). A `Posterior` holds samples, weights, ESS, the
evidence log Ẑ, the KL to the base, and the model calls spent. `enumerate_target` computes the target
exactly on tiny vocabularies, for the tests.
"""

from steering.condition.enumerate import Enumeration, enumerate_target
from steering.condition.posterior import Posterior
from steering.condition.potentials import (
    FixedTokens,
    Potential,
    Predicate,
    Reward,
    classifier_at_least,
    contains,
    ends_with,
    fixed_tokens,
    length_between,
    matches,
    starts_with,
)
from steering.condition.prompt_reward import PromptRewardPoint, prompt_as_reward
from steering.condition.registry import SAMPLERS, Sampler, SamplerEntry, sampler_entry
from steering.condition.samplers import importance, rejection
from steering.condition.smc import smc, systematic_resample
from steering.condition.target import Target

__all__ = [
    "SAMPLERS",
    "Enumeration",
    "FixedTokens",
    "Posterior",
    "Potential",
    "Predicate",
    "PromptRewardPoint",
    "Reward",
    "Sampler",
    "SamplerEntry",
    "Target",
    "classifier_at_least",
    "contains",
    "ends_with",
    "enumerate_target",
    "fixed_tokens",
    "importance",
    "length_between",
    "matches",
    "prompt_as_reward",
    "rejection",
    "sampler_entry",
    "smc",
    "starts_with",
    "systematic_resample",
]

"""Conditioning: sample exactly from π(x | condition) and π(x)·exp(r(x)/β), and say what it cost.

A `Target` is the base model's distribution over completions of a prompt times potentials (hard
predicates such as `ends_with`, soft rewards). Samplers return a `Posterior`: samples, weights, ESS,
the evidence log Ẑ, the KL to the base, and the model calls spent. `enumerate_target` computes the
target exactly on tiny vocabularies, for the tests.
"""

from steering.condition.enumerate import Enumeration, enumerate_target
from steering.condition.posterior import Posterior
from steering.condition.potentials import (
    Potential,
    Predicate,
    Reward,
    classifier_at_least,
    contains,
    ends_with,
    length_between,
    matches,
    starts_with,
)
from steering.condition.samplers import importance, rejection
from steering.condition.smc import smc, systematic_resample
from steering.condition.target import Target

__all__ = [
    "Enumeration",
    "Posterior",
    "Potential",
    "Predicate",
    "Reward",
    "Target",
    "classifier_at_least",
    "contains",
    "ends_with",
    "enumerate_target",
    "importance",
    "length_between",
    "matches",
    "rejection",
    "smc",
    "starts_with",
    "systematic_resample",
]

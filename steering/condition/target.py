"""`Target`: the base model's distribution over completions of a prompt, times potentials.

    target(x) = π(x | prompt) · Π_k φ_k(x) / Z

π is the model's own distribution (ancestral sampling at temperature 1, a completion ending at EOS or
after `max_new_tokens`), φ are potentials (hard predicates and soft exp(r/β)). Z — the evidence — is
the probability of the condition under π for hard potentials.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from steering.condition.potentials import Potential, Reward, RewardFn, check_beta
from steering.errors import InvalidArgument
from steering.models.language_model import LanguageModel


@dataclass
class Target:
    """π(x | prompt) · Π φ(x): what the samplers sample from.

    Args:
        model: the base model π.
        prompt: the text completions follow.
        potentials: hard predicates (`ends_with`, `contains`, …) and soft potentials; a plain reward
            callable `(prompts, completions) -> list[float]` becomes exp(r(x)/β).
        beta: the KL weight β of soft potentials (> 0).
        max_new_tokens: the length at which a completion is cut (part of the definition of π).
    """

    model: LanguageModel
    prompt: str
    potentials: Sequence[Potential | RewardFn]
    beta: float = 1.0
    max_new_tokens: int = 32

    def __post_init__(self) -> None:
        self.beta = check_beta(self.beta)
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise InvalidArgument(
                "the prompt is empty", received=repr(self.prompt), fix="give text to continue"
            )
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens <= 0:
            raise InvalidArgument(
                "max_new_tokens must be positive", received=self.max_new_tokens, fix="use 32"
            )
        resolved: list[Potential] = []
        for index, potential in enumerate(self.potentials):
            if isinstance(potential, Potential):
                resolved.append(potential)
            elif callable(potential):
                name = getattr(potential, "__name__", f"reward {index}")
                resolved.append(Reward(potential, self.beta, name))
            else:
                raise InvalidArgument(
                    "a potential must be a predicate from steering.condition or a reward callable",
                    received=type(potential).__name__,
                    fix="use e.g. ends_with('the end') or a function (prompts, completions) -> list[float]",
                )
        if not resolved:
            raise InvalidArgument("a target needs at least one potential", received=[], fix="add a condition")
        self.resolved: tuple[Potential, ...] = tuple(resolved)

    @property
    def hard(self) -> bool:
        """True when every potential is a hard predicate (the target is π conditioned on an event)."""
        return all(p.hard for p in self.resolved)

    def log_potential(self, completions: Sequence[str]) -> torch.Tensor:
        """(N,) Σ_k log φ_k(x) for each completion (float64; −inf where a hard potential fails)."""
        total = torch.zeros(len(completions), dtype=torch.float64)
        prompts = [self.prompt] * len(completions)
        for potential in self.resolved:
            total += torch.tensor(potential.log_potential(prompts, completions), dtype=torch.float64)
        return total

    def prefix_ok(self, prefix: str) -> bool:
        """False when some hard potential already rules out every completion of `prefix`."""
        return all(getattr(p, "prefix_ok", lambda _x: True)(prefix) for p in self.resolved)

    def describe(self) -> str:
        return " · ".join(repr(p) for p in self.resolved)

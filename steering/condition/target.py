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

from steering.condition.potentials import Potential, Reward
from steering.errors import InvalidArgument
from steering.models.language_model import LanguageModel
from steering.rewards import RewardFn, check_beta


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
                bind = getattr(potential, "bind", None)
                resolved.append(bind(self.model.tokenizer) if callable(bind) else potential)
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

    def log_potential(
        self, completions: Sequence[str], token_ids: Sequence[Sequence[int]] | None = None
    ) -> torch.Tensor:
        """(N,) Σ_k log φ_k(x) for each completion (float64; −inf where a hard potential fails).

        `token_ids` (the generated ids, EOS included where sampled) are needed by potentials on ids.
        """
        total = torch.zeros(len(completions), dtype=torch.float64)
        prompts = [self.prompt] * len(completions)
        for potential in self.resolved:
            on_ids = getattr(potential, "log_potential_ids", None)
            if callable(on_ids):
                if token_ids is None:
                    raise InvalidArgument(
                        f"{potential!r} needs the completions' token ids",
                        received="texts only",
                        fix="pass token_ids to Target.log_potential",
                    )
                values = on_ids(token_ids)
            else:
                values = potential.log_potential(prompts, completions)
            total += torch.tensor(values, dtype=torch.float64)
        return total

    def prefix_ok(self, prefix: str, token_ids: Sequence[int] | None = None) -> bool:
        """False when some hard potential already rules out every completion of `prefix`."""
        for potential in self.resolved:
            on_ids = getattr(potential, "prefix_ok_ids", None)
            if callable(on_ids):
                if token_ids is not None and not on_ids(token_ids):
                    return False
            elif not getattr(potential, "prefix_ok", lambda _x: True)(prefix):
                return False
        return True

    def describe(self) -> str:
        return " · ".join(repr(p) for p in self.resolved)

"""Rewards: plain callables `(prompts, completions) -> list[float]`, checked where they are called.

A reward is TRL's shape: any callable taking the prompts and the completions (texts) and returning one
finite float per completion — a Python function, a trained reward model, an AI judge. Training
(`train/`: RL, the KL-regularised objective E_q[r] − β·KL(q ‖ p)) and conditioning (`condition/`:
the target p(x)·exp(r(x)/β), Korbak et al. 2022, "RL with KL penalties is better viewed as Bayesian
inference") both take them, so they live here, below both layers:

- `checked_rewards` calls a reward and refuses NaN, ±inf or the wrong number of values, naming it;
- `check_beta` validates the KL weight β of either use;
- `TokenPotential` is a reward on token ids rather than texts (`condition.fixed_tokens(spans,
  strength=λ)`: λ per fixed position matched), bound to a tokenizer before use;
- `RewardSum` weighs several rewards into one (TRL's `reward_funcs` with `reward_weights`) and keeps
  each one's mean for the metrics;
- `load_reward` resolves a reward named in a config or on the command line: a short name from
  `NAMED_REWARDS` (`vader`) or `module:function`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from steering.callables import load_callable
from steering.errors import InvalidArgument

RewardFn = Callable[[Sequence[str], Sequence[str]], Sequence[float]]

# Rewards known by a short name: name → module:function (imported when asked for, not before).
NAMED_REWARDS = {
    "vader": "steering.eval.sentiment:vader_reward",
    # Code checks of the packaged training instructions (format, accepted answer, something written).
    "instructions": "steering.eval.instructions:training_instructions_reward",
}


@runtime_checkable
class TokenPotential(Protocol):
    """A reward on token ids (`condition.fixed_tokens`), bound to the model's tokenizer before use.

    A `hard` one takes only the values 0 and −inf (a condition to sample, not a reward to train on).
    """

    @property
    def hard(self) -> bool: ...

    def bind(self, tokenizer: Any) -> TokenPotential:
        """The potential with its texts tokenised by `tokenizer`."""
        ...

    def log_potential_ids(self, token_ids: Sequence[Sequence[int]]) -> list[float]:
        """One value per completion, from its generated token ids."""
        ...


def checked_rewards(
    fn: RewardFn, prompts: Sequence[str], completions: Sequence[str], *, name: str
) -> list[float]:
    """Call a reward and refuse NaN, ±inf or the wrong number of values, naming the reward.

    Args:
        fn: the reward callable.
        prompts: (N,) the prompts, one per completion.
        completions: (N,) the completion texts.
        name: how error messages call the reward.

    Returns:
        (N,) the rewards as floats.

    Raises:
        InvalidArgument: not one finite number per completion.
    """
    values = list(fn(list(prompts), list(completions)))
    if len(values) != len(completions):
        raise InvalidArgument(
            f"the reward {name} returned {len(values)} values for {len(completions)} completions",
            received=values[:5],
            fix="return one float per completion",
        )
    for value in values:
        if not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            raise InvalidArgument(
                f"the reward {name} returned a value that is not a finite number",
                received=value,
                fix="return finite floats (clip or replace NaN/inf inside the reward)",
            )
    return [float(v) for v in values]


def check_beta(beta: float) -> float:
    """β, the KL weight, as a float.

    Raises:
        InvalidArgument: β is not a positive finite number.
    """
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not math.isfinite(beta) or beta <= 0:
        raise InvalidArgument(
            "β (the KL weight) must be a positive finite number",
            received=beta,
            fix="use e.g. beta=0.5; smaller β follows the reward more closely",
        )
    return float(beta)


def load_reward(spec: str, *, flag: str = "reward") -> RewardFn:
    """A reward named in a config or on the command line: a name of `NAMED_REWARDS` or module:function.

    Raises:
        SteeringError: the module or function cannot be found (`flag` names the option in the message).
    """
    return load_callable(NAMED_REWARDS.get(spec, spec), flag)  # type: ignore[return-value]


class RewardSum:
    """Σ_i w_i · r_i(prompts, completions): several rewards as one, TRL GRPO's `reward_funcs` with
    `reward_weights` (e.g. a learned reward model beside verifiable code checks).

    Each part is checked (`checked_rewards`) under its own name; `last_means` holds each part's mean over
    the latest call, unweighted, for the metrics.
    """

    def __init__(self, parts: Sequence[tuple[str, RewardFn, float]]) -> None:
        if not parts:
            raise InvalidArgument("a sum of rewards needs at least one", received=[], fix="name a reward")
        for name, _, weight in parts:
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise InvalidArgument(
                    f"the weight of the reward {name} must be a finite number",
                    received=weight,
                    fix="use e.g. reward_weights = [1.0, 0.5]",
                )
        self.parts = [(name, fn, float(weight)) for name, fn, weight in parts]
        self.last_means: dict[str, float] = {}
        self.__name__ = " + ".join(f"{weight:g}·{name}" for name, _, weight in self.parts)

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        total = [0.0] * len(completions)
        for name, fn, weight in self.parts:
            values = checked_rewards(fn, prompts, completions, name=name)
            self.last_means[name] = sum(values) / max(len(values), 1)
            total = [t + weight * v for t, v in zip(total, values, strict=True)]
        return total

"""Judges as rewards (`steering.rewards.RewardFn`), so RL can train a policy against a judge.

`rating_reward` gives each completion the judge's rating expectation (1–7); `pairwise_reward` gives
P(completion ≻ the prompt's reference answer), judged in both shown orders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from steering.errors import InvalidArgument
from steering.feedback.constitution import Principle
from steering.feedback.judge_contract import Judge, Pair
from steering.rewards import RewardFn


def rating_reward(judge: Judge, principle: Principle) -> RewardFn:
    """The judge's rating expectation (1–7) of each completion as a reward."""

    def reward(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        return [rating.value for rating in judge.rate(list(prompts), list(completions), principle)]

    return reward


def pairwise_reward(judge: Judge, principle: Principle, references: Mapping[str, str]) -> RewardFn:
    """P(completion ≻ the reference answer of its prompt) under the judge, in [0, 1], as a reward.

    Raises (when called):
        InvalidArgument: a prompt has no reference answer.
    """

    def reward(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        missing = [p for p in prompts if p not in references]
        if missing:
            raise InvalidArgument(
                "the pairwise judge reward has no reference answer for a prompt",
                received=missing[0][:120],
                fix="give a reference answer for every prompt the policy is trained on",
            )
        pairs = [Pair(p, c, references[p]) for p, c in zip(prompts, completions, strict=True)]
        return [judgment.p_a for judgment in judge.pairwise(pairs, principle)]

    return reward

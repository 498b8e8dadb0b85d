"""Judges as rewards: ratings and pairwise wins pass the reward checks and mean what they say."""

from __future__ import annotations

import pytest
from judge_cases import ANSWERS, CORRECT, programmatic_judges

from steering.errors import InvalidArgument
from steering.feedback.judges import (
    GeneratingJudge,
    ModelJudge,
    exact_answer_judge,
    pairwise_reward,
    rating_reward,
)
from steering.rewards import checked_rewards


def test_judges_as_rewards_pass_the_reward_checks(tiny):
    prompts = ["What is 2 + 2?", "What is the capital of France?"]
    completions = ["4", "Berlin"]
    for judge in [ModelJudge(tiny), GeneratingJudge(ModelJudge(tiny)), *programmatic_judges()]:
        ratings = checked_rewards(rating_reward(judge, CORRECT), prompts, completions, name=judge.name)
        assert all(1.0 <= r <= 7.0 for r in ratings)
        references = {"What is 2 + 2?": "5", "What is the capital of France?": "Paris"}
        wins = checked_rewards(
            pairwise_reward(judge, CORRECT, references), prompts, completions, name=judge.name
        )
        assert all(0.0 <= w <= 1.0 for w in wins)
    exact = exact_answer_judge(ANSWERS)
    assert checked_rewards(rating_reward(exact, CORRECT), prompts, completions, name="exact") == [7.0, 1.0]
    assert checked_rewards(pairwise_reward(exact, CORRECT, references), prompts, completions, name="x") == [
        1.0,
        0.0,
    ]
    with pytest.raises(InvalidArgument, match="no reference answer"):
        pairwise_reward(exact, CORRECT, {})(["What is 2 + 2?"], ["4"])

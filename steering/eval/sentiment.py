"""VADER sentiment as a reward callable `(prompts, completions) -> list[float]` (TRL's shape)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _analyzer() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_reward(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
    """VADER compound score of each completion, in [−1, 1] (positive = positive sentiment)."""
    analyzer = _analyzer()
    return [float(analyzer.polarity_scores(text)["compound"]) for text in completions]

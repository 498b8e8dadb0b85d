"""Feedback from people and from AI judges: a SQLite store of prompts, candidate responses and answers
(comparisons, rankings, ratings, critiques), import/export of the common preference formats, and
agreement statistics. People (the annotation app) and judges write to the same tables, so every
downstream step (reward models, DPO, SFT) can use either or both.
"""

from steering.feedback.exchange import EXPORT_SHAPES, IMPORT_SOURCES, export_feedback, import_feedback
from steering.feedback.store import (
    CHOICES,
    ITEM_KINDS,
    SCHEMA_VERSION,
    Annotator,
    Comparison,
    CritiqueAnswer,
    FeedbackStore,
    Item,
    Progress,
    Prompt,
    RankingAnswer,
    RatingAnswer,
    Response,
)

__all__ = [
    "CHOICES",
    "EXPORT_SHAPES",
    "IMPORT_SOURCES",
    "ITEM_KINDS",
    "SCHEMA_VERSION",
    "Annotator",
    "Comparison",
    "CritiqueAnswer",
    "FeedbackStore",
    "Item",
    "Progress",
    "Prompt",
    "RankingAnswer",
    "RatingAnswer",
    "Response",
    "export_feedback",
    "import_feedback",
]

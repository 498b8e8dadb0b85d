"""Evaluation: metrics on `Samples`, the built-in question set, and the HTML report."""

from steering.eval.metrics import (
    Summary,
    distinct_n,
    first_answer,
    invents_question,
    is_correct,
    longest_repeated_ngram,
    normalise,
    summarise,
)
from steering.eval.questions import Question, builtin_demonstrations, builtin_questions

__all__ = [
    "Question",
    "Summary",
    "builtin_demonstrations",
    "builtin_questions",
    "distinct_n",
    "first_answer",
    "invents_question",
    "is_correct",
    "longest_repeated_ngram",
    "normalise",
    "summarise",
]

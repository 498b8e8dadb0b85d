"""Evaluation: metrics on `Samples`, the built-in question set, and the HTML report."""

from steering.eval.instruction_scores import GroupScores, InstructionScores, score_instructions, score_samples
from steering.eval.instructions import (
    Demo,
    Instruction,
    Rule,
    check_rule,
    instruction_demos,
    is_empty_reply,
    load_instructions,
    read_instructions,
    reply_checks,
    wrote_something,
)
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
from steering.eval.probe import Battery, ProbeResult, load_battery, probe, read_battery
from steering.eval.questions import Question, builtin_demonstrations, builtin_questions

__all__ = [
    "Battery",
    "Demo",
    "GroupScores",
    "Instruction",
    "InstructionScores",
    "ProbeResult",
    "Question",
    "Rule",
    "Summary",
    "builtin_demonstrations",
    "builtin_questions",
    "check_rule",
    "distinct_n",
    "first_answer",
    "instruction_demos",
    "invents_question",
    "is_correct",
    "is_empty_reply",
    "load_battery",
    "load_instructions",
    "longest_repeated_ngram",
    "normalise",
    "probe",
    "read_battery",
    "read_instructions",
    "reply_checks",
    "score_instructions",
    "score_samples",
    "summarise",
    "wrote_something",
]

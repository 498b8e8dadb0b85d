"""Scores of replies to instructions: per kind, per task and overall, by the code checks of `instructions`.

`score_instructions(instructions, texts, stop_reasons)` (K replies per instruction) and
`score_samples(instructions, samples)` (the `Samples` of `generate(…, n=K)`) give an
`InstructionScores`: empty replies, accuracy, format compliance, "wrote something", stop rate,
invented questions, distinct-2 and mean words, each a rate over replies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from steering.decode.samples import Samples
from steering.errors import InvalidArgument
from steering.eval.instructions import KINDS, TASKS, Instruction, check_rule, is_empty_reply, words
from steering.eval.metrics import distinct_n, invents_question, is_correct

SCORE_COLUMNS = (
    "group",
    "instructions",
    "samples",
    "empty reply",
    "accuracy",
    "format compliance",
    "wrote something",
    "stop rate",
    "new question",
    "distinct-2",
    "mean words",
)


@dataclass(frozen=True)
class GroupScores:
    """Scores of one group of instructions (a kind, a task, or all). Rates are over samples, not
    instructions; None where the group has nothing to measure.

    - empty_rate: replies with no letter or digit (`is_empty_reply`).
    - accuracy: factual rows and format rows with `answers`, by `metrics.is_correct` (first line).
    - format_compliance: format rows, by `check_rule` of the row's rule.
    - wrote_rate: writing rows, by `wrote_something` with the row's min_words.
    - stop_rate: stop reason "eos" or "stop" (not "length").
    - new_question_rate: `metrics.invents_question` (any "?" counts, so jokes in riddle form count too).
    - distinct_2: mean of `metrics.distinct_n(text, 2)` over replies of two words or more.
    - mean_words: mean `len(words(text))`.
    """

    instructions: int
    samples: int
    empty_rate: float
    accuracy: float | None
    format_compliance: float | None
    wrote_rate: float | None
    stop_rate: float
    new_question_rate: float
    distinct_2: float | None
    mean_words: float

    def row(self, group: str) -> list[object]:
        """This group as one table row in SCORE_COLUMNS order."""
        return [group, *self.as_dict().values()]

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class InstructionScores:
    """Scores per kind (in KINDS order, kinds present only), per task, and over all instructions."""

    overall: GroupScores
    by_kind: Mapping[str, GroupScores] = field(default_factory=dict)
    by_task: Mapping[str, GroupScores] = field(default_factory=dict)

    def as_rows(self, *, by: str = "kind") -> list[list[object]]:
        """Table rows (SCORE_COLUMNS order) for a report: one per kind (or task, `by="task"`), then "all"."""
        if by not in ("kind", "task"):
            raise InvalidArgument(
                "as_rows groups by 'kind' or 'task'", received=by, fix='pass by="kind" or by="task"'
            )
        groups = self.by_kind if by == "kind" else self.by_task
        return [scores.row(name) for name, scores in groups.items()] + [self.overall.row("all")]

    def as_dict(self) -> dict[str, object]:
        """JSON-serialisable: {"overall": {...}, "by_kind": {kind: {...}}, "by_task": {task: {...}}}."""
        return {
            "overall": self.overall.as_dict(),
            "by_kind": {name: scores.as_dict() for name, scores in self.by_kind.items()},
            "by_task": {name: scores.as_dict() for name, scores in self.by_task.items()},
        }


def _rate(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _group(pairs: Sequence[tuple[Instruction, list[tuple[str, str]]]]) -> GroupScores:
    """Scores of instructions with their (text, stop_reason) samples."""
    samples = [(ins, text, stop) for ins, replies in pairs for text, stop in replies]
    answered = [
        is_correct(text, ins.answers) for ins, text, _ in samples if ins.answers and ins.kind != "writing"
    ]
    formatted = [
        check_rule(ins.rule, t, answers=ins.answers)
        for ins, t, _ in samples
        if ins.kind == "format" and ins.rule
    ]
    wrote = [check_rule(ins.rule, text) for ins, text, _ in samples if ins.kind == "writing" and ins.rule]
    diversity = [d for _, text, _ in samples if (d := distinct_n(text, 2)) is not None]
    return GroupScores(
        instructions=len(pairs),
        samples=len(samples),
        empty_rate=sum(is_empty_reply(text) for _, text, _ in samples) / len(samples),
        accuracy=_rate(answered),
        format_compliance=_rate(formatted),
        wrote_rate=_rate(wrote),
        stop_rate=sum(stop in ("eos", "stop") for _, _, stop in samples) / len(samples),
        new_question_rate=sum(invents_question(text) for _, text, _ in samples) / len(samples),
        distinct_2=sum(diversity) / len(diversity) if diversity else None,
        mean_words=sum(len(words(text)) for _, text, _ in samples) / len(samples),
    )


def _as_samples(values: Any, count: int, what: str) -> list[list[str]]:
    """`values` in the shape list (per instruction) of lists (per sample) of strings; a bare string per
    instruction is read as one sample."""
    shape_fix = f"pass one list per instruction ({count}), each holding that instruction's samples as strings"
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) != count:
        size = (
            len(values)
            if isinstance(values, Sequence) and not isinstance(values, str)
            else type(values).__name__
        )
        raise InvalidArgument(
            f"{what} must hold one entry per instruction ({count})", received=size, fix=shape_fix
        )
    shaped = []
    for index, entry in enumerate(values):
        samples = [entry] if isinstance(entry, str) else entry
        if not isinstance(samples, Sequence) or not samples or not all(isinstance(s, str) for s in samples):
            raise InvalidArgument(
                f"{what}[{index}] is not a non-empty list of strings", received=entry, fix=shape_fix
            )
        shaped.append(list(samples))
    return shaped


def score_instructions(
    instructions: Sequence[Instruction], texts: Sequence[Any], stop_reasons: Sequence[Any]
) -> InstructionScores:
    """Score replies to `instructions` with the code checks, per kind, per task and overall.

    Args:
        instructions: the instructions asked.
        texts: `texts[i]` is the list of sampled replies to `instructions[i]` (K samples each; K may differ
            between instructions); a plain string stands for a list of one.
        stop_reasons: the same shape as `texts`: why each sample stopped ("eos", "stop", "length", …).

    Raises:
        InvalidArgument: no instructions, or `texts`/`stop_reasons` not in that shape.
    """
    if not instructions or not all(isinstance(i, Instruction) for i in instructions):
        raise InvalidArgument(
            "score_instructions needs a non-empty list of Instruction",
            received=type(instructions).__name__
            if not instructions
            else [type(i).__name__ for i in instructions][:5],
            fix='pass load_instructions("eval") or read_instructions(path)',
        )
    replies = _as_samples(texts, len(instructions), "texts")
    stops = _as_samples(stop_reasons, len(instructions), "stop_reasons")
    for index, (these, reasons) in enumerate(zip(replies, stops, strict=True)):
        if len(these) != len(reasons):
            raise InvalidArgument(
                f"texts[{index}] has {len(these)} samples but stop_reasons[{index}] has {len(reasons)}",
                received=(len(these), len(reasons)),
                fix="pass one stop reason per sampled text",
            )
    pairs = [
        (ins, list(zip(t, s, strict=True))) for ins, t, s in zip(instructions, replies, stops, strict=True)
    ]
    by_kind = {
        k: _group([p for p in pairs if p[0].kind == k]) for k in KINDS if any(p[0].kind == k for p in pairs)
    }
    tasks = [t for k in KINDS for t in TASKS[k] if any(p[0].task == t for p in pairs)]
    by_task = {t: _group([p for p in pairs if p[0].task == t]) for t in tasks}
    return InstructionScores(overall=_group(pairs), by_kind=by_kind, by_task=by_task)


def score_samples(instructions: Sequence[Instruction], samples: Samples) -> InstructionScores:
    """`score_instructions` on the `Samples` of `generate(model, [i.text for i in instructions], n=K)`:
    sample j belongs to instruction `samples[j].prompt_index`."""
    texts: list[list[str]] = [[] for _ in instructions]
    stops: list[list[str]] = [[] for _ in instructions]
    for sample in samples:
        if not 0 <= sample.prompt_index < len(instructions):
            raise InvalidArgument(
                f"a sample answers prompt {sample.prompt_index}, but there are {len(instructions)} instructions",
                received=sample.prompt,
                fix="generate with the prompts [i.text for i in instructions], in that order",
            )
        texts[sample.prompt_index].append(sample.text)
        stops[sample.prompt_index].append(sample.stop_reason)
    return score_instructions(instructions, texts, stops)

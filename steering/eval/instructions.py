"""The instruction sets of the instruct recipe, and the code checks that score answers to them.

Every instruction is written as a user would type it, bare (no "Q:" wrapper), and has a `kind` and a
sub-kind `task`:

- **factual** (task `short_answer`): a short question; `answers` are the accepted answers, checked as by
  `metrics.is_correct` (an accepted answer, as whole words, in the first non-empty line).
- **format** (tasks `one_word`, `list_of_three`, `lowercase`, `max_words`, `answer_then_stop`): an
  instruction about the *form* of the reply; its `rule` (e.g. `{"rule": "max_words", "n": 10}`) is checked
  by `check_rule`, and where the question has one right answer `answers` lists it.
- **writing** (tasks `few_sentences`, `email`, `two_jokes`, `summary`, `rewrite`): a request for a few
  sentences of text (a summary or rewrite quotes its paragraph or sentence in the instruction); the code
  check is only that something was written: its rule `{"rule": "min_words", "n": N}` is `wrote_something`.

Two disjoint sets ship with the package: "train" (what the recipe harvests demonstrations for, samples
and labels) and "eval" (held out: what each stage is scored on), plus few-shot demonstrations
(`instruction_demos`) disjoint from both. Scoring many replies per kind and task is in
`instruction_scores`. Why code checks: a judge model can be fooled by fluent text,
but "three items", "no capital letters" or "an empty reply" are facts about the string.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from steering.errors import InputFormatError, InvalidArgument, did_you_mean
from steering.eval.metrics import invents_question, is_correct, normalise
from steering.jsonl import read_jsonl

TASKS: dict[str, tuple[str, ...]] = {
    "factual": ("short_answer",),
    "format": ("one_word", "list_of_three", "lowercase", "max_words", "answer_then_stop"),
    "writing": ("few_sentences", "email", "two_jokes", "summary", "rewrite"),
}
KINDS = tuple(TASKS)
SPLITS = ("train", "eval")
# Rules that need a count `n`, and what it counts.
RULES_WITH_N = {
    "max_words": "words at most",
    "answer_then_stop": "words after the answer",
    "min_words": "words",
}
RULES = ("one_word", "list_of_three", "lowercase", "max_words", "answer_then_stop", "min_words")
# Minimum words of a writing reply when a user's row gives no rule.
WRITING_MIN_WORDS = {"few_sentences": 15, "email": 15, "two_jokes": 10, "summary": 8, "rewrite": 4}
EXAMPLE_ROW = '{"kind": "format", "task": "max_words", "text": "Describe rain in at most 8 words.", "rule": {"rule": "max_words", "n": 8}}'


@dataclass(frozen=True)
class Rule:
    """A machine-checkable format rule: its `name` (one of RULES) and, for the counting rules, `n`."""

    name: str
    n: int | None = None

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise InvalidArgument(
                f"unknown format rule {self.name!r}.{did_you_mean(self.name, RULES)}",
                received=self.name,
                fix=f"use one of {', '.join(RULES)}",
            )
        needs_n = self.name in RULES_WITH_N
        bad_n = not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 0
        if needs_n and bad_n:
            raise InvalidArgument(
                f"the rule {self.name!r} needs a count n ({RULES_WITH_N[self.name]}), a whole number ≥ 0",
                received=f"n={self.n!r}",
                fix=f'write it as {{"rule": "{self.name}", "n": 10}}',
            )
        if not needs_n and self.n is not None:
            raise InvalidArgument(
                f"the rule {self.name!r} takes no count n",
                received=self.n,
                fix=f'write it as {{"rule": "{self.name}"}}',
            )

    @classmethod
    def parse(cls, value: Rule | Mapping[str, Any]) -> Rule:
        """A Rule from itself or from its JSON form `{"rule": name, "n": count}`."""
        if isinstance(value, Rule):
            return value
        if not isinstance(value, Mapping) or not isinstance(value.get("rule"), str):
            raise InvalidArgument(
                "a format rule must be an object with a string field 'rule'",
                received=value,
                fix='write it as {"rule": "max_words", "n": 10}',
            )
        extra = sorted(set(value) - {"rule", "n"})
        if extra:
            raise InvalidArgument(
                f"a format rule has only the fields 'rule' and 'n', not {', '.join(extra)}",
                received=dict(value),
                fix='write it as {"rule": "max_words", "n": 10}',
            )
        return cls(value["rule"], value.get("n"))

    def as_dict(self) -> dict[str, object]:
        return {"rule": self.name} if self.n is None else {"rule": self.name, "n": self.n}


@dataclass(frozen=True)
class Instruction:
    """One instruction: kind and task (see TASKS), the bare text, accepted answers and format rule."""

    kind: str
    task: str
    text: str
    answers: tuple[str, ...] = ()
    rule: Rule | None = None

    def as_dict(self) -> dict[str, object]:
        row: dict[str, object] = {"kind": self.kind, "task": self.task, "text": self.text}
        if self.answers:
            row["answers"] = list(self.answers)
        if self.rule is not None:
            row["rule"] = self.rule.as_dict()
        return row


@dataclass(frozen=True)
class Demo:
    """A few-shot demonstration: an instruction and a reply as a good small assistant would write it."""

    instruction: Instruction
    response: str


# --- reading ------------------------------------------------------------------------------------------


def _instruction(row: Any, where: str) -> Instruction:
    """An Instruction from one parsed JSONL row; InputFormatError naming `where` when it is malformed."""
    try:
        return _checked_instruction(row)
    except InvalidArgument as error:
        raise InputFormatError(f"{where}: {error.what}", received=error.received, fix=error.fix) from None


def _checked_instruction(row: Any) -> Instruction:
    if not isinstance(row, dict):
        raise InvalidArgument(
            "an instruction must be a JSON object", received=row, fix=f"write e.g. {EXAMPLE_ROW}"
        )
    kind, task, text = row.get("kind"), row.get("task"), row.get("text")
    if not isinstance(kind, str) or kind not in TASKS:
        raise InvalidArgument(
            f"unknown instruction kind {kind!r}.{did_you_mean(str(kind), KINDS)}",
            received=kind,
            fix=f"use one of {', '.join(KINDS)}",
        )
    if not isinstance(task, str) or task not in TASKS[kind]:
        raise InvalidArgument(
            f"unknown {kind} task {task!r}.{did_you_mean(str(task), TASKS[kind])}",
            received=task,
            fix=f"use one of {', '.join(TASKS[kind])}",
        )
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument(
            "an instruction needs a non-empty string 'text'", received=text, fix=f"write e.g. {EXAMPLE_ROW}"
        )
    answers = row.get("answers", [])
    if not isinstance(answers, list) or not all(isinstance(a, str) and normalise(a) for a in answers):
        raise InvalidArgument(
            "'answers' must be a list of non-empty strings",
            received=answers,
            fix='write e.g. "answers": ["Paris"]',
        )
    rule = None if row.get("rule") is None else Rule.parse(row["rule"])
    if kind == "writing" and rule is None:
        rule = Rule("min_words", WRITING_MIN_WORDS[task])
    _check_fits(kind, task, rule, answers)
    return Instruction(kind, task, text, tuple(answers), rule)


def _check_fits(kind: str, task: str, rule: Rule | None, answers: list[str]) -> None:
    """The rule and answers a kind needs: factual → answers; format → the rule named like the task."""
    if kind == "factual" and not answers:
        raise InvalidArgument(
            "a factual instruction needs accepted 'answers'",
            received=answers,
            fix='add e.g. "answers": ["Paris"]',
        )
    if kind == "format" and (rule is None or rule.name != task):
        raise InvalidArgument(
            f"a format instruction of task {task!r} needs the rule {task!r}",
            received=None if rule is None else rule.as_dict(),
            fix=f'add "rule": {json.dumps(Rule(task, 10 if task in RULES_WITH_N else None).as_dict())}',
        )
    if kind == "writing" and rule is not None and rule.name != "min_words":
        raise InvalidArgument(
            "a writing instruction's rule is min_words",
            received=rule.as_dict(),
            fix='use {"rule": "min_words", "n": 10}',
        )
    if task == "answer_then_stop" and not answers:
        raise InvalidArgument(
            "an answer_then_stop instruction needs accepted 'answers'",
            received=answers,
            fix='add e.g. "answers": ["Lima"]',
        )


def _packaged_rows(name: str) -> list[tuple[str, Any]]:
    text = files("steering.eval").joinpath(f"data/{name}.jsonl").read_text(encoding="utf-8")
    return [
        (f"{name}.jsonl:{i}", json.loads(line)) for i, line in enumerate(text.splitlines(), 1) if line.strip()
    ]


def load_instructions(split: str) -> list[Instruction]:
    """The project's instruction set `split`: "train" (95+ rows) or "eval" (held out; 75+ rows)."""
    if split not in SPLITS:
        raise InvalidArgument(
            f"unknown instruction split {split!r}.{did_you_mean(str(split), SPLITS)}",
            received=split,
            fix='pass "train" (what the recipe trains on) or "eval" (held out)',
        )
    return [_instruction(row, where) for where, row in _packaged_rows(f"instructions_{split}")]


def read_instructions(path: str | Path) -> list[Instruction]:
    """A user's instruction file: JSONL rows in the packaged files' shape (see EXAMPLE_ROW)."""
    rows = read_jsonl(path, what="instructions file", example=EXAMPLE_ROW)
    found = [_instruction(value, f"{path}:{number}") for number, _, value in rows]
    if not found:
        raise InputFormatError(
            f"the instructions file {path} holds no rows",
            received=str(path),
            fix=f"write one object per line, e.g. {EXAMPLE_ROW}",
        )
    return found


def instruction_demos() -> list[Demo]:
    """Few-shot demonstrations, at least four per task, disjoint from both splits."""
    demos = []
    for where, row in _packaged_rows("instruction_demos"):
        response = row.pop("response", None) if isinstance(row, dict) else None
        if not isinstance(response, str) or not response.strip():
            raise InputFormatError(
                f"{where}: a demonstration needs a non-empty 'response'", received=response
            )
        demos.append(Demo(_instruction(row, where), response))
    return demos


# --- checks -------------------------------------------------------------------------------------------

_HAS_WORD_CHAR = re.compile(r"[^\W_]")  # a letter or digit, in any script
_LIST_ITEM = re.compile(r"^(?:[-*•]|(\d+)[.)])\s+(\S.*)$")
LIST_ITEM_MAX_WORDS = 4  # an item of a comma-separated list is a phrase, not a sentence


def words(text: str) -> list[str]:
    """The words of `text`: whitespace-separated tokens holding at least one letter or digit.

    "Paris." is one word, "twenty-one" one, "—" and "..." none.
    """
    return [token for token in text.split() if _HAS_WORD_CHAR.search(token)]


def is_empty_reply(text: str) -> bool:
    """True when `text` has no letter or digit: nothing but whitespace, punctuation or symbols."""
    return not _HAS_WORD_CHAR.search(text)


def wrote_something(text: str, min_words: int) -> bool:
    """The writing check: the reply is not empty and has at least `min_words` words (see `words`)."""
    return not is_empty_reply(text) and len(words(text)) >= max(min_words, 1)


def _list_lines(text: str) -> bool:
    """Exactly three list-item lines ("- x", "* x", "• x", or "1. x"/"1) x" numbered 1, 2, 3 in order),
    one after another, with at most one other line before them ("Here are three:") and at most one
    after them ("I hope this helps!"); blank lines are ignored."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    matches = [_LIST_ITEM.match(line) for line in lines]
    where = [i for i, m in enumerate(matches) if m]
    if len(where) != 3 or where[2] - where[0] != 2 or where[0] > 1 or len(lines) - where[2] - 1 > 1:
        return False
    numbers = [m.group(1) for m in matches if m]
    return all(n is None for n in numbers) or numbers == ["1", "2", "3"]


def _list_commas(text: str) -> bool:
    """One line of three comma-separated items ("a, b, c", "a, b and c", "a, b, or c"), after an optional
    lead-in ending in ":", each item 1–LIST_ITEM_MAX_WORDS words."""
    if len(text.strip().splitlines()) != 1:
        return False
    body = text.strip().rsplit(":", 1)[-1].strip().rstrip(".!")
    parts = [part.strip() for part in body.split(",")]
    last = re.sub(r"^(and|or)\s+", "", parts[-1])
    if last == parts[-1]:  # no serial comma: "b and c" is two items
        last_two = re.split(r"\s+(?:and|or)\s+", last)
        parts[-1:] = last_two[-2:] if len(last_two) > 1 else last_two
    else:
        parts[-1] = last
    return len(parts) == 3 and all(1 <= len(words(part)) <= LIST_ITEM_MAX_WORDS for part in parts)


def _answer_then_stop(text: str, answers: Sequence[str], n: int) -> bool:
    """An accepted answer occurs (whole words, after `normalise`) and at most `n` words follow the
    first occurrence of any accepted answer (the earliest start; the longest answer on a tie)."""
    said = normalise(text).split()
    found = []  # (start, end) of each accepted answer's first occurrence
    for answer in answers:
        wanted = normalise(answer).split()
        starts = [i for i in range(len(said) - len(wanted) + 1) if said[i : i + len(wanted)] == wanted]
        if wanted and starts:
            found.append((starts[0], starts[0] + len(wanted)))
    if not found:
        return False
    _, end = min(found, key=lambda span: (span[0], -span[1]))
    return len(said) - end <= n


def check_rule(rule: Rule | Mapping[str, Any], text: str, *, answers: Sequence[str] = ()) -> bool:
    """True when `text` obeys `rule` (a Rule or its JSON form). What each rule means:

    - one_word: exactly one word (see `words`: punctuation-only tokens are not words, so "Paris." passes
      and "Paris, France" or "New York" fail).
    - list_of_three: three items, either as three consecutive lines starting with -, *, • or 1./2./3.
      (or 1) 2) 3)) with at most one other line before them and one after (blank lines ignored), or as
      one line of three comma-separated items ("red, blue and green"; a lead-in ending in ":" allowed),
      each of 1–4 words.
    - lowercase: at least one letter, and no upper-case letter anywhere.
    - max_words (n): between 1 and n words.
    - answer_then_stop (n): a correct answer (one of `answers`, as whole words) and at most n words after
      its first occurrence, words counted after `metrics.normalise` ("twenty-one" is two); words before it
      are not limited ("The answer is Lima." passes with n=0).
    - min_words (n): the writing check, `wrote_something(text, n)`.
    An empty reply fails every rule.
    """
    checked = Rule.parse(rule)
    if not isinstance(text, str):
        raise InvalidArgument(
            "the text to check must be a string", received=type(text).__name__, fix="pass the reply's text"
        )
    if checked.name == "answer_then_stop" and not any(isinstance(a, str) and normalise(a) for a in answers):
        raise InvalidArgument(
            "the rule answer_then_stop needs the accepted answers",
            received=answers,
            fix="pass answers=instruction.answers",
        )
    if is_empty_reply(text):
        return False
    count = checked.n or 0
    if checked.name == "one_word":
        return len(words(text)) == 1
    if checked.name == "list_of_three":
        return _list_lines(text) or _list_commas(text)
    if checked.name == "lowercase":
        return any(c.isalpha() for c in text) and not any(c.isupper() for c in text)
    if checked.name == "max_words":
        return 1 <= len(words(text)) <= count
    if checked.name == "answer_then_stop":
        return _answer_then_stop(text, answers, count)
    return wrote_something(text, count)


def reply_checks(instruction: Instruction, text: str) -> float:
    """The code checks of one reply, as a score in [0, 1]: 0 for an empty reply, else the share passed of
    [not empty, the accepted answer (factual and format rows with answers, `is_correct`), the format or
    writing rule (`check_rule`), no invented question (factual and format rows: jokes may ask one)].

    What a programmatic judge reads (the judge step's `checks = "instructions"`): where two replies'
    scores differ the checks decide between them, so a reward model learns what they know.
    """
    if is_empty_reply(text):
        return 0.0
    passed = [True]
    if instruction.answers and instruction.kind != "writing":
        passed.append(is_correct(text, instruction.answers))
    if instruction.rule is not None:
        passed.append(check_rule(instruction.rule, text, answers=instruction.answers))
    if instruction.kind != "writing":
        passed.append(not invents_question(text))
    return sum(passed) / len(passed)


class InstructionReward:
    """A verifiable reward (RLVR, Lambert et al. 2024, "Tülu 3"): `reply_checks` of each completion, in [0, 1],
    for prompts that are instructions of `instructions`, looked up by their text.

    A prompt that is none of them is refused, never scored 0: a reward that silently knew nothing of a
    prompt would still train (toward whatever the other rewards say) and look like it worked.
    """

    def __init__(self, instructions: Sequence[Instruction], *, name: str = "instructions") -> None:
        self.by_text = {i.text.strip(): i for i in instructions}
        self.__name__ = name

    def checks(self, prompt: str, completion: str) -> float | None:
        """`reply_checks` of one reply, or None when the prompt is none of the instructions."""
        instruction = self.by_text.get(prompt.strip())
        return None if instruction is None else reply_checks(instruction, completion)

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        scores = []
        for prompt, completion in zip(prompts, completions, strict=True):
            score = self.checks(prompt, completion)
            if score is None:
                raise InvalidArgument(
                    f"the reward {self.__name__} scores replies to its {len(self.by_text)} instructions by "
                    "code checks, and this prompt is none of them",
                    received=prompt[:200],
                    fix="train on those instructions' texts (e.g. the instruct recipe's @sample.prompts), or "
                    "build InstructionReward(read_instructions('yours.jsonl')) and pass it as module:function",
                )
            scores.append(score)
        return scores


def training_instructions_reward(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
    """`InstructionReward` over the packaged "train" split (never "eval": it stays held out); the reward
    `rewards.NAMED_REWARDS` calls `instructions`."""
    return _training_reward()(prompts, completions)


@functools.cache
def _training_reward() -> InstructionReward:
    return InstructionReward(load_instructions("train"))

"""Self-instruct: demonstrations made by the base model itself (few-shot Q:/A: prompting, then filters),
and instruction tuning on them.

Instruction tuning from nothing but a base model, after Self-Instruct (Wang et al., 2023, "Self-Instruct:
Aligning Language Models with Self-Generated Instructions"): show it a few Q:/A: pairs and let it
continue after a fresh "Q:". A base model writes a new question and answers it, then rambles on
into more questions; the first pair is cut out and kept only if it passes filters that a reader would
apply by eye:

- parse: a question line ending in "?", then an "A:" line;
- stop: the answer ended within the budget — right after its line comes a blank line or a new "Q:"
  (the stop sequences of the harvest's generation) or EOS; a base model that never stops teaches the
  adapter nothing about stopping;
- length: the answer has 1 to `max_answer_words` words;
- repetition: no word n-gram of `max_repeat` words or more occurs twice in the answer;
- question: the answer asks nothing (no "?"): answering with a question is the habit to unlearn;
- new: the question is not one of the seeds, not excluded (the held-out questions an evaluation uses,
  compared after normalising case and punctuation), and not a duplicate of one kept already.

`harvest_demonstrations` returns the kept rows in the `{"prompt", "completion"}` shape of the SFT data
(prompt = the bare question: an adapter trained on them answers questions asked without a wrapper)
and the count of rows each filter dropped. `tune_from_base` harvests, then trains an SFT adapter and a
soft prompt on the rows: a pipeline over `train/`, which is why it lives in `recipes/`.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steering.decode import generate
from steering.errors import InvalidArgument
from steering.eval.instructions import WRITING_MIN_WORDS, Demo, Rule, check_rule
from steering.eval.metrics import longest_repeated_ngram, normalise
from steering.eval.questions import builtin_demonstrations
from steering.feedback.constitution import Principle
from steering.feedback.judges import Judge
from steering.models import LanguageModel, load_model
from steering.paths import atomic_write_text
from steering.train import SFTConfig, SoftPromptConfig, TrainResult, train_sft, train_soft_prompt

# The first pair of the continuation: " question?\nA: answer" then a line break.
_PAIR = re.compile(r"^[ \t]*(?P<question>[^\n]+?)[ \t]*\nA:(?P<answer>[^\n]*)")
# Generation stops at a blank line or a new "Q:"; the first pair must end exactly there.
STOPS = ("\n\n", "\nQ:")
REASONS = ("parse", "stop", "length", "repetition", "question", "seen", "excluded", "duplicate")


@dataclass
class Harvest:
    """Kept rows ({"prompt", "completion"}), drop counts per filter, and what was drawn."""

    rows: list[dict[str, str]]
    dropped: Counter[str] = field(default_factory=Counter)
    drawn: int = 0
    model_calls: int = 0


def harvest_demonstrations(
    model: LanguageModel,
    seeds: Sequence[tuple[str, str]],
    *,
    n: int,
    exclude: Iterable[str] = (),
    shots: int = 3,
    max_new_tokens: int = 48,
    max_answer_words: int = 12,
    max_repeat: int = 3,
    max_rounds: int = 8,
    seed: int = 0,
    batch_size: int = 8,
) -> Harvest:
    """Sample Q:/A: pairs from the base model until `n` pass the filters (or `max_rounds` rounds pass).

    Args:
        model: the base model.
        seeds: (question, answer) demonstrations; each prompt shows `shots` of them, a different
            random choice and order per prompt so that the continuations differ.
        n: rows wanted.
        exclude: questions never to keep (the evaluation's held-out set).
        seed: same seed, same rows.

    Returns:
        `Harvest` with at most `n` rows.
    """
    if n < 1:
        raise InvalidArgument("n must be ≥ 1", received=n, fix="ask for at least one demonstration")
    if len(seeds) < shots or shots < 1:
        raise InvalidArgument(
            f"harvesting needs at least shots={shots} seed demonstrations (and shots ≥ 1)",
            received=f"{len(seeds)} seeds",
            fix="pass more (question, answer) pairs or lower shots",
        )
    blocked = {normalise(q) for q in exclude}
    seen = {normalise(q) for q, _ in seeds}
    kept: dict[str, dict[str, str]] = {}
    harvest = Harvest(rows=[])
    rng = random.Random(seed)
    for round_index in range(max_rounds):
        want = max(batch_size, 2 * (n - len(kept)))
        prompts = [harvest_prompt(rng.sample(list(seeds), shots)) for _ in range(want)]
        samples = generate(
            model,
            prompts,
            max_new_tokens=max_new_tokens,
            stop=STOPS,
            seed=seed + round_index,
            batch_size=batch_size,
        )
        for sample in samples:
            harvest.drawn += 1
            harvest.model_calls += len(sample.token_ids)
            row, reason = judge_continuation(
                sample.text, sample.stop_reason, max_words=max_answer_words, max_repeat=max_repeat
            )
            if row is not None:
                key = normalise(row["prompt"])
                reason = "seen" if key in seen else "excluded" if key in blocked else None
                reason = reason or ("duplicate" if key in kept else None)
                if reason is None and len(kept) < n:
                    kept[key] = row
            if reason is not None:
                harvest.dropped[reason] += 1
        if len(kept) >= n:
            break
    harvest.rows = list(kept.values())
    return harvest


def harvest_prompt(shown: Sequence[tuple[str, str]]) -> str:
    """The few-shot block, then an open "Q:" for the model to write a question of its own."""
    return "".join(f"Q: {question}\nA: {answer}\n\n" for question, answer in shown) + "Q:"


def judge_continuation(
    text: str, stop_reason: str, *, max_words: int, max_repeat: int
) -> tuple[dict[str, str] | None, str | None]:
    """The first Q/A pair of a continuation, or the filter that drops it."""
    match = _PAIR.match(text)
    if match is None or not match.group("question").endswith("?") or "A:" in match.group("question"):
        return None, "parse"
    answer = match.group("answer").strip()
    # A stop sequence (or EOS) right after the answer line: it ended there. Anything else — more
    # lines of the same answer, or the budget running out — is a model that did not stop.
    if text[match.end() :] != "" or stop_reason not in ("stop", "eos"):
        return None, "stop"
    words = normalise(answer).split()
    if not 1 <= len(words) <= max_words:
        return None, "length"
    if longest_repeated_ngram(answer) >= max_repeat:
        return None, "repetition"
    if "?" in answer:  # an answer that asks: the habit instruction tuning should remove
        return None, "question"
    return {"prompt": match.group("question").strip(), "completion": " " + answer}, None


@dataclass
class SelfTuned:
    """What `tune_from_base` made: the harvest, its data file, and the SFT and soft-prompt runs."""

    harvest: Harvest
    data: Path
    sft: TrainResult
    soft_prompt: TrainResult


def tune_from_base(
    model: LanguageModel,
    *,
    out_dir: str | Path,
    demonstrations: int = 128,
    seeds: Sequence[tuple[str, str]] | None = None,
    exclude: Iterable[str] = (),
    epochs: int = 2,
    soft_prompt_length: int = 16,
    seed: int = 0,
    train_model: LanguageModel | None = None,
    batch_size: int = 8,
) -> SelfTuned:
    """Instruction tuning from nothing but the base model: harvest, then an SFT adapter and a soft prompt.

    Args:
        model: the base model that writes the demonstrations (any dtype).
        out_dir: gets `self-instruct.jsonl`, `sft/` and `soft-prompt/` (run directories).
        demonstrations: rows to harvest (fewer if the filters leave fewer in `max_rounds`).
        seeds: the few-shot pairs (default: the project's four demonstrations).
        exclude: questions never to train on (the evaluation's held-out set).
        train_model: the same base in float32 for training (loaded when None).
        batch_size: rows decoded together while harvesting.

    Returns:
        `SelfTuned`; load the results with `Adapter(tuned.sft.adapter)` and
        `SoftPrompt.load(tuned.soft_prompt.adapter)`.
    """
    out = Path(out_dir)
    harvest = harvest_demonstrations(
        model,
        seeds or builtin_demonstrations(),
        n=demonstrations,
        exclude=exclude,
        seed=seed,
        batch_size=batch_size,
    )
    if len(harvest.rows) < 8:
        raise InvalidArgument(
            f"the base model's continuations left only {len(harvest.rows)} demonstrations after the filters",
            received=dict(harvest.dropped),
            fix="raise max_rounds, or give seeds closer to what the model writes",
        )
    data = out / "self-instruct.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(data, "".join(json.dumps(row) + "\n" for row in harvest.rows))
    train_model = train_model or load_model(model.name, dtype="float32")
    common: dict[str, Any] = {
        "data": str(data),
        "model": model.name,
        "epochs": epochs,
        "max_length": 64,
        "seed": seed,
    }
    common |= {"warmup_steps": 4, "eval_fraction": 0.1, "eval_every": 8, "save_every": 1000}
    sft = train_sft(SFTConfig(out=str(out / "sft"), **common), model=train_model)
    soft = train_soft_prompt(
        SoftPromptConfig(out=str(out / "soft-prompt"), length=soft_prompt_length, **common), model=train_model
    )
    return SelfTuned(harvest, data, sft, soft)


# --- instructions of every kind (the instruct recipe's harvest) ----------------------------------------

END = "###"  # the end of a demonstration in the few-shot block (a response may span lines)
INSTRUCTION_REASONS = (
    "parse",
    "stop",
    "length",
    "repetition",
    "question",
    "rule",
    "judge",
    "seen",
    "duplicate",
)
_INSTRUCTION_PAIR = re.compile(
    r"^[ \t]*(?P<instruction>[^\n]+?)[ \t]*\nResponse:[ \t]*(?P<response>.*)$", re.S
)
_WORD_COUNT = re.compile(r"\b(\d+)\s+words\b")
MAX_WORDS = {"factual": 16, "format": 40, "writing": 150}


def instruction_prompt(shown: Sequence[Demo]) -> str:
    """Demonstrations of one task, each ended by "###", then an open "Instruction:" for a new one."""
    blocks = [f"Instruction: {d.instruction.text}\nResponse: {d.response}\n{END}\n" for d in shown]
    return "".join(blocks) + "Instruction:"


def harvest_rule(demo: Demo, instruction: str) -> Rule | None:
    """The code check a new instruction of the demo's task can get without knowing its answers."""
    task, kind = demo.instruction.task, demo.instruction.kind
    if task in ("one_word", "list_of_three", "lowercase"):
        return Rule(task)
    if task == "max_words":
        count = _WORD_COUNT.search(instruction)
        return Rule("max_words", int(count.group(1))) if count else None
    if kind == "writing":
        return Rule("min_words", WRITING_MIN_WORDS.get(task, 8))
    return None


@dataclass
class InstructionHarvest:
    """Kept rows ({"prompt", "completion", "task", "kind", "judge"}), drops per task and filter."""

    rows: list[dict[str, Any]]
    dropped: dict[str, Counter[str]] = field(default_factory=dict)
    drawn: int = 0


@dataclass
class TaskHarvest:
    """One task's harvest: kept rows, drops per filter, continuations drawn."""

    task: str
    rows: list[dict[str, Any]]
    dropped: Counter[str]
    drawn: int


# A short answer or a format reply needs fewer tokens than a writing task: their budget is capped so
# that a harvest does not decode 96 tokens for "Paris." (a continuation still has to end with "###").
KIND_TOKENS = {"factual": 32, "format": 48}


def harvest_instructions(
    model: LanguageModel,
    demos: Sequence[Demo],
    *,
    per_task: int,
    exclude: Iterable[str] = (),
    judge: Judge | None = None,
    principle: Principle | None = None,
    keep_fraction: float = 0.5,
    shots: int = 3,
    max_new_tokens: int = 96,
    max_repeat: int = 4,
    rounds: int = 4,
    seed: int = 0,
    batch_size: int = 8,
    done: Mapping[str, TaskHarvest] | None = None,
    on_task: Callable[[TaskHarvest], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> InstructionHarvest:
    """New instructions and responses of every task, written by the base from few-shot demonstrations.

    Per task (`demos` grouped by `instruction.task`), prompts show `shots` demonstrations of that task and
    open a new "Instruction:"; the continuation's first instruction/response pair is kept when it ended
    with "###" (the model stopped), has 1 to MAX_WORDS[kind] words without a repeated `max_repeat`-gram,
    asks nothing back (factual), passes the code rule its task allows (`harvest_rule`: one word, three
    items, lowercase, "N words", the writing minimum), is new (not a demonstration, not in `exclude`,
    not kept already); with a `judge`, the best-rated `keep_fraction` of those under `principle` are kept
    (`harvest_task`: the judge ranks).
    Writing tasks are harvested like the others: an adapter taught only short answers learns to say
    nothing to a writing request.

    Each task draws from its own seeded generator, so a harvest stopped part way continues: pass the
    tasks finished before as `done` (`on_task` is called as each task finishes, to save it).

    Returns:
        `InstructionHarvest` with at most `per_task` rows per task.
    """
    if per_task < 1:
        raise InvalidArgument(
            "per_task must be ≥ 1", received=per_task, fix="ask for at least one row per task"
        )
    if not 0.0 < keep_fraction <= 1.0:
        raise InvalidArgument(
            "keep_fraction must be in (0, 1]",
            received=keep_fraction,
            fix="keep e.g. the judge's best half: 0.5",
        )
    tasks: dict[str, list[Demo]] = {}
    for demo in demos:
        tasks.setdefault(demo.instruction.task, []).append(demo)
    short = {task: len(shown) for task, shown in tasks.items() if len(shown) < shots}
    if short:
        raise InvalidArgument(
            f"harvesting needs at least shots={shots} demonstrations per task",
            received=short,
            fix="add demonstrations of those tasks or lower shots",
        )
    blocked = {normalise(text) for text in exclude} | {normalise(demo.instruction.text) for demo in demos}
    harvest = InstructionHarvest(rows=[])
    for index, (task, shown) in enumerate(tasks.items()):
        if progress is not None:
            progress(index, len(tasks))
        result = (done or {}).get(task)
        if result is None:
            result = harvest_task(
                model, shown, per_task=per_task, blocked=blocked, judge=judge, principle=principle,
                keep_fraction=keep_fraction, shots=shots, max_new_tokens=min(max_new_tokens, KIND_TOKENS.get(
                    shown[0].instruction.kind, max_new_tokens)), max_repeat=max_repeat, rounds=rounds,
                seed=seed, batch_size=batch_size,
            )  # fmt: skip
            if on_task is not None:
                on_task(result)
        harvest.rows.extend(result.rows)
        harvest.dropped[task] = result.dropped
        harvest.drawn += result.drawn
    if progress is not None:
        progress(len(tasks), len(tasks))
    return harvest


def harvest_task(
    model: LanguageModel,
    shown: Sequence[Demo],
    *,
    per_task: int,
    blocked: set[str],
    judge: Judge | None,
    principle: Principle | None,
    keep_fraction: float,
    shots: int,
    max_new_tokens: int,
    max_repeat: int,
    rounds: int,
    seed: int,
    batch_size: int,
) -> TaskHarvest:
    """One task's rounds: draw until enough candidates pass the code filters, then keep the judge's best.

    The judge ranks, it does not grade: a small judge's 1–7 ratings sit low and close together (a
    fixed threshold such as 4 kept nothing from smollm2-135m), but their order still separates
    better from worse. So rounds draw until `per_task / keep_fraction` candidates passed the code
    filters (or `rounds` are spent), and the best-rated `keep_fraction` of them, at most `per_task`,
    are kept.
    """
    task = shown[0].instruction.task
    rng = random.Random(f"{seed}:{task}")
    result = TaskHarvest(task, [], Counter(), 0)
    pool: dict[str, dict[str, Any]] = {}
    wanted = math.ceil(per_task / keep_fraction) if judge is not None else per_task
    for _ in range(rounds):
        want = max(batch_size, math.ceil(1.5 * (wanted - len(pool))))
        chosen = [rng.sample(list(shown), shots) for _ in range(want)]
        samples = generate(
            model, [instruction_prompt(c) for c in chosen], max_new_tokens=max_new_tokens,
            stop=(END,), seed=rng.randrange(2**31), batch_size=batch_size,
        )  # fmt: skip
        for demo_set, sample in zip(chosen, samples, strict=True):
            result.drawn += 1
            row, reason = check_instruction(sample.text, sample.stop_reason, demo_set[0], max_repeat)
            if row is not None:
                key = normalise(row["prompt"])
                reason = "seen" if key in blocked else "duplicate" if key in pool else None
                if reason is None:
                    pool[key] = row
            if reason is not None:
                result.dropped[reason] += 1
        if len(pool) >= wanted:
            break
    result.rows = best_rated(list(pool.values()), judge, principle, per_task, keep_fraction, result.dropped)
    return result


def best_rated(
    rows: list[dict[str, Any]],
    judge: Judge | None,
    principle: Principle | None,
    per_task: int,
    keep_fraction: float,
    dropped: Counter[str],
) -> list[dict[str, Any]]:
    """The judge's best-rated `keep_fraction` of the rows, at most `per_task` (each keeps its rating)."""
    if judge is None or principle is None or not rows:
        dropped["surplus"] += max(0, len(rows) - per_task)
        return rows[:per_task]
    ratings = judge.rate([r["prompt"] for r in rows], [r["completion"].strip() for r in rows], principle)
    for row, rating in zip(rows, ratings, strict=True):
        row["judge"] = round(rating.value, 3)
    ranked = sorted(rows, key=lambda r: -r["judge"])
    keep = min(per_task, math.ceil(keep_fraction * len(ranked)))
    dropped["judge"] += len(ranked) - keep
    return ranked[:keep]


def check_instruction(
    text: str, stop_reason: str, demo: Demo, max_repeat: int
) -> tuple[dict[str, Any] | None, str | None]:
    """The first instruction/response of a continuation as a row, or the filter that drops it."""
    match = _INSTRUCTION_PAIR.match(text)
    if match is None or "Instruction:" in match.group("response"):
        return None, "parse"
    if stop_reason != "stop":  # "###" ends a demonstration; EOS or the budget is not the same stop
        return None, "stop"
    instruction, response = match.group("instruction").strip(), match.group("response").strip()
    kind = demo.instruction.kind
    count = len(response.split())
    if not instruction or not 1 <= count <= MAX_WORDS[kind]:
        return None, "length"
    if longest_repeated_ngram(response) >= max_repeat:
        return None, "repetition"
    if kind == "factual" and "?" in response:
        return None, "question"
    rule = harvest_rule(demo, instruction)
    if rule is not None and not check_rule(rule, response):
        return None, "rule"
    row = {"prompt": instruction, "completion": " " + response, "kind": kind, "task": demo.instruction.task}
    return row, None

"""Demonstrations harvested from the base model: the filters, and a real harvest on gemma-270m."""

from __future__ import annotations

import pytest

from steering.errors import InvalidArgument
from steering.eval.metrics import normalise
from steering.eval.questions import builtin_demonstrations, builtin_questions
from steering.recipes.self_instruct import harvest_demonstrations, harvest_prompt, judge_continuation

SEEDS = builtin_demonstrations()


@pytest.mark.parametrize(
    ("text", "stop", "row", "reason"),
    [
        (" What is the capital of Peru?\nA: Lima.", "stop", ("What is the capital of Peru?", " Lima."), None),
        (" How many legs has a cat?\nA: Four.", "eos", ("How many legs has a cat?", " Four."), None),
        (" What is 2 plus 3?\nA: 5.", "length", None, "stop"),  # the budget ran out: no stop seen
        (" What is 2 plus 3?\nA: 5. And then we went on\nto say", "stop", None, "stop"),  # a second line
        (" Tell me a story\nA: Once.", "stop", None, "parse"),  # not a question
        ("The end of the quiz.", "stop", None, "parse"),
        (" Who?\nA:", "stop", None, "length"),  # no answer
        (" Who?\nA: the cat the cat the cat sat", "stop", None, "repetition"),
        (" What color is a pear?\nA: What color is a lemon?", "stop", None, "question"),
    ],
)
def test_judge_keeps_a_stopped_answer_and_names_the_filter_otherwise(text, stop, row, reason):
    kept, why = judge_continuation(text, stop, max_words=12, max_repeat=3)
    assert why == reason
    assert (kept["prompt"], kept["completion"]) == row if row else kept is None


def test_prompt_ends_with_an_open_question():
    prompt = harvest_prompt(SEEDS[:2])
    assert prompt.startswith(f"Q: {SEEDS[0][0]}\nA: {SEEDS[0][1]}\n\n") and prompt.endswith("\n\nQ:")


def test_bad_arguments_are_named(tiny):
    with pytest.raises(InvalidArgument, match="N must be ≥ 1"):
        harvest_demonstrations(tiny, SEEDS, n=0)
    with pytest.raises(InvalidArgument, match="at least shots=5"):
        harvest_demonstrations(tiny, SEEDS, n=2, shots=5)


def test_random_model_gives_nothing_and_says_why(tiny):
    harvest = harvest_demonstrations(tiny, SEEDS, n=4, max_rounds=2, max_new_tokens=8)
    assert harvest.rows == [] and harvest.drawn == 16  # two rounds of 8 prompts
    assert sum(harvest.dropped.values()) == 16 and harvest.dropped["parse"] > 0


def test_gemma_writes_its_own_demonstrations(gemma):
    held_out = [q.question for q in builtin_questions()]
    harvest = harvest_demonstrations(gemma, SEEDS, n=8, exclude=held_out, max_rounds=3, seed=0)
    assert len(harvest.rows) >= 4, harvest.dropped  # about a third survive the filters
    blocked = {normalise(q) for q in held_out} | {normalise(q) for q, _ in SEEDS}
    for row in harvest.rows:
        assert row["prompt"].endswith("?") and normalise(row["prompt"]) not in blocked
        assert row["completion"].startswith(" ") and "\n" not in row["completion"]
    assert len({normalise(r["prompt"]) for r in harvest.rows}) == len(harvest.rows)


# --- instructions of every kind ------------------------------------------------------------------------

from collections import Counter  # noqa: E402

from steering.eval.instructions import instruction_demos  # noqa: E402
from steering.feedback.constitution import Principle  # noqa: E402
from steering.feedback.score_judges import longer_answer_judge  # noqa: E402
from steering.recipes.self_instruct import (  # noqa: E402
    TaskHarvest,
    best_rated,
    check_instruction,
    harvest_instructions,
    instruction_prompt,
)

FOLLOWS = Principle("follows", "The response does what the instruction asks.")


def test_an_instruction_continuation_is_kept_only_when_it_stopped_and_fits_its_task():
    demos = {d.instruction.task: d for d in instruction_demos()}
    text = " Name three fruits as a list.\nResponse: - apple\n- pear\n- plum\n"
    row, reason = check_instruction(text, "stop", demos["list_of_three"], 4)
    assert reason is None and row == {
        "prompt": "Name three fruits as a list.", "completion": " - apple\n- pear\n- plum",
        "kind": "format", "task": "list_of_three",
    }  # fmt: skip
    assert check_instruction(text, "length", demos["list_of_three"], 4) == (None, "stop")
    assert (
        check_instruction(" Name two fruits.\nResponse: apple, pear\n", "stop", demos["list_of_three"], 4)[1]
        == "rule"
    )
    assert check_instruction(" no response line here", "stop", demos["one_word"], 4)[1] == "parse"
    assert instruction_prompt([demos["email"]]).endswith("###\nInstruction:")


def test_the_judge_ranks_and_keeps_its_best_share():
    rows = [{"prompt": "Write.", "completion": " " + "word " * n} for n in (1, 5, 3, 9)]
    dropped: Counter[str] = Counter()
    kept = best_rated(rows, longer_answer_judge(), FOLLOWS, per_task=16, keep_fraction=0.5, dropped=dropped)
    assert [len(r["completion"].split()) for r in kept] == [9, 5] and dropped["judge"] == 2
    assert all("judge" in r for r in kept)


def test_finished_tasks_are_not_harvested_again(tiny):
    demos = [d for d in instruction_demos() if d.instruction.task in ("one_word", "lowercase")]
    saved = TaskHarvest(
        "one_word", [{"prompt": "Colour of snow?", "completion": " White."}], Counter(parse=3), 4
    )
    finished: list[str] = []
    harvest = harvest_instructions(
        tiny, demos, per_task=2, done={"one_word": saved}, on_task=lambda t: finished.append(t.task),
        rounds=1, max_new_tokens=4, batch_size=4,
    )  # fmt: skip
    assert finished == ["lowercase"]  # only the task not done ran (and was handed over to be saved)
    assert harvest.rows[0] == saved.rows[0] and harvest.dropped["one_word"] == Counter(parse=3)
    assert harvest.drawn == 4 + 4  # the saved task's draws and one round of the other's
    with pytest.raises(InvalidArgument, match="keep_fraction"):
        harvest_instructions(tiny, demos, per_task=2, keep_fraction=0.0)

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

"""The instruction sets of the instruct recipe and their code checks: each rule on replies that pass and
replies that fail, the sets' sizes and disjointness, the demonstrations passing their own checks, scoring
on hand-written replies with numbers worked out by hand, and the errors bad input gets."""

from __future__ import annotations

import json
import re
from collections import Counter
from itertools import combinations

import pytest

from steering.decode import generate
from steering.errors import InputFormatError, InvalidArgument
from steering.eval import builtin_demonstrations, builtin_questions, is_correct, normalise
from steering.eval.instruction_scores import SCORE_COLUMNS, score_instructions, score_samples
from steering.eval.instructions import (
    KINDS,
    TASKS,
    Instruction,
    InstructionReward,
    Rule,
    check_rule,
    instruction_demos,
    is_empty_reply,
    load_instructions,
    read_instructions,
    reply_checks,
    words,
    wrote_something,
)
from steering.rewards import load_reward

# --- the rules, one by one ------------------------------------------------------------------------------

PASSES = {
    "one_word": ["Paris", "Paris.", "  dog!\n", "twenty-one", "H2O", "— Yes —"],
    "list_of_three": [
        "- red\n- blue\n- green",
        "1. red\n2. blue\n3. green",
        "1) cat\n2) dog\n3) cow",
        "Here are three colours:\n* red\n\n* blue\n• green",
        "red, blue and green",
        "red, blue, and green.",
        "Three colours: red, orange or yellow",
        "salt and pepper, bread, cheese",
        "Sure! Here they are:\n\n1. **Red**\n2. **Orange**\n3. **Yellow**\n\nAll three are in every rainbow.",
    ],
    "lowercase": ["paris", "the sky is blue.", "i think it's 42.", "été"],
}
FAILS = {
    "one_word": ["Paris, France", "New York", "", "...", "The dog.", "dog\ncat"],
    "list_of_three": [
        "- red\n- blue",
        "- a\n- b\n- c\n- d",
        "1. red\n3. blue\n2. green",
        "- red\n- blue\n- green\nI hope this helps!\nBye.",
        "- red\n- blue\nand also\n- green",
        "First line.\nSecond line.\n- a\n- b\n- c",
        "red and blue",
        "red, blue, green, yellow",
        "I like to paint the sky in the morning, walk the dog, and read",
        "red,\nblue,\ngreen",
        "",
        "-\n-\n-",
    ],
    "lowercase": ["Paris", "the sky is Blue", "42", "", "Été", "...?"],
}


@pytest.mark.parametrize(("rule", "text"), [(r, t) for r, texts in PASSES.items() for t in texts])
def test_rules_without_a_count_pass(rule: str, text: str) -> None:
    assert check_rule({"rule": rule}, text)


@pytest.mark.parametrize(("rule", "text"), [(r, t) for r, texts in FAILS.items() for t in texts])
def test_rules_without_a_count_fail(rule: str, text: str) -> None:
    assert not check_rule({"rule": rule}, text)


@pytest.mark.parametrize(
    ("n", "text", "expected"),
    [
        (5, "One two three four five.", True),
        (5, "Hi", True),
        (5, "One, two, three — four five!", True),  # the dash is not a word
        (5, "one two three four five six", False),
        (5, "", False),
        (5, "— ...", False),
        (0, "word", False),
    ],
)
def test_max_words(n: int, text: str, expected: bool) -> None:
    assert check_rule(Rule("max_words", n), text) is expected


@pytest.mark.parametrize(
    ("answers", "n", "text", "expected"),
    [
        (["Lima"], 3, "Lima.", True),
        (["Lima"], 0, "The answer is Lima.", True),  # words before the answer are not limited
        (["Lima"], 3, "Lima is the capital.", True),  # exactly three words after
        (["Lima"], 3, "Lima is the capital of Peru.", False),
        (["Lima"], 3, "Cusco.", False),
        (["Lima"], 3, "", False),
        (["Lima"], 3, "Lima.\nQ: What is the capital of Chile?", False),
        (["2", "two"], 0, "Two.", True),
        (["2", "two"], 0, "2 wheels", False),
        (["Rowling", "J. K. Rowling"], 0, "J.K. Rowling", True),
        (["Rowling", "J. K. Rowling"], 1, "Rowling wrote them.", False),  # two words after
    ],
)
def test_answer_then_stop(answers: list[str], n: int, text: str, expected: bool) -> None:
    assert check_rule({"rule": "answer_then_stop", "n": n}, text, answers=answers) is expected


def test_min_words_and_wrote_something_agree() -> None:
    assert check_rule({"rule": "min_words", "n": 4}, "This is a sentence.")
    assert wrote_something("This is a sentence.", 4)
    assert not check_rule({"rule": "min_words", "n": 4}, "Too short.")
    assert not wrote_something("Too short.", 4)
    assert not wrote_something("", 0)  # an empty reply never counts as writing, whatever the minimum
    assert wrote_something("Hello.", 0)


def test_empty_replies_and_words() -> None:
    assert all(is_empty_reply(t) for t in ["", "   \n", "...", "?!", " — ", "\n\n* *"])
    assert not any(is_empty_reply(t) for t in ["a", "42", "ok.", "日本", " x "])
    assert words("Hello, world — it's twenty-one!") == ["Hello,", "world", "it's", "twenty-one!"]


# --- the sets -----------------------------------------------------------------------------------------


def _counts(instructions: list[Instruction]) -> tuple[Counter[str], Counter[str]]:
    return Counter(i.kind for i in instructions), Counter(i.task for i in instructions)


def test_eval_set_sizes() -> None:
    kinds, tasks = _counts(load_instructions("eval"))
    assert kinds["factual"] >= 24 and kinds["format"] >= 20 and kinds["writing"] >= 15
    assert all(tasks[t] >= 4 for t in TASKS["format"])
    assert all(tasks[t] >= 3 for t in TASKS["writing"])


def test_train_set_covers_every_task() -> None:
    train = load_instructions("train")
    assert len(train) >= 72
    _, tasks = _counts(train)
    assert all(tasks[t] >= 3 for kind in KINDS for t in TASKS[kind])


def test_demos_cover_every_task() -> None:
    tasks = Counter(d.instruction.task for d in instruction_demos())
    assert all(tasks[t] >= 4 for kind in KINDS for t in TASKS[kind])


def test_rows_fit_their_kind() -> None:
    rows = (
        load_instructions("train") + load_instructions("eval") + [d.instruction for d in instruction_demos()]
    )
    for row in rows:
        assert row.task in TASKS[row.kind]
        if row.kind == "factual":
            assert row.answers and row.rule is None
        elif row.kind == "format":
            assert row.rule is not None and row.rule.name == row.task
        else:
            assert row.rule is not None and row.rule.name == "min_words"
        if row.task == "answer_then_stop":
            assert row.answers
        # asked bare, as a user would: no "Q:"/"A:" wrapper
        assert not re.match(r"\s*(Q|Question|A|Answer)\s*:", row.text), row.text
        assert not row.text.rstrip().endswith(("A:", "Answer:")), row.text
        if row.task in ("summary", "rewrite"):  # the paragraph or sentence to work on is in the text
            quoted = words(row.text.split(":", 1)[1])
            assert len(quoted) >= (25 if row.task == "summary" else 3), row.text


def _texts(rows: list[Instruction]) -> set[str]:
    return {normalise(r.text) for r in rows}


def test_sets_are_disjoint() -> None:
    sets = {
        "train": load_instructions("train"),
        "eval": load_instructions("eval"),
        "demos": [d.instruction for d in instruction_demos()],
    }
    for name, rows in sets.items():
        assert len(_texts(rows)) == len(rows), f"{name} repeats an instruction"
    for (a, rows_a), (b, rows_b) in combinations(sets.items(), 2):
        assert not _texts(rows_a) & _texts(rows_b), f"{a} and {b} share an instruction"
    older = {normalise(q.question) for q in builtin_questions()} | {
        normalise(p) for p, _ in builtin_demonstrations()
    }
    assert not (_texts(sets["train"]) | _texts(sets["demos"])) & older


def test_no_eval_factual_answer_is_taught() -> None:
    """No eval factual answer is an answer of, or appears (whole words) in, a train or demo row."""
    seen = load_instructions("train") + [d.instruction for d in instruction_demos()]
    taught_answers = {normalise(a) for row in seen for a in row.answers}
    taught_text = (
        " ".join(normalise(r.text) for r in seen)
        + " "
        + " ".join(normalise(d.response) for d in instruction_demos())
    )
    for row in load_instructions("eval"):
        if row.kind != "factual":
            continue
        for answer in row.answers:
            assert normalise(answer) not in taught_answers, (row.text, answer)
            assert f" {normalise(answer)} " not in f" {taught_text} ", (row.text, answer)


def test_demonstrations_pass_their_own_checks() -> None:
    for demo in instruction_demos():
        row, reply = demo.instruction, demo.response
        assert not is_empty_reply(reply)
        if row.answers:
            assert is_correct(reply, row.answers), (row.text, reply)
        if row.rule is not None:
            assert check_rule(row.rule, reply, answers=row.answers), (row.text, reply)
        if row.kind != "writing":
            assert len(words(reply)) <= 12, reply  # short: the student model has 270M parameters
        else:
            unnumbered = re.sub(r"(?m)^\s*\d+[.)]\s+", "", reply)  # "1. Why …" is not a sentence "1."
            sentences = [s for s in re.split(r"(?<=[.!?])\s+", unnumbered) if words(s)]
            assert (1 if row.task == "rewrite" else 2) <= len(sentences) <= 5 + (row.task == "email"), reply
            assert len(words(reply)) <= 60, reply


# --- scoring ------------------------------------------------------------------------------------------

IRELAND = Instruction("factual", "short_answer", "What is the capital of Ireland?", ("Dublin",))
BARKS = Instruction(
    "format", "one_word", "Answer in one word: what animal barks?", ("dog",), Rule("one_word")
)
TEACHER = Instruction(
    "format", "max_words", "In five words or fewer, what does a teacher do?", (), Rule("max_words", 5)
)
JOKES = Instruction("writing", "two_jokes", "Tell me two jokes about cats.", (), Rule("min_words", 10))
JOKE = "Why did the cat sit on the computer? To keep an eye on the mouse!"


def _scores():
    return score_instructions(
        [IRELAND, BARKS, TEACHER, JOKES],
        [
            ["Dublin.", "The capital is Cork. What else?"],
            "Dog.",
            ["A teacher helps students learn new things."],
            ["", JOKE],
        ],
        [["eos", "length"], "eos", ["stop"], ["eos", "eos"]],
    )


def test_scores_overall() -> None:
    overall = _scores().overall
    assert (overall.instructions, overall.samples) == (4, 6)
    assert overall.empty_rate == pytest.approx(1 / 6)
    assert overall.accuracy == pytest.approx(2 / 3)  # Dublin yes, Cork no, Dog yes
    assert overall.format_compliance == pytest.approx(1 / 2)  # "Dog." one word; seven words > 5
    assert overall.wrote_rate == pytest.approx(1 / 2)  # the empty reply did not write; the joke did
    assert overall.stop_rate == pytest.approx(5 / 6)  # one "length"
    assert overall.new_question_rate == pytest.approx(2 / 6)  # "What else?" and the joke's "?"
    # distinct-2 over replies of ≥ 2 words: Cork reply 1, teacher 1, joke 13/14 ("on the" twice)
    assert overall.distinct_2 == pytest.approx((1 + 1 + 13 / 14) / 3)
    assert overall.mean_words == pytest.approx((1 + 6 + 1 + 7 + 0 + 15) / 6)


def test_scores_per_kind_and_task() -> None:
    scores = _scores()
    assert list(scores.by_kind) == ["factual", "format", "writing"]
    assert list(scores.by_task) == ["short_answer", "one_word", "max_words", "two_jokes"]
    factual, form, writing = scores.by_kind.values()
    assert (factual.accuracy, factual.stop_rate, factual.new_question_rate) == (0.5, 0.5, 0.5)
    assert factual.format_compliance is None and factual.wrote_rate is None
    assert (form.accuracy, form.format_compliance, form.empty_rate, form.instructions) == (1.0, 0.5, 0.0, 2)
    assert (writing.empty_rate, writing.wrote_rate, writing.accuracy) == (0.5, 0.5, None)
    assert scores.by_task["max_words"].format_compliance == 0.0
    assert scores.by_task["one_word"].distinct_2 is None  # one word has no bigram


def test_scores_as_rows_and_dict() -> None:
    scores = _scores()
    rows = scores.as_rows()
    assert [r[0] for r in rows] == ["factual", "format", "writing", "all"]
    assert all(len(r) == len(SCORE_COLUMNS) for r in rows + scores.as_rows(by="task"))
    assert rows[-1][SCORE_COLUMNS.index("accuracy")] == pytest.approx(2 / 3)
    data = json.loads(json.dumps(scores.as_dict()))
    assert data["by_kind"]["writing"]["wrote_rate"] == 0.5
    assert data["by_task"]["max_words"]["format_compliance"] == 0.0
    assert data["overall"]["samples"] == 6


def test_perfect_replies_score_perfectly() -> None:
    """The demonstrations, scored as replies to themselves, comply and are correct everywhere."""
    demos = instruction_demos()
    scores = score_instructions(
        [d.instruction for d in demos], [d.response for d in demos], ["eos"] * len(demos)
    )
    overall = scores.overall
    assert (overall.empty_rate, overall.accuracy, overall.format_compliance, overall.wrote_rate) == (
        0,
        1,
        1,
        1,
    )


def test_reply_checks_score_the_share_of_checks_passed() -> None:
    capital = Instruction("factual", "short_answer", "What is the capital of Peru?", ("Lima",))
    assert reply_checks(capital, "Lima.") == 1.0
    assert reply_checks(capital, "  ...") == 0.0  # empty: nothing else counts
    assert reply_checks(capital, "Quito.") == pytest.approx(2 / 3)  # wrong answer, no question
    assert reply_checks(capital, "Quito. What is yours?") == pytest.approx(1 / 3)
    lower = Instruction("format", "lowercase", "Name a fruit in lowercase.", (), Rule("lowercase"))
    assert reply_checks(lower, "apple") == 1.0 and reply_checks(lower, "Apple") == pytest.approx(2 / 3)
    poem = Instruction(
        "writing", "few_sentences", "Write two sentences about rain.", (), Rule("min_words", 8)
    )
    assert reply_checks(poem, "Rain falls softly on the roof. Is it spring yet?") == 1.0  # writing may ask
    assert reply_checks(poem, "Rain.") == 0.5
    # The demonstrations pass every check of their own instruction.
    assert all(reply_checks(d.instruction, d.response) == 1.0 for d in instruction_demos())


def test_the_instructions_reward_is_the_code_checks_of_the_training_set() -> None:
    """`reward = "instructions"` (RLVR): reply_checks of the packaged training instructions; a prompt of the
    held-out set, or any other text, is refused rather than scored."""
    reward = load_reward("instructions")
    train = load_instructions("train")
    lower = next(i for i in train if i.task == "lowercase" and not i.answers)
    replies = ["the sea is wide and grey.", "The Sea Is Wide And Grey.", " "]
    scores = reward([lower.text] * 3, replies)
    assert scores == [reply_checks(lower, r) for r in replies]
    assert scores[0] == 1.0 and 0 < scores[1] < 1 and scores[2] == 0.0
    held_out = load_instructions("eval")[0].text
    with pytest.raises(InvalidArgument, match=r"(?i)this prompt is none of them"):
        reward([held_out], ["Lima."])
    own = InstructionReward(
        [Instruction("factual", "short_answer", "What is the capital of Peru?", ("Lima",))]
    )
    assert own(["What is the capital of Peru? "], ["Lima."]) == [1.0]


def test_score_samples_groups_by_prompt(tiny) -> None:
    """Samples from `generate` (K per instruction) score the same as the texts grouped by hand."""
    chosen = [IRELAND, BARKS, JOKES]
    samples = generate(tiny, [i.text for i in chosen], n=3, max_new_tokens=6, seed=1)
    texts = [[s.text for s in samples if s.prompt_index == j] for j in range(3)]
    stops = [[s.stop_reason for s in samples if s.prompt_index == j] for j in range(3)]
    scores = score_samples(chosen, samples)
    assert scores.overall.samples == 9 and scores.by_kind["writing"].samples == 3
    assert scores.as_dict() == score_instructions(chosen, texts, stops).as_dict()
    with pytest.raises(InvalidArgument) as error:
        score_samples(chosen[:2], samples)
    assert "there are 2 instructions" in _explains(error)


# --- bad input ----------------------------------------------------------------------------------------


def _explains(error: pytest.ExceptionInfo[Exception]) -> str:
    assert "Received:" in str(error.value) and "To fix:" in str(error.value), str(error.value)
    return str(error.value)


def test_bad_rules_are_explained() -> None:
    with pytest.raises(InvalidArgument) as error:
        check_rule({"rule": "max_word", "n": 3}, "x")
    assert 'Did you mean "max_words"' in _explains(error)
    with pytest.raises(InvalidArgument) as error:
        check_rule({"rule": "max_words"}, "x")
    assert "needs a count n" in _explains(error)
    with pytest.raises(InvalidArgument) as error:
        check_rule({"rule": "one_word", "n": 3}, "x")
    assert "takes no count" in _explains(error)
    with pytest.raises(InvalidArgument) as error:
        check_rule({"rule": "answer_then_stop", "n": 2}, "Lima.")
    assert "needs the accepted answers" in _explains(error)
    with pytest.raises(InvalidArgument) as error:
        check_rule({"rule": "one_word"}, None)  # type: ignore[arg-type]
    _explains(error)
    with pytest.raises(InvalidArgument) as error:
        check_rule("one_word", "x")  # type: ignore[arg-type]
    _explains(error)


def test_bad_split_is_explained() -> None:
    with pytest.raises(InvalidArgument) as error:
        load_instructions("evaluation")
    assert 'Did you mean "eval"' in _explains(error)


def test_bad_scoring_input_is_explained() -> None:
    with pytest.raises(InvalidArgument) as error:
        score_instructions([IRELAND, BARKS], ["Dublin."], ["eos"])
    assert "one entry per instruction (2)" in _explains(error)
    with pytest.raises(InvalidArgument) as error:
        score_instructions([IRELAND], [["Dublin.", "Paris."]], [["eos"]])
    assert "2 samples but stop_reasons[0] has 1" in _explains(error)
    with pytest.raises(InvalidArgument) as error:
        score_instructions([IRELAND], [[]], [[]])
    _explains(error)
    with pytest.raises(InvalidArgument) as error:
        score_instructions([], [], [])
    _explains(error)
    with pytest.raises(InvalidArgument) as error:
        score_instructions([IRELAND], "Dublin.", ["eos"])
    _explains(error)
    with pytest.raises(InvalidArgument) as error:
        _scores().as_rows(by="kinds")
    _explains(error)


def test_read_instructions_round_trips(tmp_path) -> None:
    rows = load_instructions("eval")
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r.as_dict()) + "\n" for r in rows), encoding="utf-8")
    assert read_instructions(path) == rows


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"kind": "facts", "task": "short_answer", "text": "Hi?", "answers": ["x"]},
            'Did you mean "factual"',
        ),
        (
            {"kind": "factual", "task": "short_answer", "text": "What is 2 plus 2?"},
            "needs accepted 'answers'",
        ),
        ({"kind": "format", "task": "one_word", "text": "One word: hi?"}, "needs the rule 'one_word'"),
        (
            {
                "kind": "format",
                "task": "max_words",
                "text": "Be brief.",
                "rule": {"rule": "max_words", "n": -1},
            },
            "needs a count n",
        ),
        (
            {
                "kind": "format",
                "task": "answer_then_stop",
                "text": "2+2?",
                "rule": {"rule": "answer_then_stop", "n": 1},
            },
            "answers",
        ),
        (
            {"kind": "writing", "task": "email", "text": "Write an email.", "rule": {"rule": "lowercase"}},
            "min_words",
        ),
        ({"kind": "writing", "task": "poem", "text": "Write a poem."}, "unknown writing task"),
        ({"kind": ["format"], "task": "one_word", "text": "Hi."}, "unknown instruction kind"),
        ({"kind": "format", "task": {"a": 1}, "text": "Hi."}, "unknown format task"),
        (
            {"kind": "factual", "task": "short_answer", "text": "2+2?", "answers": "4"},
            "list of non-empty strings",
        ),
        (["not", "an", "object"], "must be a JSON object"),
        ({"kind": "writing", "task": "email", "text": "  "}, "non-empty string 'text'"),
    ],
)
def test_bad_rows_name_the_line(tmp_path, row: object, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    good = {"kind": "writing", "task": "email", "text": "Write a short email to a friend."}
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(InputFormatError) as error:
        read_instructions(path)
    assert f"{path}:2:" in str(error.value) and message in str(error.value), str(error.value)


def test_writing_rows_without_a_rule_get_the_default(tmp_path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(
        json.dumps({"kind": "writing", "task": "email", "text": "Write a short email."}) + "\n",
        encoding="utf-8",
    )
    assert read_instructions(path)[0].rule == Rule("min_words", 15)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(InputFormatError, match="holds no rows"):
        read_instructions(empty)

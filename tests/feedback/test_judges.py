"""The `Judge` contract on every judge (conformance), the judges front door, and `steer judge`."""

from __future__ import annotations

import json

import pytest
from judge_cases import CORRECT, PAIRS, filled_store, load_chat_tiny, programmatic_judges
from steer_runs import steer_process

import steering.feedback.judges as judges
from steering.errors import InvalidArgument
from steering.feedback import FeedbackStore
from steering.feedback.judges import (
    ChecksFirstJudge,
    GeneratingJudge,
    Judge,
    ModelJudge,
    Pair,
    PairwiseJudgment,
)


@pytest.fixture(scope="module")
def chat_tiny():
    return load_chat_tiny()


def two_plus_two_checks(prompt: str, answer: str) -> float | None:
    """Checks that know one prompt: "What is 2 + 2?" (1 for "4", 0 for anything else)."""
    return float(answer.strip() == "4") if prompt == "What is 2 + 2?" else None


def every_judge(tiny, chat_tiny) -> list[Judge]:
    return [
        ModelJudge(tiny),
        ModelJudge(chat_tiny, batch_size=2),
        GeneratingJudge(ModelJudge(tiny)),
        GeneratingJudge(ModelJudge(chat_tiny, batch_size=2), max_new_tokens=3),
        ChecksFirstJudge(two_plus_two_checks, ModelJudge(tiny)),
        *programmatic_judges(),
    ]


# ---------------------------------------------------------------------------------------------- contract


def test_every_judge_follows_the_contract(tiny, chat_tiny):
    """The conformance checks every judge runs: shapes, ranges, both orders, the empty batch."""
    for judge in every_judge(tiny, chat_tiny):
        assert isinstance(judge, Judge), judge
        judgments = judge.pairwise(PAIRS, CORRECT)
        assert len(judgments) == len(PAIRS)
        for judgment in judgments:
            assert 0.0 <= judgment.p_a <= 1.0
            assert judgment.p_a == pytest.approx(sum(judgment.p_a_by_order) / 2)
            assert 0.0 <= judgment.label_mass <= 1.0 + 1e-9  # a generating judge that parsed nothing: 0
            assert judgment.choice in ("a", "b", "tie")
        # Identical answers: both orders are the same question with the letters swapped, so P(A ≻ B) = ½.
        assert judgments[2].p_a == pytest.approx(0.5, abs=1e-9), judge.name
        ratings = judge.rate([p.prompt for p in PAIRS], [p.a for p in PAIRS], CORRECT)
        assert len(ratings) == len(PAIRS)
        for rating in ratings:
            assert 1.0 <= rating.value <= 7.0
            assert sum(rating.probs) == pytest.approx(1.0)
            assert rating.value == pytest.approx(
                sum(k * p for k, p in zip(range(1, 8), rating.probs, strict=True))
            )
        critiques = judge.critique(["What is 2 + 2?"], ["5"], CORRECT, seed=1)
        assert len(critiques) == 1 and isinstance(critiques[0], str)
        assert judge.pairwise([], CORRECT) == [] and judge.rate([], [], CORRECT) == []
        assert judge.critique([], [], CORRECT) == []
        with pytest.raises(InvalidArgument, match="one answer per prompt"):
            judge.rate(["a", "b"], ["x"], CORRECT)


def test_swapping_the_answers_gives_the_complement(tiny, chat_tiny):
    for judge in every_judge(tiny, chat_tiny):
        forward = judge.pairwise(PAIRS[:2], CORRECT)
        backward = judge.pairwise([Pair(p.prompt, p.b, p.a) for p in PAIRS[:2]], CORRECT)
        for f, b in zip(forward, backward, strict=True):
            assert f.p_a == pytest.approx(1.0 - b.p_a, abs=1e-9)
            assert f.p_a_by_order == pytest.approx(
                (1.0 - b.p_a_by_order[1], 1.0 - b.p_a_by_order[0]), abs=1e-9
            )


def test_judgment_properties_by_hand():
    judgment = PairwiseJudgment(p_a=0.55, p_a_by_order=(0.9, 0.2))
    assert judgment.choice == "a" and not judgment.consistent
    assert judgment.p_first == pytest.approx((0.9 + 0.8) / 2)
    assert PairwiseJudgment(0.3, (0.4, 0.2)).consistent and PairwiseJudgment(0.5, (0.5, 0.5)).choice == "tie"


def test_checks_decide_what_they_tell_apart_and_the_judge_the_rest(tiny):
    model_judge = ModelJudge(tiny)
    judge = ChecksFirstJudge(two_plus_two_checks, model_judge, checks_name="sums")
    assert judge.name == f"{tiny.name}+sums"
    judgments = judge.pairwise(PAIRS, CORRECT)
    assert judgments[0] == PairwiseJudgment(1.0, (1.0, 1.0))  # "4" against "5": the checks decide
    assert judge.decided_by_checks == 1
    assert judgments[1:] == model_judge.pairwise(PAIRS[1:], CORRECT)  # unknown prompt, identical pair
    # Two replies the checks score alike go to the judge.
    tie = Pair("What is 2 + 2?", "5", "6")
    assert judge.pairwise([tie], CORRECT) == model_judge.pairwise([tie], CORRECT)
    assert judge.decided_by_checks == 1
    # A failed check caps the rating and writes the critique; a passed one leaves both to the judge.
    ratings = judge.rate(["What is 2 + 2?"] * 2, ["5", "4"], CORRECT)
    assert ratings[0].value == pytest.approx(
        min(1.0, model_judge.rate(["What is 2 + 2?"], ["5"], CORRECT)[0].value)
    )
    alone = model_judge.rate(["What is 2 + 2?"], ["4"], CORRECT)[0]  # batch of one: equal up to padding
    assert ratings[1].value == pytest.approx(alone.value, abs=1e-5)
    assert ratings[1].probs == pytest.approx(alone.probs, abs=1e-5)
    critique = judge.critique(["What is 2 + 2?"], ["5"], CORRECT)[0]
    assert "fails the code checks" in critique and "sums" in critique
    with pytest.raises(InvalidArgument, match=r"(?i)outside"):
        ChecksFirstJudge(lambda _p, _a: 2.0, model_judge).pairwise(PAIRS[:1], CORRECT)


def test_the_front_door_exports_every_piece():
    """`from steering.feedback.judges import X` keeps working for every public name of the split modules."""
    from steering.feedback import (
        checked_judge,
        generating_judge,
        judge_contract,
        judge_rewards,
        judge_storage,
        model_judge,
        score_judges,
    )

    modules = (
        judge_contract,
        model_judge,
        generating_judge,
        score_judges,
        judge_rewards,
        judge_storage,
        checked_judge,
    )
    for module in modules:
        own = [
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and getattr(value, "__module__", module.__name__) == module.__name__
            and (callable(value) or name.isupper())
            and name not in {"annotations", "Label"}
        ]
        for name in own:
            assert getattr(judges, name) is getattr(module, name), f"{module.__name__}.{name}"
            assert name in judges.__all__, name


# ---------------------------------------------------------------------------------------------- steer judge


steer = steer_process


def test_steer_judge_writes_judgments_that_export_and_continues(tmp_path):
    constitution = tmp_path / "c.toml"
    constitution.write_text('[[principles]]\nid = "positive"\ntext = "The answer is cheerful."\n')
    with FeedbackStore.open(tmp_path / "f.db") as store:
        prompt = store.add_prompt("How was your day?")
        for text in ("Wonderful, I loved it!", "Awful. I hate Mondays.", "It was a day."):
            store.add_response(prompt, text, model="test")
        prompt = store.add_prompt("How is the weather?")
        for text in ("Sunny and lovely.", "Grim and miserable."):
            store.add_response(prompt, text, model="test")
    args = ("judge", "--db", str(tmp_path / "f.db"), "--constitution", str(constitution))
    result = steer(*args, "--model", "vader")
    assert result.returncode == 0, result.stderr
    assert "4 new pairwise judgments by judge:vader-positive:" in result.stderr
    assert "swap consistency 1.00" in result.stderr and "P = 0.50" in result.stderr
    assert "0 new pairwise judgments" in steer(*args, "--model", "vader").stderr  # nothing left to do
    result = steer(*args, "--model", "tiny-random", "--kind", "rating", "--limit", "2")
    assert result.returncode == 0, result.stderr
    assert "2 new rating judgments by judge:tiny-random:" in result.stderr
    with FeedbackStore.open(tmp_path / "f.db") as store:
        assert len(store.comparisons()) == 4 and len(store.ratings(rubric="positive")) == 2
        kinds = {a.kind.split(":")[1] for a in store.annotators()}
    assert kinds == {"vader-positive", "tiny-random"}
    out = tmp_path / "prefs.jsonl"
    exported = steer("feedback", "export", "--db", str(tmp_path / "f.db"), "--to", "preferences",
                     "--annotators", "judge", "--out", str(out))  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    chosen = {(row["chosen"], row["rejected"]) for row in rows}
    assert chosen == {
        ("Wonderful, I loved it!", "Awful. I hate Mondays."),
        ("Wonderful, I loved it!", "It was a day."),
        ("It was a day.", "Awful. I hate Mondays."),
        ("Sunny and lovely.", "Grim and miserable."),
    }


def test_steer_judge_generate_then_parse(tmp_path):
    """`--method generate`: the model writes its answers; the annotator and the parse failures say so."""
    constitution = tmp_path / "c.toml"
    constitution.write_text('[[principles]]\nid = "positive"\ntext = "The answer is cheerful."\n')
    filled_store(tmp_path / "f.db").close()
    args = ("judge", "--db", str(tmp_path / "f.db"), "--constitution", str(constitution))
    result = steer(*args, "--model", "tiny-random", "--method", "generate", "--limit", "2")
    assert result.returncode == 0, result.stderr
    assert "2 new pairwise judgments by judge:tiny-random+generate:" in result.stderr
    assert "no label could be parsed from" in result.stderr and "of 4 replies" in result.stderr
    with FeedbackStore.open(tmp_path / "f.db") as store:
        labels = [c.soft_label for c in store.comparisons()]
    assert len(labels) == 2 and all(label in (0.0, 0.25, 0.5, 0.75, 1.0) for label in labels)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("--model", "no-such-model"), "no-such-model"),
        (("--kind", "ranking"), "Unknown --kind 'ranking'"),
        (("--principle", "postive"), 'Did you mean "positive"'),
        (("--model", "vader", "--adapter", "x"), "takes no adapter"),
        (("--model", "tiny-random", "--template", "chat"), "has no chat template"),
        (("--method", "guess"), "Unknown --method 'guess'"),
        (("--model", "vader", "--method", "generate"), "writes no answer to parse"),
    ],
)
def test_steer_judge_bad_arguments_fail_cleanly(tmp_path, extra, fragment):
    constitution = tmp_path / "c.toml"
    constitution.write_text('[[principles]]\nid = "positive"\ntext = "The answer is cheerful."\n')
    filled_store(tmp_path / "f.db").close()
    result = steer("judge", "--db", str(tmp_path / "f.db"), "--constitution", str(constitution), *extra)
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_steer_judge_bad_files_fail_cleanly(tmp_path):
    good = tmp_path / "c.toml"
    good.write_text('[[principles]]\nid = "positive"\ntext = "The answer is cheerful."\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('[[principles]]\nid = "x"\ntxt = "typo"\n')
    filled_store(tmp_path / "f.db").close()
    FeedbackStore.open(tmp_path / "empty.db").close()
    cases = [
        (tmp_path / "missing.db", good, "does not exist"),
        (tmp_path / "f.db", bad, "unknown key 'txt'"),
        (tmp_path / "f.db", tmp_path / "none.toml", "does not exist"),
        (tmp_path / "empty.db", good, "has no responses to judge"),
    ]
    for db, constitution, fragment in cases:
        result = steer("judge", "--db", str(db), "--constitution", str(constitution), "--model", "vader")
        assert result.returncode == 2, result.stdout + result.stderr
        assert fragment in result.stderr and "Traceback" not in result.stderr, result.stderr

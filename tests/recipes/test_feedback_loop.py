"""The RLHF/RLAIF loop end to end at toy size on tiny-random: every stage runs and leaves its rows and files.

What the loop *learns* is measured on gemma-270m by experiments/feedback_loop.py (BENCHMARKS.md); here
the plumbing is checked: labels really go through the app's HTTP API (a person's annotator, every item
answered), or into the store as an AI judge's soft labels; the exported pairs split by prompt; the reward
model and the policy are trained; the held-out numbers are computed from what was sampled.
"""

from __future__ import annotations

import json
import math

import pytest

from steering.errors import InvalidArgument
from steering.feedback import FeedbackStore
from steering.feedback.constitution import parse_constitution
from steering.feedback.judges import ModelJudge, longer_answer_judge
from steering.models import load_model
from steering.recipes.feedback_loop import (
    HELDOUT_OPENINGS,
    TRAIN_OPENINGS,
    Labeller,
    LoopSize,
    Mean,
    run_feedback_loop,
)

CONSTITUTION = parse_constitution(
    {"principles": [{"id": "long", "text": "The answer is longer."}]}, source="test.toml"
)
PRINCIPLE = CONSTITUTION.principles[0]
TRAIN, HELDOUT = TRAIN_OPENINGS[:16], HELDOUT_OPENINGS[:8]


def test_a_stand_in_person_labels_through_the_app_and_the_loop_runs(tmp_path):
    labeller = Labeller(longer_answer_judge(), PRINCIPLE, CONSTITUTION, through_app=True)
    stages: list[str] = []
    result = run_feedback_loop(
        "tiny-random", labeller, tmp_path, train_prompts=TRAIN, heldout_prompts=HELDOUT,
        size=LoopSize.quick(), progress=stages.append,
    )  # fmt: skip
    assert stages == ["candidates", "labels", "reward model", "RL", "measure"]
    assert set(result.seconds) == set(stages)
    with FeedbackStore.open(tmp_path / "feedback.db", create=False) as store:
        comparisons = store.comparisons()
        people = [a for a in store.annotators() if a.kind == "human"]
        items = store.items("compare")
    # One answer per queued pair, all by the one person the app knew (no soft label: a person's click).
    assert len(items) == len(TRAIN) + len(HELDOUT) and len(comparisons) == len(items)
    assert len(people) == 1 and {c.annotator_id for c in comparisons} == {people[0].id}
    assert all(c.soft_label is None for c in comparisons)
    # The labels are the judge's: the longer answer of each pair chosen (ties: equal lengths).
    texts = {r.id: r.text for r in FeedbackStore.open(tmp_path / "feedback.db", create=False).responses()}
    for c in comparisons:
        a, b = len(texts[c.response_a]), len(texts[c.response_b])
        assert c.choice == ("a" if a > b else "b" if b > a else "tie")
    assert result.train_pairs + result.heldout_pairs + result.ties == len(comparisons)
    train_rows = (tmp_path / "preferences-train.jsonl").read_text().splitlines()
    assert len(train_rows) == result.train_pairs
    assert {json.loads(r)["prompt"] for r in train_rows} <= set(TRAIN)
    assert result.rm_accuracy.n == result.heldout_pairs and 0 <= result.rm_accuracy.value <= 1
    assert result.rl_steps == 2 and (tmp_path / "policy" / "adapter").is_dir()
    assert result.win_rate.n == len(HELDOUT) and 0 <= result.win_rate.value <= 1
    assert result.kl.n == len(HELDOUT) and math.isfinite(result.kl.value)
    assert result.truth_win_rate is None
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["train_pairs"] == result.train_pairs and saved["win_rate"]["n"] == len(HELDOUT)
    # Run again in the same folder (`steer demo` twice): it starts over instead of refusing its own runs.
    again = run_feedback_loop(
        "tiny-random", labeller, tmp_path, train_prompts=TRAIN, heldout_prompts=HELDOUT, size=LoopSize.quick()
    )
    assert again.rl_steps == 2 and again.train_pairs == result.train_pairs
    with FeedbackStore.open(tmp_path / "feedback.db", create=False) as store:
        assert len(store.comparisons()) == len(TRAIN) + len(HELDOUT)


def test_an_ai_judge_labels_into_the_store_with_soft_labels(tmp_path):
    judge = ModelJudge(load_model("tiny-random", dtype="float32"))
    labeller = Labeller(judge, PRINCIPLE, CONSTITUTION)
    truth = (longer_answer_judge(), PRINCIPLE)
    result = run_feedback_loop(
        "tiny-random", labeller, tmp_path, train_prompts=TRAIN, heldout_prompts=HELDOUT,
        size=LoopSize.quick(), truth=truth,
    )  # fmt: skip
    with FeedbackStore.open(tmp_path / "feedback.db", create=False) as store:
        comparisons = store.comparisons()
        kinds = {a.id: a.kind for a in store.annotators()}
    assert len(comparisons) == len(TRAIN) + len(HELDOUT)
    assert all(kinds[c.annotator_id].startswith("judge:tiny-random:") for c in comparisons)
    assert all(c.soft_label is not None and 0 <= c.soft_label <= 1 for c in comparisons)
    assert result.truth_win_rate is not None and result.truth_win_rate.n == len(HELDOUT)
    assert result.truth_name == "longer-answer"


def test_overlapping_prompts_and_someone_elses_database_are_refused(tmp_path):
    labeller = Labeller(longer_answer_judge(), PRINCIPLE, CONSTITUTION)
    with pytest.raises(InvalidArgument, match="rain and held-out prompts overlap"):
        run_feedback_loop("tiny-random", labeller, tmp_path, train_prompts=TRAIN, heldout_prompts=TRAIN[:2])
    # A folder with people's answers in it: refused, and the database is left as it was.
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    with FeedbackStore.open(theirs / "feedback.db") as store:
        store.add_prompt("kept")
    with pytest.raises(
        InvalidArgument, match="already holds a feedback database that this loop did not make"
    ):
        run_feedback_loop("tiny-random", labeller, theirs, train_prompts=TRAIN, heldout_prompts=HELDOUT)
    with FeedbackStore.open(theirs / "feedback.db", create=False) as store:
        assert [p.text for p in store.prompts()] == ["kept"]


def test_mean_and_standard_error():
    m = Mean.of([0.0, 1.0, 1.0, 0.0])
    assert m.value == 0.5 and m.n == 4
    assert m.se == pytest.approx(math.sqrt((4 * 0.25 / 3) / 4))
    assert str(m) == "0.500 ± 0.289"
    assert math.isnan(Mean.of([1.0]).se) and math.isnan(Mean.of([]).value)

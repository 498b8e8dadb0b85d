"""judge_store: judgments written into the feedback store as an annotator's answers, continued on a rerun."""

from __future__ import annotations

import pytest
from judge_cases import ANSWERS, CORRECT, filled_store

from steering.errors import InvalidArgument
from steering.feedback.constitution import Constitution, Principle
from steering.feedback.judges import ModelJudge, Pair, annotator_kind, exact_answer_judge, judge_store


def test_judgments_go_into_the_store_as_answers(tmp_path, tiny):
    constitution = Constitution((CORRECT, Principle("short", "The answer is short.")), name="qa")
    judge = ModelJudge(tiny)
    with filled_store(tmp_path / "f.db") as store:
        summary = judge_store(store, judge, constitution, kind="pairwise")
        assert summary.judged == 2 * (3 + 1)  # two principles × (3 pairs + 1 pair)
        comparisons = store.comparisons()
        assert len(comparisons) == 8
        kinds = {store.annotator(c.annotator_id).kind for c in comparisons}
        assert kinds == {annotator_kind(judge, constitution)} == {f"judge:tiny-random:{constitution.digest}"}
        names = {store.annotator(c.annotator_id).name for c in comparisons}
        assert names == {
            f"judge:tiny-random:{constitution.digest}/correct",
            f"judge:tiny-random:{constitution.digest}/short",
        }
        responses = {r.id: r for r in store.responses()}
        prompts = {p.id: p.text for p in store.prompts()}
        check = comparisons[0]
        fresh = judge.pairwise(
            [
                Pair(
                    prompts[check.prompt_id],
                    responses[check.response_a].text,
                    responses[check.response_b].text,
                )
            ],
            CORRECT,
        )[0]
        assert check.soft_label == pytest.approx(fresh.p_a, abs=1e-6) and check.choice == fresh.choice
        assert "P(a≻b)" in (check.reason or "")
        assert 0 <= summary.consistent <= 8 and 0 < summary.mean(summary.p_first) < 1
        per = summary.by_principle
        assert set(per) == {"correct", "short"} and [per[p]["judged"] for p in per] == [4, 4]
        assert sum(row["consistent"] for row in per.values()) == summary.consistent
        assert sum(row["p_first"] for row in per.values()) == pytest.approx(summary.p_first)
        again = judge_store(store, judge, constitution, kind="pairwise")
        assert again.judged == 0 and again.already == 8 and len(store.comparisons()) == 8

        rated = judge_store(store, judge, constitution, kind="rating", principles=[CORRECT], limit=3)
        assert rated.judged == 3
        ratings = store.ratings(rubric="correct")
        assert len(ratings) == 3 and all(1.0 <= r.value <= 7.0 for r in ratings)
        assert judge_store(store, judge, constitution, kind="rating", principles=[CORRECT]).judged == 2
        critiqued = judge_store(
            store, exact_answer_judge(ANSWERS), constitution, kind="critique", principles=[CORRECT]
        )
        assert critiqued.judged == 5 and len(store.critiques()) == 5
        with pytest.raises(InvalidArgument, match=r"(?i)unknown judge kind"):
            judge_store(store, judge, constitution, kind="ranking")


def test_soft_labels_of_a_programmatic_judge_are_exact(tmp_path):
    constitution = Constitution((CORRECT,))
    with filled_store(tmp_path / "f.db") as store:
        summary = judge_store(store, exact_answer_judge(ANSWERS), constitution, kind="pairwise")
        texts = {r.id: r.text for r in store.responses()}
        labels = {(texts[c.response_a], texts[c.response_b]): c.soft_label for c in store.comparisons()}
    assert labels == {
        ("4", "5"): 1.0,
        ("4", "It is 4, I think."): 0.5,
        ("5", "It is 4, I think."): 0.0,
        ("Paris", "Lyon"): 1.0,
    }
    # Three of the four labels pick a side (P = 1 or 0); the tie ("4" vs "It is 4, I think.") does not.
    assert summary.by_principle["correct"]["decisive"] == 3

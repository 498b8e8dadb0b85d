"""Agreement statistics against numbers worked out by hand (textbook examples) and on a real store."""

from __future__ import annotations

import math

import pytest

from steering.errors import InvalidArgument
from steering.feedback.agreement import (
    cohen_kappa,
    comparison_alpha,
    judge_vs_humans,
    kappa_table,
    krippendorff_alpha,
    pairwise_kappa,
    rating_alpha,
    swap_consistency,
)
from steering.feedback.store import FeedbackStore


def test_cohen_kappa_textbook_example():
    # Wikipedia's worked example: 50 proposals, both yes 20, A yes/B no 5, A no/B yes 10, both no 15.
    # p_o = 35/50 = 0.7; p_e = 0.5·0.6 + 0.5·0.4 = 0.5; κ = (0.7 − 0.5) / (1 − 0.5) = 0.4.
    a = ["yes"] * 20 + ["yes"] * 5 + ["no"] * 10 + ["no"] * 15
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert math.isnan(cohen_kappa(["x", "x"], ["x", "x"]))  # p_e = 1: undefined, not made up
    with pytest.raises(InvalidArgument):
        cohen_kappa(["x"], [])


def test_krippendorff_alpha_hand_computed():
    # Nominal, two coders, units (a,a) (a,b) (b,b) (b,b) coded a=0, b=1: n = 8 pairable values (3 a, 5 b).
    # D_o = 2/8 (one disagreeing unit gives the ordered pairs ab and ba), D_e = 2·3·5 / (8·7) = 30/56,
    # α = 1 − D_o/D_e = 1 − 14/30 = 8/15.
    nominal = {1: {1: 0.0, 2: 0.0}, 2: {1: 0.0, 2: 1.0}, 3: {1: 1.0, 2: 1.0}, 4: {1: 1.0, 2: 1.0}}
    assert krippendorff_alpha(nominal).value == pytest.approx(8 / 15)
    # Interval, units (1,2) (3,3) (5,4): D_o = (2 + 0 + 2)/6, D_e = 2·n·Σ(v − v̄)² / (n(n − 1)) = 120/30,
    # α = 1 − (2/3)/4 = 5/6.
    interval = {1: {1: 1.0, 2: 2.0}, 2: {1: 3.0, 2: 3.0}, 3: {1: 5.0, 2: 4.0}, 9: {1: 7.0}}
    result = krippendorff_alpha(interval, level="interval")
    assert result.value == pytest.approx(5 / 6) and result.units == 3  # the unit with one answer can't pair
    assert math.isnan(krippendorff_alpha({1: {1: 2.0, 2: 2.0}}).value)


def _store_with_votes(path):
    store = FeedbackStore.open(path)
    prompt = store.add_prompt("Q")
    r = [store.add_response(prompt, f" answer {i}", model="m") for i in range(5)]
    people = [store.ensure_annotator(name, "human") for name in ("ada", "bob")]
    judge = store.ensure_annotator("judge", "judge:tiny:0")
    # Four units. ada and bob agree on three of them; bob stored one pair in the other order (b, a):
    # it is the same unit and the same vote.
    votes = [
        ((r[0], r[1]), "a", "a"),
        ((r[1], r[2]), "b", "b"),
        ((r[2], r[3]), "tie", "a"),
        ((r[3], r[4]), "a", "a"),
    ]
    for (x, y), ada_choice, bob_choice in votes:
        store.add_comparison(people[0], response_a=x, response_b=y, choice=ada_choice)
        if (x, y) == (r[0], r[1]):
            store.add_comparison(people[1], response_a=y, response_b=x, choice="b")
        else:
            store.add_comparison(people[1], response_a=x, response_b=y, choice=bob_choice)
    return store, r, people, judge


def test_agreement_on_a_store(tmp_path):
    store, r, (ada, bob), judge = _store_with_votes(tmp_path / "f.db")
    with store:
        # Labels in unit order — ada: first, second, tie, first; bob: first, second, first, first.
        # p_o = 3/4; ada's frequencies (2 first, 1 second, 1 tie), bob's (3 first, 1 second):
        # p_e = (2·3 + 1·1 + 1·0)/16 = 7/16; κ = (12/16 − 7/16) / (9/16) = 5/9.
        kappa = pairwise_kappa(store, ada, bob)
        assert kappa.units == 4 and kappa.value == pytest.approx(5 / 9)
        [row] = kappa_table(store)
        assert (row.first, row.second, row.units) == ("ada", "bob", 4)
        assert 0 < comparison_alpha(store).value < 1

        # The judge sees each of the three agreed units in both orders: consistent on two, swaps on one.
        for (x, y), label in (((r[0], r[1]), "a"), ((r[1], r[2]), "b"), ((r[3], r[4]), "a")):
            store.add_comparison(judge, response_a=x, response_b=y, choice=label, shown_left="a")
            flipped = label if (x, y) != (r[3], r[4]) else ("b" if label == "a" else "a")
            store.add_comparison(judge, response_a=x, response_b=y, choice=flipped, shown_left="b")
        swap = swap_consistency(store, judge)
        assert swap.units == 3 and swap.value == pytest.approx(2 / 3)
        # Against the people (the judge's latest label counts): right on units 1 and 2, wrong on unit 4;
        # unit 3 has no human majority (tie vs first) and the judge did not answer it anyway.
        versus = judge_vs_humans(store, judge)
        assert versus.units == 3 and versus.accuracy == pytest.approx(2 / 3)
        assert math.isnan(swap_consistency(store, ada).value)


def test_rating_alpha_from_store(tmp_path):
    with FeedbackStore.open(tmp_path / "f.db") as store:
        prompt = store.add_prompt("Q")
        r = [store.add_response(prompt, f" {i}", model="m") for i in range(3)]
        a, b = store.ensure_annotator("a", "human"), store.ensure_annotator("b", "human")
        for response, (x, y) in zip(r, [(1, 2), (3, 3), (5, 4)], strict=True):
            store.add_rating(a, response, rubric="helpful", value=x)
            store.add_rating(b, response, rubric="helpful", value=y)
        store.add_rating(a, r[0], rubric="honest", value=7)
        assert rating_alpha(store, "helpful").value == pytest.approx(5 / 6)  # the hand example above
        assert rating_alpha(store, "honest").units == 0

"""Metrics and the built-in question set."""

from __future__ import annotations

import pytest

from steering.decode import generate
from steering.eval import (
    builtin_demonstrations,
    builtin_questions,
    distinct_n,
    first_answer,
    invents_question,
    is_correct,
    longest_repeated_ngram,
    normalise,
    summarise,
)


def test_question_set_is_large_and_well_formed():
    questions = builtin_questions()
    assert len(questions) >= 40
    assert len({q.question for q in questions}) == len(questions)
    assert all(q.answers and all(a.strip() for a in q.answers) for q in questions)
    demo_prompts = {p for p, _ in builtin_demonstrations()}
    assert not demo_prompts & {q.question for q in questions}


def test_normalised_containment():
    assert normalise("  Paris,  France! ") == "paris france"
    assert is_correct(" The capital is Paris.", ["Paris"])
    assert is_correct(" fifty-six", ["fifty-six"])
    assert not is_correct(" Parisian food", ["Paris"])  # whole words only
    assert not is_correct(" I don't know.\nParis", ["Paris"])  # first line only
    assert first_answer("\n\n  Tokyo.\nMore") == "Tokyo."


def test_invented_questions():
    assert invents_question(" Paris.\nQ: What is the capital of Spain?")
    assert invents_question(" What is the capital of Germany?")
    assert invents_question("Paris\nQuestion 2: next")
    assert not invents_question(" Paris is the capital.")


def test_repetition_metrics():
    assert distinct_n("a b c d", 2) == 1.0
    assert distinct_n("a b a b a b", 2) == pytest.approx(2 / 5)
    assert distinct_n("a", 2) is None
    assert longest_repeated_ngram("the cat sat the cat sat") == 3
    assert longest_repeated_ngram("all different words") == 0


def test_summarise_counts(tiny):
    samples = generate(tiny, ["hello", "hi"], n=2, max_new_tokens=5, stop=["e"])
    summary = summarise(samples, answers=[["zzz"], ["yyy"]])
    assert summary.samples == 4
    assert summary.accuracy == 0.0
    assert 0.0 <= summary.stop_rate <= 1.0
    assert summary.mean_kl == 0.0


def test_charts_place_every_point_and_legend_inside_the_picture():
    import re

    from steering.eval.report import line_chart_svg, xy_chart_svg

    series = {f"series number {i}": [(0.0, 0.1 * i), (1.5, 0.2), (40.0, 0.9)] for i in range(5)}
    svg = xy_chart_svg(series, title="t", x_label="KL", y_label="reward", log_x=True)
    # Each point is one marker with its value as a tooltip (was: one hand-drawn <circle> per point).
    assert svg.count("<title>series number") == 15 and all(name in svg for name in series)
    lines = line_chart_svg(
        ["0", "1", "∞"], {f"s{i}": [0.1, None, 0.9] for i in range(4)}, title="t", y_label="y"
    )
    assert len(re.findall(r"<title>s\d at ", lines)) == 8  # None leaves a gap
    # The legend names every series (was: legend squares' coordinates within width × height; that the
    # legend lies inside the picture is now checked in the browser, tests/eval/test_report_browser.py).
    legend = lines[re.search(r'id="[^"]*legend_1"', lines).start() :]
    assert all(f"<!-- s{i} -->" in legend for i in range(4))

"""The whole `steer demo` on gemma-270m (minutes): `make test-slow`."""

from __future__ import annotations

import pytest

from steering.recipes.demo import run_demo

pytestmark = pytest.mark.slow


def test_full_demo_shows_what_prompting_changes(gemma, tmp_path):
    outcome = run_demo(gemma, out_dir=tmp_path)
    by_name = {r.name: r for r in outcome.prompting}
    raw, qa, few = by_name["raw"], by_name["Q:/A: + stop"], by_name["few-shot + stop"]
    # The claim, measured: the raw base runs on; the wrappers stop and invent fewer questions.
    assert raw.summary.stop_rate < qa.summary.stop_rate
    assert raw.summary.new_question_rate > few.summary.new_question_rate
    assert few.greedy_summary.accuracy is not None and few.greedy_summary.accuracy >= 0.3
    assert raw.summary.mean_kl == 0.0 and qa.summary.mean_kl > 0
    # Instruction tuning on the base model's own demonstrations: asked the bare question, the adapter
    # stops and stops inventing questions where the raw base does not.
    sft = by_name["SFT adapter (own demos)"]
    assert sft.summary.stop_rate > raw.summary.stop_rate
    assert sft.summary.new_question_rate < raw.summary.new_question_rate
    assert sft.summary.mean_kl > 0
    assert outcome.report.is_file()
    base = next(r for r in outcome.sentiment if r.technique == "base model")
    assert base.kl == 0.0
    assert max(r.reward for r in outcome.sentiment) > base.reward

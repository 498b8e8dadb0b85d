"""`steer demo`, section 5: RLHF and RLAIF in small — labels from a person's clicks or an AI judge, then RL.

Two runs of `recipes.feedback_loop` on the same story openings and the same principle ("the answer is
positive, warm and cheerful"): pairs of the base's continuations are labelled (a) by a person — played
by VADER, answering through the annotation app's HTTP API as the page does — and (b) by the smollm2
judge reading the principle; each set of labels trains a reward model, and KL-regularised RL on it
tunes the base. The table shows, on held-out openings, how well the reward model learned its labels,
how often the labeller prefers the policy's continuation to the base's, the same under VADER (the
truth here), and what the policy paid in KL.
"""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass

from steering.eval.report import Section, table_html
from steering.feedback.judges import ModelJudge, vader_judge
from steering.models import load_model
from steering.recipes.demo.section import DemoContext, DemoScale
from steering.recipes.feedback_loop import (
    HELDOUT_OPENINGS,
    PERSON_TIE_MARGIN,
    TONE,
    TRAIN_OPENINGS,
    Labeller,
    LoopResult,
    LoopSize,
    decode_slots,
    run_feedback_loop,
)

JUDGE_MODEL = "smollm2-135m-instruct"


def feedback_scale(limit: int | None) -> tuple[int, int, LoopSize]:
    """Train and held-out openings and the loop's size: the full demo's, or a toy one for `--limit`."""
    if limit is None:
        return 16, 8, LoopSize(rl_steps=6)  # experiments/feedback_loop.py runs 48 and 24 (BENCHMARKS.md)
    # Four samples per opening (six pairs each), so that VADER, which calls many short continuations
    # equally neutral (a tie, left out), still leaves pairs to train and measure on.
    return 8, 4, dataclasses.replace(LoopSize.quick(), samples_per_prompt=4, max_new_tokens=12)


@dataclass(frozen=True)
class FeedbackOutcome:
    results: list[LoopResult]

    def sections(self) -> list[Section]:
        return feedback_sections(self)


@dataclass(frozen=True)
class FeedbackSection:
    name: str = "Feedback: RLHF and RLAIF in small"
    trains_base: bool = True

    def work_units(self, scale: DemoScale) -> int:
        train, heldout, size = feedback_scale(scale.limit)
        return 2 * decode_slots(train, heldout, size)

    def run(self, context: DemoContext) -> FeedbackOutcome:
        train, heldout, size = feedback_scale(context.limit)
        principle = TONE.principles[0]
        labellers = [
            Labeller(vader_judge(), principle, TONE, through_app=True, tie_margin=PERSON_TIE_MARGIN),
            Labeller(ModelJudge(load_model(JUDGE_MODEL)), principle, TONE),
        ]
        results = []
        for labeller in labellers:  # the same seed: both label the very same candidates
            results.append(
                run_feedback_loop(
                    context.model.name,
                    labeller,
                    context.out_dir / "feedback" / ("rlhf-app" if labeller.through_app else "rlaif-judge"),
                    train_prompts=TRAIN_OPENINGS[:train],
                    heldout_prompts=HELDOUT_OPENINGS[:heldout],
                    size=size,
                    truth=(vader_judge(), principle),
                    seed=context.seed,
                    sample_model=context.model,
                    train_model=context.train_model(),
                    decode_progress=context.progress,
                )
            )
        return FeedbackOutcome(results)


def feedback_sections(outcome: FeedbackOutcome) -> list[Section]:
    headers = [
        "labelled by", "pairs (train / held-out / ties)", "RM accuracy, held-out", "RM score of rollouts",
        "labeller's win rate vs base", "VADER win rate vs base", "KL to base (nats)",
    ]  # fmt: skip
    rows = []
    for r in outcome.results:
        rows.append(
            [
                r.labeller,
                f"{r.train_pairs} / {r.heldout_pairs} / {r.ties}",
                str(r.rm_accuracy),
                f"{r.rl_reward[0]:.2f} → {r.rl_reward[1]:.2f} ({r.rl_steps} steps)",
                str(r.win_rate),
                str(r.truth_win_rate),
                str(r.kl),
            ]
        )
    examples = "".join(
        f"<li><b>{html.escape(e['prompt'])}</b><br>base: {html.escape(e['base'])}<br>"
        f"policy: {html.escape(e['policy'])}</li>"
        for e in outcome.results[0].examples
    )
    return [
        Section(
            "Feedback: RLHF and RLAIF in small",
            "Two samples of the base per story opening were put in a feedback database and labelled under "
            "one principle, 'the answer is positive, warm and cheerful': in the first row by a person — "
            "played by VADER, clicking through the annotation app's HTTP API and calling two nearly equal "
            "answers a tie — and in the second by the "
            "smollm2-135m-instruct judge reading the principle (both shown orders averaged). Each set of "
            "labels trained a reward model (Bradley–Terry, LoRA + head) and KL-regularised RL on it tuned "
            "the base. Measured on openings held out of both: the reward model's agreement with its "
            "labeller on their pairs, and P(policy ≻ base) per opening under the labeller and under VADER "
            "(0.5: no change), with standard errors. A 135M judge labels tone noisily, so its reward "
            "model learns less; where a win rate is within two standard errors of 0.5, the loop has not "
            "shown a change.",
            table_html(headers, rows) + "<p>First row, held-out openings:</p>" + f"<ul>{examples}</ul>",
        )
    ]

"""RLHF and RLAIF end to end on gemma-270m: labels → reward model → KL-regularised RL, measured on held-out prompts.

Run: `python experiments/feedback_loop.py --write BENCHMARKS.md` (or `make experiments`) (HF_HUB_OFFLINE=1; ~15 min on 2 cores).

Two runs of `steering.recipes.feedback_loop.run_feedback_loop` on the same 48 train and 24 held-out story
openings, under one principle ("The answer is positive, warm and cheerful in tone."):

- RLHF: the labels are a person's clicks, the person played by VADER (the more positive continuation
  wins), entered through the annotation app's HTTP API on a real uvicorn server, as the page does;
- RLAIF: the labels are the smollm2-135m-instruct judge's, reading the principle, both shown orders
  averaged (its soft label stored; the hard label exported).

Each (`LoopSize()`): 4 samples of the base per opening (16 new tokens, temperature 1) → the labeller's
preference on each of the 6 pairs (ties left out; the stand-in person calls a pair whose P(left ≻ right) is
within `PERSON_TIE_MARGIN` of ½ a tie) → a Bradley–Terry reward model (LoRA rank 8 + head, 3 epochs at
1e-3) on the train openings' pairs → RL (RLOO, β = 0.1, 8 steps of 4 openings × 4 samples) from the base
on that reward model → on the
held-out openings: the reward model's accuracy on their labelled pairs, P(policy ≻ base) under the
labeller and under VADER (2 answers per opening from each, same seed; ½ = no change), and the policy's
KL(q ‖ p) per answer from its books. Every mean with its standard error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # common.py
from common import machine, machine_line, write_section

from steering.feedback.judges import ModelJudge, vader_judge
from steering.models import load_model
from steering.recipes.feedback_loop import (
    PERSON_TIE_MARGIN,
    TONE,
    Labeller,
    LoopResult,
    LoopSize,
    run_feedback_loop,
)

RESULTS = Path(__file__).parent / "results" / "feedback_loop.json"


def markdown(results: list[LoopResult], facts: dict[str, object], size: LoopSize, wall: float) -> list[str]:
    lines = [
        "## RLHF and RLAIF end to end (gemma-270m)",
        "",
        f"`experiments/feedback_loop.py`, {machine_line(facts)}; {wall / 60:.0f} min in all. Principle: "
        f'"{TONE.principles[0].text}" Labels on every pair of {size.samples_per_prompt} samples of the base per story opening '
        f"({size.max_new_tokens} new tokens), 48 train and 24 held-out openings; Bradley–Terry reward model "
        f"(LoRA rank {size.lora_rank} + head, {size.rm_epochs} epochs at {size.rm_learning_rate:g}); RL (RLOO, β = {size.beta}, "
        f"{size.rl_steps} steps of {size.rl_prompts_per_step} openings × {size.rl_samples_per_prompt} samples) "
        "from the base on the reward model. Held-out columns: the reward model's accuracy on the held-out "
        "openings' labelled pairs; P(policy ≻ base) per answer pair (2 per held-out opening), under the "
        "labeller and under VADER (½ = no change); the policy's KL(q ‖ p) per answer (its books). ± one "
        "standard error.",
        "",
        "| labels from | pairs train / held-out / ties | RM accuracy (held-out) | RM score of rollouts, step 1 → last 3 "
        "| labeller's win rate | VADER win rate | KL to base (nats) | seconds: candidates / labels / RM / RL / measure |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r.seconds
        lines.append(
            f"| {r.labeller} | {r.train_pairs} / {r.heldout_pairs} / {r.ties} | {r.rm_accuracy} | "
            f"{r.rl_reward[0]:.2f} → {r.rl_reward[1]:.2f} | {r.win_rate} | {r.truth_win_rate} | {r.kl} | "
            f"{s.get('candidates', 0):.0f} / {s.get('labels', 0):.0f} / {s.get('reward model', 0):.0f} / "
            f"{s.get('RL', 0):.0f} / {s.get('measure', 0):.0f} |"
        )
    lines += ["", "Held-out examples (first run): opening → base | policy", ""]
    for e in results[0].examples:
        lines.append(f"- *{e['prompt']}* → {e['base'].strip()!r} | {e['policy'].strip()!r}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="gemma-270m")
    parser.add_argument("--judge", default="smollm2-135m-instruct")
    parser.add_argument("--out", default="runs/bench-feedback-loop")
    parser.add_argument("--write", type=Path, help="BENCHMARKS.md to update")
    parser.add_argument("--only", choices=["app", "judge"], help="run one of the two loops")
    args = parser.parse_args()
    size = LoopSize()
    principle = TONE.principles[0]
    labellers = []
    if args.only in (None, "app"):
        labellers.append(
            Labeller(vader_judge(), principle, TONE, through_app=True, tie_margin=PERSON_TIE_MARGIN)
        )
    if args.only in (None, "judge"):
        labellers.append(Labeller(ModelJudge(load_model(args.judge)), principle, TONE))
    sampler = load_model(args.model)
    started = time.perf_counter()
    results = []
    for labeller in labellers:  # the same seed: both label the very same candidates
        name = "rlhf-app" if labeller.through_app else "rlaif-judge"
        result = run_feedback_loop(
            args.model, labeller, Path(args.out) / name, size=size, truth=(vader_judge(), principle), seed=0,
            sample_model=sampler, progress=lambda stage, name=name: print(f"{name}: {stage}", flush=True),
        )  # fmt: skip
        print(json.dumps({k: v for k, v in result.record().items() if k != "examples"}), flush=True)
        results.append(result)
    wall = time.perf_counter() - started
    facts = machine()
    RESULTS.write_text(
        json.dumps({"machine": facts, "wall_s": wall, "runs": [r.record() for r in results]}, indent=1) + "\n"
    )
    lines = markdown(results, facts, size, wall)
    print("\n".join(lines))
    if args.write:
        write_section(args.write, "feedback_loop", lines)


if __name__ == "__main__":
    main()

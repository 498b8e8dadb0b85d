"""RL step time with rollouts in process and on 1 or 2 Ray workers, on gemma-270m (one run, side by side).

Run: `python benchmarks/rl_rollout_workers.py --write BENCHMARKS.md`. The same RL run (the VADER
sentiment reward, `--steps` steps of `--prompts` prompts × 4 samples of ≤ `--tokens` tokens, float32,
seed 0) three times: `rollout_workers=0` (in process), 1 and 2. Reported per mode: the first step
apart (it starts the Ray cluster and loads the base in every actor), then the median of the others:
step seconds, rollout seconds (the learner's wait for the rollouts), rollout tokens/s, and the
update's seconds. The rollouts are the same in every mode (tests/train/test_rollouts.py), so the
token counts match.

On a 2-core machine the learner and the workers share the cores: this measures the overhead (actors
starting, the base loaded in each, weights sent every step), not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import PROMPTS, machine, machine_line, write_section

from steering.train import RLConfig, train_rl


def run(workers: int, data: Path, out: Path, args: argparse.Namespace) -> tuple[float, list[dict]]:
    config = RLConfig(
        data=str(data), model="gemma-270m", out=str(out / f"workers-{workers}"), reward="vader",
        max_steps=args.steps, batch_size=args.prompts, samples_per_prompt=4, max_new_tokens=args.tokens,
        learning_rate=1e-4, warmup_steps=0, save_every=1000, rollout_workers=workers,
    )  # fmt: skip
    began = time.perf_counter()
    result = train_rl(config)
    return time.perf_counter() - began, [r for r in result.metrics if "reward" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="rl-workers-"))
    data = out / "prompts.jsonl"
    prompts = (PROMPTS * (1 + args.steps * args.prompts // len(PROMPTS)))[: args.steps * args.prompts]
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    rows = []
    for workers in (0, 1, 2):
        total, records = run(workers, data, out, args)
        rest = records[1:] or records
        step = [r["generation_s"] + r["training_s"] for r in rest]
        rows.append({
            "workers": workers, "total": total, "first": records[0]["generation_s"] + records[0]["training_s"],
            "step": statistics.median(step), "rollout": statistics.median(r["generation_s"] for r in rest),
            "rate": statistics.median(r["rollout_tokens_per_s"] for r in rest),
            "update": statistics.median(r["training_s"] for r in rest),
            "tokens": sum(r["tokens"] for r in records),
        })  # fmt: skip
        print(rows[-1], flush=True)
    lines = [
        "## RL rollouts on Ray workers (`benchmarks/rl_rollout_workers.py`)",
        "",
        f"{machine_line(machine())}. gemma-270m float32, RL with the VADER reward, {args.steps} steps of "
        f"{args.prompts} prompts × 4 samples, ≤ {args.tokens} new tokens; Ray's local cluster started by "
        "the run. First step apart (cluster start and the base loaded in each actor happen there); "
        "the others' median.",
        "",
        "| rollouts | first step (s) | step (s) | rollouts (s) | rollout tokens/s | update (s) | tokens, all steps |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {0: "in process", 1: "1 Ray worker", 2: "2 Ray workers"}
    for r in rows:
        lines.append(
            f"| {names[r['workers']]} | {r['first']:.1f} | {r['step']:.1f} | {r['rollout']:.1f} | "
            f"{r['rate']:.1f} | {r['update']:.1f} | {r['tokens']} |"
        )
    lines += [
        "",
        "Two cores hold the learner and the workers together, so the workers cannot be faster here; "
        "what the table shows is the cost of the indirection (weights into the object store every step, "
        "results back) beside the sampling itself. docs/scale.md says what changes on a cluster.",
    ]
    print("\n".join(lines))
    if args.write:
        write_section(args.write, "rl-rollout-workers", lines)


if __name__ == "__main__":
    main()

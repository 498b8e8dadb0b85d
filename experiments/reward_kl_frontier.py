"""Experiment 3 of the fine-tuning issue: the reward–KL frontier of RL against inference-time controls.

Run: `python experiments/reward_kl_frontier.py --write BENCHMARKS.md`. Reward: VADER compound score of
the continuation (positive sentiment), in [−1, 1]. KL-regularised RL (`train_rl`: LoRA policy, RLOO
baseline, reward − β·KL with exact books) is trained at several β on 16 neutral openings of its own;
each trained policy and the inference-time controls of `benchmarks/controls.py` (a prompt prefix, a
bag-of-words boost and an activation steering vector at several strengths; PPLM's rows are read from
that script's last results, as PPLM costs ~10× per token) are then scored the same way: the 8 openings
of the controls table (none used in training) × `--samples-per-start` samples, 32 new tokens, seed 0,
bfloat16; mean VADER and mean KL = Σ(log q − log p_base) per sample against the base model on the raw
opening, each with its standard error. RL's optimum for β is π·exp(r/β)/Z: the frontier it traces is
the best reward reachable at each KL. `--reuse` scores the adapters of an earlier run in `--out`
instead of training them again (their curves read from its metrics.jsonl).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from steering.controls import Adapter, build_steering_vector
from steering.eval.probe import load_battery, probe
from steering.eval.report import xy_chart_svg
from steering.models import load_model
from steering.recipes.demo.pools_and_tweaks import NEGATIVE_EXAMPLES, POSITIVE_EXAMPLES, RL_OPENINGS
from steering.train import RLConfig, train_rl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # common.py, controls.py
from common import machine, machine_line, write_section
from controls import STARTS, sentiment_row, sentiment_settings

RESULTS = Path(__file__).parent / "results"
BENCHMARK_RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _train(model32: Any | None, beta: float, args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prompts = out / "openings.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in RL_OPENINGS))
    config = RLConfig(
        data=str(prompts),
        model=args.model,
        out=str(out / f"beta-{beta:g}"),
        reward="vader",
        beta=beta,
        learning_rate=args.learning_rate,
        batch_size=8,
        samples_per_prompt=4,
        max_new_tokens=32,
        epochs=args.epochs,
        warmup_steps=2,
        save_every=10_000,
    )
    started = time.perf_counter()
    run = Path(config.out)
    if args.reuse and (run / "adapter").is_dir():
        saved = json.loads((run / "config.json").read_text())
        changed = {k: (saved.get(k), v) for k, v in vars(config).items() if k != "out" and saved.get(k) != v}
        if changed:
            raise SystemExit(f"--reuse: {run} was trained with other settings (saved, now): {changed}")
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        records = [r for r in records if "reward" in r]
        adapter, steps, seconds = run / "adapter", len(records), None
    else:
        result = train_rl(config, model=model32)
        records = [r for r in result.metrics if "reward" in r]
        adapter, steps, seconds = result.adapter, result.steps, time.perf_counter() - started
    return {
        "beta": beta,
        "adapter": str(adapter),
        "steps": steps,
        "train_s": seconds,
        "curve": [
            {k: r.get(k) for k in ("step", "reward", "kl", "kl_k3", "generation_s", "training_s")}
            for r in records
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="gemma-270m")
    parser.add_argument("--betas", default="0.5,0.1,0.02")
    parser.add_argument(
        "--epochs", type=int, default=10, help="RL epochs over the 16 openings (2 steps each)"
    )
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--out", default="runs/reward-kl-frontier")
    parser.add_argument("--samples-per-start", type=int, default=16, help="samples per opening, every row")
    parser.add_argument("--reuse", action="store_true", help="score the adapters already trained in --out")
    parser.add_argument("--write", type=Path, help="update this markdown file's section")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    model = load_model(args.model, dtype="bfloat16")
    score = {"samples_per_start": args.samples_per_start, "max_new_tokens": 32}
    vector = build_steering_vector(model, positive=POSITIVE_EXAMPLES, negative=NEGATIVE_EXAMPLES, layers=[6])
    rows = [sentiment_row(model, t, s, c, **score) for t, s, c in sentiment_settings(vector, pplm=False)]
    saved_controls = BENCHMARK_RESULTS / "controls.json"
    if saved_controls.is_file():
        for row in json.loads(saved_controls.read_text())["table"]:
            if row["technique"].startswith("PPLM"):
                per_start = int(json.loads(saved_controls.read_text())["args"]["samples_per_start"])
                rows.append(
                    {**row, "samples": len(STARTS) * per_start, "from": "benchmarks/results/controls.json"}
                )
    model32 = None if args.reuse else load_model(args.model, dtype="float32")
    runs = []
    for beta in (float(b) for b in args.betas.split(",")):
        run = _train(model32, beta, args)
        runs.append(run)
        rows.append(
            {
                **sentiment_row(
                    model, "RL (VADER reward)", f"β={beta:g}", [Adapter(run["adapter"])], **score
                ),
                "steps": run["steps"],
            }
        )
    # What the reward changed outside its prompts: the sentiment battery (people helping each other vs
    # distrust, cheerful reports of bad news, …) under each RL policy against the base.
    battery = load_battery("sentiment")
    model32 = model32 or load_model(args.model, dtype="float32")
    for run in runs:
        result = probe(model32, [Adapter(run["adapter"])], battery)
        full = result.as_dict(top=2)
        run["probe"] = {
            k: full[k] for k in ("text_categories", "prompt_categories", "most_raised", "most_lowered")
        }
    saved = {
        "machine": machine(),
        "args": vars(args) | {"write": str(args.write)},
        "rows": rows,
        "runs": runs,
        "wall_s": time.perf_counter() - started,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reward_kl_frontier.json").write_text(json.dumps(saved, indent=1, default=str))
    (RESULTS / "reward_kl_frontier.svg").write_text(chart(rows))
    if args.write:
        write_markdown(args.write, saved)


def chart(rows: list[dict[str, Any]]) -> str:
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        series.setdefault(row["technique"], []).append((max(float(row["kl"]), 0.0), float(row["vader"])))
    return xy_chart_svg(
        series,
        title="Positive sentiment: reward against KL to the base (gemma-270m)",
        x_label="mean KL to base, nats per sequence",
        y_label="mean VADER compound",
        log_x=True,
    )


def write_markdown(path: Path, saved: dict[str, Any]) -> None:
    args = saved["args"]
    lines = [
        "## Reward–KL frontier: RL against inference-time controls (`experiments/reward_kl_frontier.py`)",
        "",
        f"Model `{args['model']}`, {machine_line(saved['machine'])}; one run, {saved['wall_s'] / 60:.1f} min"
        + (
            " of scoring: the RL adapters were trained by an earlier run of this script (`--reuse`; their curves "
            "below are read from its metrics.jsonl). "
            if args.get("reuse")
            else ". "
        )
        + f"RL: LoRA rank 16 in float32, learning rate {args['learning_rate']:g}, 16 training openings, 8 prompts × 4 "
        f"samples × 32 tokens per step, {args['epochs']} epochs (2 steps each), RLOO baseline, reward − β·KL "
        "(k1, exact books). Every row scored alike: the controls table's 8 openings (not trained on) × "
        f"{args['samples_per_start']} samples, 32 new tokens, seed 0, bfloat16; mean VADER compound and mean KL = "
        "Σ(log q − log p_base) per sample, ± one standard error of the mean.",
        "",
        "![reward against KL](experiments/results/reward_kl_frontier.svg)",
        "",
        "| technique | strength | mean VADER | mean KL (nats) | samples | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in saved["rows"]:
        note = f"{r['steps']} RL steps" if "steps" in r else ("from " + r["from"] if "from" in r else "")
        lines.append(
            f"| {r['technique']} | {r['strength']} | {_mean(r, 'vader', 3)} | {_mean(r, 'kl', 2)} "
            f"| {r.get('samples', '–')} | {note} |"
        )
    lines += ["", "At equal KL (read from the table, not interpolated):", "", *_reading(saved["rows"])]
    lines += ["", "RL training curves (reward and KL of each step's rollouts, first → last):", ""]
    for run in saved["runs"]:
        first, last = run["curve"][0], run["curve"][-1]
        took = "" if run["train_s"] is None else f" in {run['train_s'] / 60:.1f} min"
        lines.append(
            f"- β={run['beta']:g}: {run['steps']} steps{took}; reward {first['reward']:.3f} → "
            f"{last['reward']:.3f}, KL {first['kl']:.2f} → {last['kl']:.2f} nats; generation "
            f"{sum(c['generation_s'] for c in run['curve']):.0f} s, training {sum(c['training_s'] for c in run['curve']):.0f} s."
        )
    probed = [run for run in saved["runs"] if "probe" in run]
    if probed:
        lines += [
            "",
            "Probes (the sentiment battery, texts and prompts outside the RL openings; shift = log p_policy − "
            "log p_base of each text, nats; KL of the policy's continuations of each prompt):",
            "",
            "| policy | category | mean shift or KL ± se | n |",
            "|---|---|---|---|",
        ]
        for run in probed:
            for category, value in run["probe"]["text_categories"].items():
                shift = value["shift"]
                lines.append(
                    f"| RL β={run['beta']:g} | {category} | {shift['mean']:.2f} ± {_se(shift['se'])} | {shift['n']} |"
                )
            for category, value in run["probe"]["prompt_categories"].items():
                kl = value["kl"]
                lines.append(
                    f"| RL β={run['beta']:g} | {category} (KL) | {kl['mean']:.2f} ± {_se(kl['se'])} | {kl['n']} |"
                )
    lines += ["", "Reproduce: `.venv/bin/python experiments/reward_kl_frontier.py --write BENCHMARKS.md`."]
    write_section(path, "reward-kl-frontier", lines)


def _se(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _reading(rows: list[dict[str, Any]]) -> list[str]:
    """Per RL row: the best inference-time control that paid no more KL, and the cheapest that got as far."""
    controls = [r for r in rows if not r["technique"].startswith("RL") and r["technique"] != "base model"]
    lines = []
    for rl in (r for r in rows if r["technique"].startswith("RL")):
        cheaper = [r for r in controls if r["kl"] <= rl["kl"]]
        reaching = [r for r in controls if r["vader"] >= rl["vader"]]
        best = max(cheaper, key=lambda r: r["vader"]) if cheaper else None
        cheapest = min(reaching, key=lambda r: r["kl"]) if reaching else None
        lines.append(
            f"- RL {rl['strength']}: VADER {rl['vader']:.3f} at KL {rl['kl']:.2f}. "
            + (
                f"Best control at KL ≤ {rl['kl']:.2f}: {_name(best)}, {best['vader']:.3f} (KL {best['kl']:.2f}). "
                if best
                else f"No control paid as little as KL {rl['kl']:.2f}. "
            )
            + (
                f"Cheapest control reaching {rl['vader']:.3f}: {_name(cheapest)}, KL {cheapest['kl']:.2f}."
                if cheapest
                else f"No control reached {rl['vader']:.3f}."
            )
        )
    return lines


def _name(row: dict[str, Any]) -> str:
    return f"{row['technique']} {row['strength']}"


def _mean(row: dict[str, Any], key: str, digits: int) -> str:
    """ "0.512 ± 0.031" (the standard error where the row has one)."""
    se = row.get(f"{key}_se")
    return f"{row[key]:.{digits}f}" + ("" if se is None else f" ± {se:.{digits}f}")


if __name__ == "__main__":
    main()

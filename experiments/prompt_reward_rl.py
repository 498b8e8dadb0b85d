"""Experiment 2 of the fine-tuning issue: the prompt as a reward, trained with RL.

Run: `python experiments/prompt_reward_rl.py --write BENCHMARKS.md`. For fixed tokens y_S, RL with
r = λ·Σ_{i∈S} δ(x_i, y_i) and β = 1 (`steering.recipes.prompt_reward_training`) at several λ; each trained
policy q against the prompt's conditional π(· | x_S = y_S): the share of q's samples satisfying the
fixed tokens and KL(conditional ‖ q), next to the same numbers for RL's optimum, the soft target
π·exp(λ·Σδ)/Z (`condition.prompt_as_reward`). tiny-letters: everything enumerated exactly. gemma-270m:
sampled — 64 policy samples for the share, 64 importance samples of the conditional (ForceTokens
proposal, exact weights) scored under q for the KL; the target's numbers by importance sampling too.
The gemma condition is one the base meets now and then (on-policy RL cannot learn from a condition it
never samples; see the module docstring).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from steering.condition import prompt_as_reward
from steering.eval.report import line_chart_svg
from steering.models import load_model
from steering.recipes.prompt_reward_training import train_prompt_as_reward

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # common.py
from common import machine, machine_line, write_section

RESULTS = Path(__file__).parent / "results"
STRENGTHS = (0.0, 1.0, 2.0, 4.0, 8.0)
TINY = {"model": "tiny-letters", "prompt": "ab", "spans": {1: "c", 3: "a"}, "tokens": 4}
TINY_RL = {"batch_size": 4, "samples_per_prompt": 16, "epochs": 150, "learning_rate": 1e-2, "lora_rank": 8}
GEMMA = {"model": "gemma-270m", "prompt": "Once upon a time", "spans": {1: " there"}, "tokens": 8}
GEMMA_RL = {"batch_size": 4, "samples_per_prompt": 8, "epochs": 24, "learning_rate": 1e-4}


def _run(setup: dict[str, Any], rl: dict[str, Any], *, exact: bool, samples: int, out: Path) -> list[dict]:
    model = load_model(setup["model"], dtype="float32")
    started = time.perf_counter()
    target = prompt_as_reward(
        model,
        setup["prompt"],
        setup["spans"],
        STRENGTHS,
        max_new_tokens=setup["tokens"],
        exact=exact,
        n=samples,
    )
    trained = train_prompt_as_reward(
        model,
        setup["prompt"],
        setup["spans"],
        STRENGTHS,
        out_dir=out / setup["model"],
        max_new_tokens=setup["tokens"],
        exact=exact,
        samples=samples,
        rl=rl,
    )
    print(f"{setup['model']}: {time.perf_counter() - started:.0f} s", flush=True)
    return [
        {
            "strength": t.strength,
            "target_satisfied": g.satisfied,
            "target_kl_to_conditional": g.kl_to_conditional,
            "policy_satisfied": t.satisfied,
            "policy_kl_to_conditional": t.kl_to_conditional,
            "policy_kl_to_target": t.kl_to_target,
            "policy_kl_to_base": t.kl_to_base,
            "steps": t.steps,
            "method": t.method,
        }
        for g, t in zip(target, trained, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("runs/prompt-reward-rl"))
    parser.add_argument("--write", type=Path, help="update this markdown file's section")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    saved = {
        "machine": machine(),
        "samples": args.samples,
        "tiny": {
            "setup": TINY,
            "rl": TINY_RL,
            "rows": _run(TINY, TINY_RL, exact=True, samples=args.samples, out=args.out),
        },
        "gemma": {
            "setup": GEMMA,
            "rl": GEMMA_RL,
            "rows": _run(GEMMA, GEMMA_RL, exact=False, samples=args.samples, out=args.out),
        },
    }
    saved["wall_s"] = time.perf_counter() - started
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prompt_reward_rl.json").write_text(json.dumps(saved, indent=1, default=str))
    (RESULTS / "prompt_reward_rl.svg").write_text(chart(saved))
    if args.write:
        write_markdown(args.write, saved)


def chart(saved: dict[str, Any]) -> str:
    labels = [f"{s:g}" for s in STRENGTHS]
    return line_chart_svg(
        labels,
        {
            "tiny: target_λ (exact)": [r["target_satisfied"] for r in saved["tiny"]["rows"]],
            "tiny: RL policy (exact)": [r["policy_satisfied"] for r in saved["tiny"]["rows"]],
            "gemma: target_λ (estimated)": [r["target_satisfied"] for r in saved["gemma"]["rows"]],
            "gemma: RL policy (sampled)": [r["policy_satisfied"] for r in saved["gemma"]["rows"]],
        },
        title="Prompt as reward, trained: share satisfying the fixed tokens against λ",
        y_label="fraction satisfying",
    )


def _f(value: Any, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _table(rows: list[dict[str, Any]], exact: bool) -> list[str]:
    lines = [
        "| λ | target_λ: share satisfying | KL(conditional ‖ target_λ) | RL policy: share satisfying "
        "| KL(conditional ‖ policy) | KL(policy ‖ base) | "
        + ("KL(policy ‖ target_λ) | " if exact else "")
        + "RL steps |",
        "|---|---|---|---|---|---|" + ("---|" if exact else "") + "---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['strength']:g} | {_f(r['target_satisfied'])} | {_f(r['target_kl_to_conditional'])} "
            f"| {_f(r['policy_satisfied'])} | {_f(r['policy_kl_to_conditional'])} | {_f(r['policy_kl_to_base'])} | "
            + (f"{_f(r['policy_kl_to_target'])} | " if exact else "")
            + f"{r['steps']} |"
        )
    return lines


def write_markdown(path: Path, saved: dict[str, Any]) -> None:
    tiny, gemma = saved["tiny"], saved["gemma"]
    lines = [
        "## Prompt as reward, trained with RL (`experiments/prompt_reward_rl.py`)",
        "",
        f"{machine_line(saved['machine'])}; one run, {saved['wall_s'] / 60:.1f} min. RL with r = λ·Σ_{{i∈S}} δ(x_i, y_i), "
        "β = 1 (so RL's optimum is the soft target π·exp(λ·Σδ)/Z), LoRA in float32, RLOO baseline; λ = 0 is the base "
        "itself. The prompt's own answer is the conditional: share 1, KL 0.",
        "",
        "![share satisfying against λ](experiments/results/prompt_reward_rl.svg)",
        "",
        f"**tiny-letters**, exact (every completion enumerated): prompt {tiny['setup']['prompt']!r}, fixed "
        f"{tiny['setup']['spans']} within {tiny['setup']['tokens']} tokens; RL {tiny['rl']}.",
        "",
        *_table(tiny["rows"], exact=True),
        "",
        f"**gemma-270m**, sampled ({saved['samples']} policy samples; {saved['samples']} importance samples of the "
        f"conditional and of each target): prompt {gemma['setup']['prompt']!r}, fixed {gemma['setup']['spans']} "
        f"within {gemma['setup']['tokens']} tokens; RL {gemma['rl']}.",
        "",
        *_table(gemma["rows"], exact=False),
        "",
        "Reading: the policies follow their targets toward the conditional as λ grows. On tiny-letters RL "
        "reaches its target for λ ≤ 2 (KL(policy ‖ target_λ) ≈ 0.01) and stalls near 0.7 satisfying for "
        "λ ≥ 4 (more steps, LoRA rank 32, a 3× learning rate or GRPO's scaling did not move it). The stall is "
        "the adapter's reach, not RL: fitting the exact target directly (`experiments/adapter_capacity.py`, no "
        "sampling) the same LoRA also stops at 0.69–0.71 satisfying at any rank, while training every weight "
        "(embeddings and norms included) reaches the target's 0.86/0.997. On "
        "gemma-270m the condition (' there' as the 2nd token, base probability ≈ 0.14) is one the base meets "
        "often enough for on-policy RL to learn from.",
        "",
        "Reproduce: `.venv/bin/python experiments/prompt_reward_rl.py --write BENCHMARKS.md`.",
    ]
    write_section(path, "prompt-reward-rl", lines)


if __name__ == "__main__":
    main()

"""Can the adapter RL trains represent RL's optimum? The prompt-as-reward target fitted directly.

Run: `python experiments/adapter_capacity.py --write BENCHMARKS.md`. On tiny-letters every completion
can be enumerated, so the target π·exp(λ·Σδ)/Z of `experiments/prompt_reward_rl.py` (prompt "ab", fixed
{1: "c", 3: "a"}, 4 tokens) is known exactly, and so is the cross-entropy −Σ_x target(x)·log q(x).
Minimising it by full-batch Adam (no sampling, no REINFORCE variance) gives, for each weight family,
the closest policy it can reach: the LoRA adapter RL trains (`add_lora`, every linear layer, at two
ranks) and every weight of the model. If the LoRA fit stops where RL stopped, the stall is the
adapter's reach, not the RL estimator.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from prompt_reward_rl import TINY

from steering.condition import Target, enumerate_target, fixed_tokens
from steering.models import load_model
from steering.train.adapters import add_lora
from steering.train.batching import Encoded, batch_rows, labelled_logprobs
from steering.train.losses import IGNORE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # common.py
from common import machine, machine_line, write_section

RESULTS = Path(__file__).parent / "results"


def fit(strength: float, family: str, steps: int, learning_rate: float) -> dict[str, Any]:
    """Fit `family` ("lora-8", "lora-32" or "full") to the exact target for λ = `strength`."""
    torch.manual_seed(0)
    model = load_model(TINY["model"], dtype="float32")
    target = enumerate_target(
        Target(
            model,
            TINY["prompt"],
            [fixed_tokens(TINY["spans"], strength=strength)],
            max_new_tokens=TINY["tokens"],
        )
    )
    hard = Target(
        model, TINY["prompt"], [fixed_tokens(TINY["spans"])], max_new_tokens=TINY["tokens"]
    ).resolved[0]
    inside = torch.tensor([hard.matches(c) == len(hard.ids) for c in target.completions])  # type: ignore[attr-defined]
    probs = target.probs.float()
    entropy = float(-(probs * probs.clamp_min(1e-30).log()).sum())
    prompt = model.encode(TINY["prompt"])
    batch = batch_rows(
        [Encoded(prompt + list(c), [IGNORE] * len(prompt) + list(c)) for c in target.completions],
        model.pad_token_id,
    )
    if family == "full":
        params = list(model.module.parameters())
        for p in params:
            p.requires_grad_(True)
    else:
        params = add_lora(
            model, "fit", rank=int(family.split("-")[1]), alpha=2 * int(family.split("-")[1]), dropout=0.0
        )
    model.module.train()
    optimizer = torch.optim.Adam(params, lr=learning_rate)
    for _ in range(steps):
        log_q = labelled_logprobs(model, batch).sum(-1)
        loss = -(probs * log_q).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        log_q = labelled_logprobs(model, batch).sum(-1)
    q = log_q.exp()
    return {
        "strength": strength,
        "family": family,
        "target_share": float(probs[inside].sum()),
        "share": float(q[inside].sum()),
        "kl_target_to_fit": float(-(probs * log_q).sum()) - entropy,
        "trainable": sum(p.numel() for p in params),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--strengths", default="2,4,8")
    parser.add_argument("--steps", type=int, default=800, help="full-batch Adam steps per fit")
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--write", type=Path, help="update this markdown file's section")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = [
        fit(float(s), family, args.steps, args.learning_rate)
        for s in args.strengths.split(",")
        for family in ("lora-8", "lora-32", "full")
    ]
    for row in rows:
        print(row, flush=True)
    saved = {"machine": machine(), "args": vars(args) | {"write": str(args.write)}, "rows": rows}
    saved["wall_s"] = time.perf_counter() - started
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "adapter_capacity.json").write_text(json.dumps(saved, indent=1))
    if args.write:
        write_markdown(args.write, saved)


def write_markdown(path: Path, saved: dict[str, Any]) -> None:
    args = saved["args"]
    labels = {"lora-8": "LoRA rank 8 (what RL trained)", "lora-32": "LoRA rank 32", "full": "every weight"}
    lines = [
        "## Can the adapter reach RL's optimum? (`experiments/adapter_capacity.py`)",
        "",
        f"{machine_line(saved['machine'])}; {saved['wall_s']:.0f} s. tiny-letters, the prompt-as-reward target of "
        f'"Prompt as reward, trained with RL" (prompt {TINY["prompt"]!r}, fixed {TINY["spans"]}, {TINY["tokens"]} tokens), enumerated '
        f"exactly and fitted directly: {args['steps']} full-batch Adam steps at {args['learning_rate']:g} on the "
        "exact cross-entropy −Σ target(x)·log q(x), no sampling. Share = q(fixed tokens in place); KL = "
        "KL(target ‖ fit).",
        "",
        "| λ | weights fitted | parameters | target's share | fit's share | KL(target ‖ fit) |",
        "|---|---|---|---|---|---|",
    ]
    for r in saved["rows"]:
        lines.append(
            f"| {r['strength']:g} | {labels[r['family']]} | {r['trainable']:,} | {r['target_share']:.3f} "
            f"| {r['share']:.3f} | {r['kl_target_to_fit']:.3f} |"
        )
    lines += [
        "",
        "Reproduce: `.venv/bin/python experiments/adapter_capacity.py --write BENCHMARKS.md`.",
    ]
    write_section(path, "adapter-capacity", lines)


if __name__ == "__main__":
    main()

"""SFT side by side: `steering.train.train_sft` against TRL's `SFTTrainer`, same model, data and LoRA.

Run: `python benchmarks/training.py --write BENCHMARKS.md` (HF_HUB_OFFLINE=1; needs `pip install trl`).

Each trainer × model runs in its own subprocess (so peak memory is its own), after loading the model
with `load_model(name, dtype="float32")` — TRL gets that same `.module` and `.tokenizer`. Both train a
LoRA adapter on every linear layer (same rank, alpha, dropout), fp32 on the CPU, batch 8, gradient
accumulation 1, the same learning rate, max length, loss on the completion tokens only, no eval, no
checkpoint during the steps, logging every step. TRL is told `gradient_checkpointing=False` and
`bf16=False` (its defaults are True; ours does neither).

Time per step: the wall-clock time between the ends of consecutive optimizer steps (our `progress`
callback, TRL's `on_step_end`), so both include fetching and collating the batch, forward, backward,
clipping, the optimizer step and the per-step log; model loading and tokenisation are excluded. The
first `--warmup` steps are dropped; the median of the rest (pooled over `--repeats` runs) is reported.
For ours, `metrics.jsonl` also gives the time inside the step alone (tokens / tokens_per_s).
Peak memory: the subprocess's peak resident set (ru_maxrss), model loading included, and the resident
set after loading.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import machine, machine_line, write_section

TRAINERS = ("ours", "trl")
MB = 1024 * 1024


def rows(count: int) -> list[dict[str, str]]:
    return [{"prompt": f"Q: What is {i} plus {i}?\nA:", "completion": f" {2 * i}."} for i in range(count)]


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MB


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_ours(args: argparse.Namespace, data: list[dict[str, str]], tmp: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    from steering.models import load_model
    from steering.train import SFTConfig, train_sft

    model = load_model(args.model, dtype="float32")
    loaded = rss_mb()
    path = tmp / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in data))
    config = SFTConfig(
        data=str(path),
        model=args.model,
        out=str(tmp / "run"),
        lora_rank=args.rank,
        lora_alpha=2 * args.rank,
        lora_dropout=0.05,
        learning_rate=args.lr,
        warmup_steps=0,
        epochs=1000,
        max_steps=args.steps,
        batch_size=args.batch,
        max_length=args.max_length,
        eval_fraction=0.0,
        save_every=10**9,
    )
    ends: list[float] = []
    result = train_sft(config, model=model, progress=lambda *_: ends.append(time.perf_counter()))
    # the adapter is removed after training; count its parameters from the saved file
    trainable = sum(t.numel() for t in load_file(str(result.adapter / "adapter_model.safetensors")).values())
    metrics = [m for m in result.metrics if "tokens_per_s" in m]
    return {
        "ends": ends,
        "in_step": [m["tokens"] / m["tokens_per_s"] for m in metrics],
        "tokens": sum(m["tokens"] for m in metrics),
        "losses": [m["loss"] for m in metrics],
        "trainable": trainable,
        "loaded_mb": loaded,
    }


def run_trl(args: argparse.Namespace, data: list[dict[str, str]], tmp: Path) -> dict[str, Any]:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from steering.models import load_model

    model = load_model(args.model, dtype="float32")
    loaded = rss_mb()
    ends: list[float] = []

    class StepEnds(TrainerCallback):
        def on_step_end(self, *_: Any, **__: Any) -> None:
            ends.append(time.perf_counter())

    config = SFTConfig(
        output_dir=str(tmp / "trl"),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1,
        learning_rate=args.lr,
        lr_scheduler_type="cosine",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        max_length=args.max_length,
        completion_only_loss=True,  # the default (None) for prompt/completion rows; stated
        packing=False,
        padding_free=False,
        gradient_checkpointing=False,
        bf16=False,
        fp16=False,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    lora = LoraConfig(
        r=args.rank,
        lora_alpha=2 * args.rank,
        lora_dropout=0.05,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=model.module,
        args=config,
        train_dataset=Dataset.from_list(data),
        processing_class=model.tokenizer,
        peft_config=lora,
        callbacks=[StepEnds()],
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "ends": ends,
        "tokens": int(logs[-1]["num_tokens"]) if logs else 0,
        "losses": [h["loss"] for h in logs],
        "trainable": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "optimizer": type(trainer.optimizer).__name__,
        "loaded_mb": loaded,
    }


def child(args: argparse.Namespace) -> None:
    data = rows(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        run = run_ours if args.child == "ours" else run_trl
        result = run(args, data, Path(tmp))
    result["step_s"] = [b - a for a, b in zip(result["ends"], result["ends"][1:], strict=False)]
    result["peak_mb"] = peak_mb()
    Path(args.out).write_text(json.dumps(result))


def spawn(trainer: str, model: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, __file__, "--child", trainer, "--model", model, "--out", out.name]
        for name in ("steps", "rows", "batch", "max_length", "rank", "lr"):
            command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        subprocess.run(command, check=True, env=env)
        return json.loads(Path(out.name).read_text())


def benchmark(args: argparse.Namespace) -> list[dict[str, Any]]:
    table = []
    for model in args.models.split(","):
        runs: dict[str, list[dict[str, Any]]] = {t: [] for t in TRAINERS}
        for repeat in range(args.repeats):
            for trainer in TRAINERS if repeat % 2 == 0 else TRAINERS[::-1]:  # alternate who goes first
                runs[trainer].append(spawn(trainer, model, args))
        for trainer, results in runs.items():
            # step_s[i] is step i + 2 (1-based): drop steps 1..warmup
            timed = [s for r in results for s in r["step_s"][max(0, args.warmup - 1) :]]
            in_step = [s for r in results for s in r.get("in_step", [])[args.warmup :]]
            row = {
                "model": model,
                "trainer": trainer,
                "s_per_step": statistics.median(timed),
                "in_step_s": statistics.median(in_step) if in_step else None,
                "timed_steps": len(timed),
                "peak_mb": max(r["peak_mb"] for r in results),
                "loaded_mb": max(r["loaded_mb"] for r in results),
                "tokens": results[0]["tokens"],
                "first_loss": results[0]["losses"][0] if results[0]["losses"] else None,
                "trainable": results[0]["trainable"],
            }
            table.append(row)
            print(row, flush=True)
        table[-2]["vs_trl"] = table[-2]["s_per_step"] / table[-1]["s_per_step"]
        table[-1]["vs_trl"] = 1.0
    return table


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("trl", "transformers", "peft", "torch", "datasets")}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="tiny-random,gemma-270m")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per run (warm-up included)")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing")
    parser.add_argument("--repeats", type=int, default=2, help="runs per trainer × model (order alternates)")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--write", type=Path, help="update this markdown file's training section")
    parser.add_argument("--child", choices=TRAINERS, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    result = {"table": benchmark(args), "machine": machine(), "versions": versions(), "args": vars(args)}
    result["args"] = {k: str(v) for k, v in vars(args).items() if k not in ("child", "model", "out")}
    print(f"\n{'model':<12} {'trainer':<7} {'s/step':>8} {'in-step s':>9} {'peak MB':>8} {'loaded MB':>9}")
    for r in result["table"]:
        in_step = f"{r['in_step_s']:.3f}" if r["in_step_s"] else "–"
        print(
            f"{r['model']:<12} {r['trainer']:<7} {r['s_per_step']:>8.3f} {in_step:>9} "
            f"{r['peak_mb']:>8.0f} {r['loaded_mb']:>9.0f}"
        )
    out = Path(__file__).parent / "results" / "training.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    if args.write:
        write_section(args.write, "training", _markdown(result, args))


def _markdown(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    v = result["versions"]
    lines = [
        "## SFT: ours against TRL's SFTTrainer (`benchmarks/training.py`)",
        "",
        f"{machine_line(result['machine'])}; trl {v['trl']}, peft {v['peft']}. LoRA rank {args.rank} (alpha "
        f"{2 * args.rank}, dropout 0.05) on every linear layer, fp32, batch {args.batch}, gradient accumulation 1, "
        f"max length {args.max_length}, learning rate {args.lr:g}, loss on the completion only; {args.rows} rows "
        '"Q: What is i plus i?\\nA:" → " 2i.". Each trainer gets the module and tokenizer of '
        '`load_model(name, dtype="float32")`; TRL with `gradient_checkpointing=False, bf16=False`, no eval, no '
        "saving, logging every step.",
        "",
        f"Seconds per optimizer step: median of {args.repeats} runs × {args.steps - args.warmup} steps (the first "
        f"{args.warmup} of each run left out), wall time between the ends of consecutive steps (batch, forward, "
        "backward, optimizer, per-step log; no loading). In-step: ours' own `metrics.jsonl` time for the step "
        "alone. Peak MB: the subprocess's peak resident set, model loading included.",
        "",
        "| model | trainer | s/step | in-step s | vs TRL | peak MB | MB after loading |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["table"]:
        in_step = f"{r['in_step_s']:.3f}" if r["in_step_s"] else "–"
        lines.append(
            f"| {r['model']} | {r['trainer']} | {r['s_per_step']:.3f} | {in_step} | {r['vs_trl']:.2f}× | "
            f"{r['peak_mb']:.0f} | {r['loaded_mb']:.0f} |"
        )
    pairs = [result["table"][i : i + 2] for i in range(0, len(result["table"]), 2)]
    lines += [
        "",
        "Same work on both sides, checked: "
        + "; ".join(
            f"{o['model']}: {o['tokens']} vs {t['tokens']} tokens per run, first-step loss {o['first_loss']:.4f} vs "
            f"{t['first_loss']:.4f}, {o['trainable']:,} vs {t['trainable']:,} LoRA parameters"
            for o, t in pairs
        )
        + " (ours vs TRL).",
    ]
    ratios = {r["model"]: r["vs_trl"] for r in result["table"] if r["trainer"] == "ours"}
    held = all(x <= 1.0 for x in ratios.values())
    lines += [
        "",
        "Bar: ours ≤ 1.0× TRL's time per step for SFT — "
        + ("**held**" if held else "**not held**")
        + " ("
        + ", ".join(f"{m}: {x:.2f}×" for m, x in ratios.items())
        + ").",
        "",
        "Reproduce: `.venv/bin/pip install trl` (adds trl, datasets, pandas, pyarrow; torch, transformers and peft "
        "unchanged), then `HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/training.py --write BENCHMARKS.md`.",
    ]
    return lines


if __name__ == "__main__":
    main()

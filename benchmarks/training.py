"""SFT and DPO side by side: `steering.train` against TRL's `SFTTrainer` and `DPOTrainer`, same model, data and LoRA.

Run: `python benchmarks/training.py --write BENCHMARKS.md` (HF_HUB_OFFLINE=1; needs `pip install trl`).

Each trainer × model runs in its own subprocess (so peak memory is its own), after loading the model
with `load_model(name, dtype="float32")` — TRL gets that same `.module` and `.tokenizer`. Both train a
LoRA adapter on every linear layer (same rank, alpha, dropout), fp32 on the CPU, batch 8, gradient
accumulation 1, the same learning rate, max length, no eval, no checkpoint during the steps, logging
every step. TRL is told `gradient_checkpointing=False` and `bf16=False` (its defaults are True; ours does
neither).

SFT: `train_sft` against `SFTTrainer`, loss on the completion tokens only.

DPO: `train_dpo` against `DPOTrainer` (β, loss "dpo" = TRL's "sigmoid"), 8 pairs per step (one forward
over the 16 chosen + rejected sequences), `peft_config` with a plain model on TRL's side, so both take
the reference as the same weights with the adapter disabled. Ours computes the reference log-probs once
before training; TRL runs twice: `precompute_ref_log_probs=True` (the same work as ours) and its default
(a no-grad reference forward with the adapter disabled in every step). TRL is told
`disable_dropout=False` (its default True would zero the LoRA dropout ours applies). The pairs are short
("Q: Is i even?\\nA:" → " yes"/" no", i two-digit, so every pair has as many tokens and no sequence
reaches max length: neither side truncates), and both sides tokenise them to the same ids (checked: the
sums of the precomputed reference log-probs agree). The reference pass before training is timed
apart ("precompute s") and is not in the per-step time.

Time per step: the wall-clock time between the ends of consecutive optimizer steps (our `progress`
callback, TRL's `on_step_end`), so both include fetching and collating the batch, forward(s), backward,
clipping, the optimizer step and the per-step log; model loading, tokenisation and the reference
precompute are excluded. The first `--warmup` steps are dropped; the median of the rest (pooled over
`--repeats` runs) is reported. For ours, `metrics.jsonl` also gives the time inside the step alone
(tokens / tokens_per_s). Peak memory: the subprocess's peak resident set (ru_maxrss), model loading
included, and the resident set after loading.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

from common import machine, machine_line, write_section
from harness import rss_mb, run_child, spawn, trl_arguments, trl_callback, versions

TRAINERS = {"sft": ("ours", "trl"), "dpo": ("ours", "trl-pre", "trl")}
BASELINE = {"sft": "trl", "dpo": "trl-pre"}  # the TRL run that does the same work as ours
LABELS = {
    ("sft", "ours"): "ours",
    ("sft", "trl"): "TRL",
    ("dpo", "ours"): "ours (reference precomputed)",
    ("dpo", "trl-pre"): "TRL, precompute_ref_log_probs=True",
    ("dpo", "trl"): "TRL default (reference forward each step)",
}
CHILDREN = [f"{m}:{t}" for m, ts in TRAINERS.items() for t in ts]


def rows(count: int) -> list[dict[str, str]]:
    return [{"prompt": f"Q: What is {i} plus {i}?\nA:", "completion": f" {2 * i}."} for i in range(count)]


def pairs(count: int) -> list[dict[str, str]]:
    """Preference pairs of equal token counts (i has two digits): the right answer chosen, the wrong rejected."""
    assert count <= 90, "two-digit numbers only"
    answers = [" yes", " no"]
    return [
        {"prompt": f"Q: Is {i} even?\nA:", "chosen": answers[i % 2], "rejected": answers[1 - i % 2]}
        for i in range(10, 10 + count)
    ]


def trl_lora(args: argparse.Namespace) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=args.rank,
        lora_alpha=2 * args.rank,
        lora_dropout=0.05,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def trl_common(args: argparse.Namespace, tmp: Path, lr: float) -> dict[str, Any]:
    """TrainingArguments shared by both TRL trainers: the harness's, plus batch and max length."""
    return {
        **trl_arguments(tmp, steps=args.steps, learning_rate=lr),
        "per_device_train_batch_size": args.batch,
        "max_length": args.max_length,
    }


def run_sft_ours(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    from steering.models import load_model
    from steering.train import SFTConfig, train_sft

    model = load_model(args.model, dtype="float32")
    loaded = rss_mb()
    path = tmp / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows(args.rows)))
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
        "step_tokens": [m["tokens"] for m in metrics],
        "losses": [m["loss"] for m in metrics],
        "trainable": trainable,
        "loaded_mb": loaded,
    }


def run_sft_trl(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from steering.models import load_model

    model = load_model(args.model, dtype="float32")
    loaded = rss_mb()
    ends: list[float] = []
    config = SFTConfig(
        **trl_common(args, tmp, args.lr),
        completion_only_loss=True,  # the default (None) for prompt/completion rows; stated
        packing=False,
        padding_free=False,
    )
    trainer = SFTTrainer(
        model=model.module,
        args=config,
        train_dataset=Dataset.from_list(rows(args.rows)),
        processing_class=model.tokenizer,
        peft_config=trl_lora(args),
        callbacks=[trl_callback(ends)],
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "ends": ends,
        "tokens": int(logs[-1]["num_tokens"]) if logs else 0,
        "step_tokens": _deltas([int(h["num_tokens"]) for h in logs]),
        "losses": [h["loss"] for h in logs],
        "trainable": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "optimizer": type(getattr(trainer.optimizer, "optimizer", trainer.optimizer)).__name__,
        "loaded_mb": loaded,
    }


def _deltas(cumulative: list[int]) -> list[int]:
    return [b - a for a, b in zip([0, *cumulative], cumulative, strict=False)]


def run_dpo_ours(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    import steering.train.dpo as dpo
    from steering.models import load_model
    from steering.train import DPOConfig, train_dpo

    # Time the reference precompute (DPO.encode: tokenising + the no-grad reference forwards) and read
    # the reference log-probs it computed, by wrapping the two functions in this subprocess only.
    timing = {"encode_s": 0.0, "tokenise_s": 0.0, "reference_sum": 0.0, "pairs": 0}
    encode, encode_one = dpo.DPO.encode, dpo.encode_completion

    def timed_encode(self: Any, *a: Any, **k: Any) -> Any:
        started = time.perf_counter()
        result = encode(self, *a, **k)
        timing["encode_s"] += time.perf_counter() - started
        timing["reference_sum"] += sum(r.reference_chosen + r.reference_rejected for r in result)
        timing["pairs"] += len(result)
        return result

    def timed_encode_one(*a: Any, **k: Any) -> Any:
        started = time.perf_counter()
        result = encode_one(*a, **k)
        timing["tokenise_s"] += time.perf_counter() - started
        return result

    dpo.DPO.encode, dpo.encode_completion = timed_encode, timed_encode_one  # type: ignore[method-assign]

    model = load_model(args.model, dtype="float32")
    loaded = rss_mb()
    path = tmp / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in pairs(args.rows)))
    config = DPOConfig(
        data=str(path),
        model=args.model,
        out=str(tmp / "run"),
        lora_rank=args.rank,
        lora_alpha=2 * args.rank,
        lora_dropout=0.05,
        learning_rate=args.dpo_lr,
        warmup_steps=0,
        epochs=1000,
        max_steps=args.steps,
        batch_size=args.batch,
        grad_accum=1,
        max_length=args.max_length,
        eval_fraction=0.0,
        save_every=10**9,
        beta=args.beta,
        loss="dpo",
    )
    ends: list[float] = []
    result = train_dpo(config, model=model, progress=lambda *_: ends.append(time.perf_counter()))
    trainable = sum(t.numel() for t in load_file(str(result.adapter / "adapter_model.safetensors")).values())
    metrics = [m for m in result.metrics if "tokens_per_s" in m]
    return {
        "ends": ends,
        "in_step": [m["tokens"] / m["tokens_per_s"] for m in metrics],
        "tokens": sum(m["tokens"] for m in metrics),
        "step_tokens": [m["tokens"] for m in metrics],
        "losses": [m["loss"] for m in metrics],
        "trainable": trainable,
        "loaded_mb": loaded,
        "precompute_s": timing["encode_s"] - timing["tokenise_s"],
        "tokenise_s": timing["tokenise_s"],
        "reference_sum": timing["reference_sum"],
        "pairs": timing["pairs"],
    }


def run_dpo_trl(args: argparse.Namespace, tmp: Path, precompute: bool) -> dict[str, Any]:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from steering.models import load_model

    timing = {"precompute_s": 0.0}
    original = DPOTrainer._precompute_ref_logps

    def timed(self: Any, *a: Any, **k: Any) -> Any:
        started = time.perf_counter()
        result = original(self, *a, **k)
        timing["precompute_s"] += time.perf_counter() - started
        return result

    DPOTrainer._precompute_ref_logps = timed  # type: ignore[method-assign]

    model = load_model(args.model, dtype="float32")
    loaded = rss_mb()
    ends: list[float] = []
    config = DPOConfig(
        **trl_common(args, tmp, args.dpo_lr),
        beta=args.beta,
        loss_type=["sigmoid"],
        precompute_ref_log_probs=precompute,
        precompute_ref_batch_size=args.batch,  # ours: the reference pass in batches of `batch` pairs
        disable_dropout=False,  # ours keeps the LoRA dropout on
        truncation_mode="keep_start",  # ours cuts from the right; nothing reaches max_length here anyway
        padding_free=False,
    )
    trainer = DPOTrainer(
        model=model.module,
        ref_model=None,  # with peft_config: the reference is the model with the adapter disabled
        args=config,
        train_dataset=Dataset.from_list(pairs(args.rows)),
        processing_class=model.tokenizer,
        peft_config=trl_lora(args),
        callbacks=[trl_callback(ends)],
    )
    dataset = trainer.train_dataset
    longest = max(len(r["prompt_ids"]) + max(len(r["chosen_ids"]), len(r["rejected_ids"])) for r in dataset)
    reference_sum = (
        float(sum(dataset["ref_chosen_logps"]) + sum(dataset["ref_rejected_logps"])) if precompute else None
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "ends": ends,
        "tokens": int(logs[-1]["num_tokens"]) if logs else 0,
        "step_tokens": _deltas([int(h["num_tokens"]) for h in logs]),
        "losses": [h["loss"] for h in logs],
        "trainable": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "optimizer": type(getattr(trainer.optimizer, "optimizer", trainer.optimizer)).__name__,
        "loaded_mb": loaded,
        "precompute_s": timing["precompute_s"] if precompute else None,
        "reference_sum": reference_sum,
        "pairs": len(dataset),
        "longest": longest,
    }


RUNS = {
    "sft:ours": run_sft_ours,
    "sft:trl": run_sft_trl,
    "dpo:ours": run_dpo_ours,
    "dpo:trl-pre": lambda a, t: run_dpo_trl(a, t, precompute=True),
    "dpo:trl": lambda a, t: run_dpo_trl(a, t, precompute=False),
}
OPTIONS = ("steps", "rows", "batch", "max_length", "rank", "lr", "dpo_lr", "beta")


def steps_for(model: str, args: argparse.Namespace) -> int:
    """Optimizer steps per run: `--tiny-steps` for tiny-random (~15 ms a step: more of them for a
    stable median), `--steps` for every other model."""
    return args.tiny_steps if model == "tiny-random" else args.steps


def benchmark(method: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    trainers = TRAINERS[method]
    table = []
    for model in args.models.split(","):
        runs: dict[str, list[dict[str, Any]]] = {t: [] for t in trainers}
        per_model = argparse.Namespace(**{**vars(args), "steps": steps_for(model, args)})
        for repeat in range(args.repeats):
            shift = repeat % len(trainers)  # rotate who goes first
            for trainer in trainers[shift:] + trainers[:shift]:
                runs[trainer].append(spawn(__file__, f"{method}:{trainer}", model, per_model, OPTIONS))
        block = []
        for trainer, results in runs.items():
            # step_s[i] is step i + 2 (1-based): drop steps 1..warmup
            timed = [s for r in results for s in r["step_s"][max(0, args.warmup - 1) :]]
            in_step = [s for r in results for s in r.get("in_step", [])[args.warmup :]]
            precompute = [r["precompute_s"] for r in results if r.get("precompute_s") is not None]
            first = results[0]
            row = {
                "method": method,
                "model": model,
                "trainer": trainer,
                "s_per_step": statistics.median(timed),
                "in_step_s": statistics.median(in_step) if in_step else None,
                "timed_steps": len(timed),
                "precompute_s": statistics.median(precompute) if precompute else None,
                "peak_mb": max(r["peak_mb"] for r in results),
                "loaded_mb": max(r["loaded_mb"] for r in results),
                "tokens": first["tokens"],
                "step_tokens": sorted(set(first["step_tokens"])),
                "first_loss": first["losses"][0] if first["losses"] else None,
                "first_losses": [r["losses"][0] for r in results if r["losses"]],
                "trainable": first["trainable"],
                "pairs": first.get("pairs"),
                "reference_sum": first.get("reference_sum"),
                "longest": first.get("longest"),
                "optimizer": first.get("optimizer"),
            }
            block.append(row)
        for row in block:
            for other in block:
                if other["trainer"] != "ours":
                    row[f"vs_{other['trainer']}"] = row["s_per_step"] / other["s_per_step"]
            print(row, flush=True)
        table += block
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="tiny-random,gemma-270m")
    parser.add_argument("--methods", default="sft,dpo")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per run (warm-up included)")
    parser.add_argument("--tiny-steps", type=int, default=40, help="the same for tiny-random")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing")
    parser.add_argument("--repeats", type=int, default=2, help="runs per trainer × model (order rotates)")
    parser.add_argument("--rows", type=int, default=64, help="SFT rows; DPO pairs")
    parser.add_argument("--batch", type=int, default=8, help="SFT rows / DPO pairs per step")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4, help="SFT learning rate")
    parser.add_argument("--dpo-lr", type=float, default=1e-4, help="DPO learning rate")
    parser.add_argument("--beta", type=float, default=0.1, help="DPO β")
    parser.add_argument("--write", type=Path, help="update this markdown file's training section")
    parser.add_argument("--child", choices=CHILDREN, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(RUNS[args.child], args)
        return
    if args.warmup < 1 or min(args.steps, args.tiny_steps) < args.warmup + 1:
        parser.error(
            "need --warmup ≥ 1 and --steps, --tiny-steps > --warmup (the first step has no start time)"
        )
    methods = args.methods.split(",")
    result: dict[str, Any] = {m: benchmark(m, args) for m in methods}
    result.update(machine=machine(), versions=versions())
    result["args"] = {k: str(v) for k, v in vars(args).items() if k not in ("child", "model", "out")}
    print(f"\n{'method':<6} {'model':<12} {'trainer':<8} {'s/step':>8} {'in-step s':>9} {'precomp s':>9} "
          f"{'peak MB':>8} {'loaded MB':>9}")  # fmt: skip
    for method in methods:
        for r in result[method]:
            print(
                f"{method:<6} {r['model']:<12} {r['trainer']:<8} {r['s_per_step']:>8.3f} {_opt(r['in_step_s']):>9} "
                f"{_opt(r['precompute_s']):>9} {r['peak_mb']:>8.0f} {r['loaded_mb']:>9.0f}"
            )
    out = Path(__file__).parent / "results" / "training.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    if args.write:
        write_section(args.write, "training", _markdown(result, args))


def _opt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _bar(method: str, table: list[dict[str, Any]]) -> str:
    baseline = BASELINE[method]
    ratios = {r["model"]: r[f"vs_{baseline}"] for r in table if r["trainer"] == "ours"}
    held = all(x <= 1.0 for x in ratios.values())
    against = (
        "TRL's" if method == "sft" else "TRL's (with `precompute_ref_log_probs=True`, the same work as ours)"
    )
    return (
        f"Bar: ours ≤ 1.0× {against} time per step for {method.upper()} — "
        + ("**held**" if held else "**not held**")
        + " ("
        + ", ".join(f"{m}: {x:.2f}×" for m, x in ratios.items())
        + ")."
    )


def _markdown(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    v = result["versions"]
    lines = [
        "## SFT and DPO: ours against TRL's SFTTrainer and DPOTrainer (`benchmarks/training.py`)",
        "",
        f"{machine_line(result['machine'])}; trl {v['trl']}, peft {v['peft']}. Common to both: LoRA rank "
        f"{args.rank} (alpha {2 * args.rank}, dropout 0.05) on every linear layer, fp32, batch {args.batch}, "
        f"gradient accumulation 1, max length {args.max_length}, AdamW with cosine decay and no warm-up, gradient "
        'clipping at 1.0. Each trainer gets the module and tokenizer of `load_model(name, dtype="float32")` in '
        "its own subprocess; TRL with `gradient_checkpointing=False, bf16=False`, no eval, no saving, logging every "
        "step.",
        "",
        f"Seconds per optimizer step: median of {args.repeats} runs × {args.steps - args.warmup} steps "
        f"({args.tiny_steps - args.warmup} for tiny-random, whose steps take milliseconds; the first "
        f"{args.warmup} of each run left out; the order of the trainers rotates between runs), wall time between "
        "the ends of consecutive steps (batch, forward(s), backward, optimizer, per-step log; no loading, no "
        "tokenising, no reference precompute). In-step: ours' own `metrics.jsonl` time for the step alone. "
        "Peak MB: the subprocess's peak resident set, model loading included.",
    ]
    if "sft" in result:
        table = result["sft"]
        lines += [
            "",
            "### SFT",
            "",
            f"Learning rate {args.lr:g}, loss on the completion only; {args.rows} rows "
            '"Q: What is i plus i?\\nA:" → " 2i.".',
            "",
            "| model | trainer | s/step | in-step s | vs TRL | peak MB | MB after loading |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in table:
            lines.append(
                f"| {r['model']} | {LABELS['sft', r['trainer']]} | {r['s_per_step']:.3f} | {_opt(r['in_step_s'])} "
                f"| {r['vs_trl']:.2f}× | {r['peak_mb']:.0f} | {r['loaded_mb']:.0f} |"
            )
        pairs_ = [table[i : i + 2] for i in range(0, len(table), 2)]
        lines += [
            "",
            "Same work on both sides, checked: "
            + "; ".join(
                f"{o['model']}: {o['tokens']} vs {t['tokens']} tokens per run, first-step loss "
                f"{o['first_loss']:.4f} vs {t['first_loss']:.4f}, {o['trainable']:,} vs {t['trainable']:,} LoRA "
                "parameters"
                for o, t in pairs_
            )
            + " (ours vs TRL).",
            "",
            _bar("sft", table),
        ]
    if "dpo" in result:
        table = result["dpo"]
        lines += [
            "",
            "### DPO",
            "",
            f'β {args.beta:g}, loss DPO (−log σ(β·margin); TRL `loss_type="sigmoid"`), learning rate '
            f"{args.dpo_lr:g}, {args.batch} pairs per step (one forward over the {2 * args.batch} chosen + rejected "
            f'sequences); {args.rows} pairs "Q: Is i even?\\nA:" → chosen " yes"/" no" (the right answer), '
            "rejected the other, i = 10…"
            f"{9 + args.rows} (every pair the same number of tokens, none near max length, so neither side "
            "truncates). The reference is the base with the LoRA adapter disabled on both sides (TRL: `peft_config` "
            "and a plain model, `ref_model=None`); TRL with `disable_dropout=False` (ours keeps the LoRA dropout). "
            "Ours computes the reference log-probs once before training, in batches of "
            f"{args.batch} pairs; TRL runs twice: with `precompute_ref_log_probs=True` "
            f"(`precompute_ref_batch_size={args.batch}`: the same work as ours, the row the bar compares with) and "
            "with its default, a no-grad reference forward in every step. Precompute s: that reference pass before "
            "training (ours without tokenising), median over runs, not in s/step.",
            "",
            "| model | trainer | s/step | in-step s | vs TRL precomputed | vs TRL default | precompute s | peak MB "
            "| MB after loading |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in table:
            lines.append(
                f"| {r['model']} | {LABELS['dpo', r['trainer']]} | {r['s_per_step']:.3f} | {_opt(r['in_step_s'])} "
                f"| {r['vs_trl-pre']:.2f}× | {r['vs_trl']:.2f}× | {_opt(r['precompute_s'], 2)} | "
                f"{r['peak_mb']:.0f} | {r['loaded_mb']:.0f} |"
            )
        checks = []
        for model in dict.fromkeys(r["model"] for r in table):
            by = {r["trainer"]: r for r in table if r["model"] == model}
            o, p, d = by["ours"], by["trl-pre"], by["trl"]
            checks.append(
                f"{model}: {o['pairs']} vs {p['pairs']} pairs, tokens per step {_join(o['step_tokens'])} vs "
                f"{_join(p['step_tokens'])} vs {_join(d['step_tokens'])} ({o['tokens']} vs {p['tokens']} vs "
                f"{d['tokens']} per run), first-step loss {_losses(o)} vs {_losses(p)} vs {_losses(d)} "
                f"(log 2 = {math.log(2):.4f}), sum of the precomputed reference log-probs {o['reference_sum']:.4f} "
                f"vs {p['reference_sum']:.4f}, {o['trainable']:,} vs {p['trainable']:,} LoRA parameters, longest "
                f"sequence {p['longest']} tokens"
            )
        lines += [
            "",
            "Same work on all sides, checked (ours vs TRL precomputed vs TRL default): "
            + "; ".join(checks)
            + ".",
            "",
            _bar("dpo", table)
            + " Against TRL's default (a reference forward in every step): "
            + ", ".join(f"{r['model']}: {r['vs_trl']:.2f}×" for r in table if r["trainer"] == "ours")
            + ".",
        ]
    lines += [
        "",
        "Reproduce: `.venv/bin/pip install trl` (adds trl, datasets, pandas, pyarrow; torch, transformers and peft "
        "unchanged), then `HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/training.py --write BENCHMARKS.md`.",
    ]
    return lines


def _join(values: list[int]) -> str:
    return "/".join(str(x) for x in values)


def _losses(row: dict[str, Any]) -> str:
    return "/".join(f"{x:.4f}" for x in dict.fromkeys(round(x, 4) for x in row["first_losses"]))


if __name__ == "__main__":
    main()

"""KL-regularised RL side by side: `steering.train.train_rl` against TRL's `RLOOTrainer` and `GRPOTrainer`.

Run: `python benchmarks/training_rl.py --write BENCHMARKS.md` (HF_HUB_OFFLINE=1; needs `pip install trl`).

Each trainer × model runs in its own subprocess (so peak memory is its own), after loading the model
with `load_model(name, dtype="float32")` — TRL gets that same `.module` and `.tokenizer`. Common to all
three: a LoRA adapter on every linear layer (rank 16, alpha 32, dropout 0), fp32 on the CPU, the 8
prompts of `benchmarks/common.py` (so every step samples from the same 8 prompts on every side), 4
samples per prompt (32 rollouts per step, decoded as one batch of 32), at most 32 new tokens, pure
sampling at temperature 1 (no top-k, no top-p), the VADER reward, β = 0.1, one optimizer step per batch
of rollouts (TRL: `num_iterations=1`, gradient accumulation 1, so `steps_per_generation=1`), AdamW with
the same learning rate, cosine decay and no warm-up, gradient clipping at 1.0. TRL is told
`gradient_checkpointing=False` and `bf16=False` (its defaults are True), `use_vllm=False` (it samples with
`model.generate`), and gets `peft_config` with a plain model, so its reference is the same weights with
the adapter disabled, as ours.

What each side computes per step (the methods differ; the benchmark does not hide it):
- ours: samples with the adapter on through the decode engine, which records log q of every sampled
  token as it goes; one teacher-forced pass with the adapter off gives log π (the base books); the KL
  (k1, summed per sequence) enters the reward; leave-one-out advantages; loss −mean(A · log q_θ) with
  one forward + backward of the policy.
- TRL RLOO (the same algorithm): samples with `model.generate`; two no-grad teacher-forced passes, the
  policy (its "old" log-probs, which give the KL) and the reference (adapter off); KL (k1, summed per
  sequence) in the reward; leave-one-out advantages; clipped ratio loss (the ratio is 1 with one update
  per batch) over one forward + backward, which also computes the entropy of every completion position.
- TRL GRPO (its defaults otherwise: `loss_type="dapo"`, `scale_rewards="group"`): samples with
  `model.generate`; one no-grad reference pass; group-normalised advantages; the KL (k3, per token) is a
  term of the loss, over one forward + backward (with the entropy).

Time per step: the wall-clock time between the ends of consecutive optimizer steps (our `progress`
callback, TRL's `on_step_end`), the first `--warmup` steps left out, the median of the rest (pooled over
`--repeats` runs). Each step is split into phases, timed inside the subprocess:
- sampling: ours, the decode engine's loop (`sampling_s` of `metrics.jsonl`: the decoder's own clock,
  `DecodeStats.decode_s`); TRL, its `_generate_single_turn` (left-padding, `model.generate`, the cut
  after EOS; wrapped on the trainer).
- scoring: the no-grad teacher-forced passes for the KL. Ours: `generation_s` of `metrics.jsonl` minus
  sampling (the base pass, plus tokenising and building the samples); TRL: the calls of
  `_get_per_token_logps_and_entropies` made with gradients off (wrapped on the trainer).
- training: the forward + backward of the loss. Ours: `training_s` of `metrics.jsonl`; TRL: its
  `training_step` minus its `_prepare_inputs` (which is where it samples, scores and computes rewards).
- other: the step time minus the three (rewards, advantages, the optimizer step, logging, data).
Generation = sampling + scoring (what ours' `metrics.jsonl` calls `generation_s`); rollout tokens/s =
sampled tokens (EOS included, on both sides) / generation seconds; sampling tokens/s = the same over
the sampling seconds alone. Peak memory: the subprocess's peak resident set (ru_maxrss), model loading
included, and the resident set after loading.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common import PROMPTS, machine, machine_line, write_section
from harness import rss_mb, run_child, spawn, trl_arguments, trl_callback, versions

TRAINERS = ("ours", "trl-rloo", "trl-grpo")
LABELS = {
    "ours": "ours (`train_rl`)",
    "trl-rloo": "TRL `RLOOTrainer`",
    "trl-grpo": "TRL `GRPOTrainer`",
}
PHASES = ("sampling_s", "scoring_s", "training_s")


class StepClock:
    """Seconds and counts per optimizer step: `add("sampling_s", 1.2)` goes to the step now running."""

    def __init__(self) -> None:
        self.ends: list[float] = []  # perf_counter at the end of each optimizer step
        self.steps: defaultdict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def end_step(self, *_: Any) -> None:
        self.ends.append(time.perf_counter())

    def add(self, name: str, value: float) -> None:
        self.steps[len(self.ends)][name] += value

    def timed(self, name: str, function: Callable[..., Any], when: Callable[[], bool] = lambda: True) -> Any:
        """`function`, adding its seconds to `name` for the running step (only calls where `when()` holds)."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not when():
                return function(*args, **kwargs)
            started = time.perf_counter()
            result = function(*args, **kwargs)
            self.add(name, time.perf_counter() - started)
            return result

        return wrapper

    def per_step(self) -> list[dict[str, float]]:
        return [dict(self.steps[i]) for i in range(len(self.ends))]


def rl_lora(args: argparse.Namespace) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=args.rank,
        lora_alpha=2 * args.rank,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def run_ours(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    from steering.eval.sentiment import vader_reward
    from steering.models import load_model
    from steering.train import RLConfig, train_rl

    clock = StepClock()
    model = load_model(args.model, dtype="float32")
    loaded = rss_mb()
    path = tmp / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    config = RLConfig(
        data=str(path),
        model=args.model,
        out=str(tmp / "run"),
        lora_rank=args.rank,
        lora_alpha=2 * args.rank,
        lora_dropout=0.0,
        learning_rate=args.lr,
        warmup_steps=0,
        epochs=10**6,
        max_steps=args.steps,
        batch_size=args.prompts,
        beta=args.beta,
        samples_per_prompt=args.samples,
        max_new_tokens=args.max_new_tokens,
        save_every=10**9,
    )
    result = train_rl(config, reward=vader_reward, model=model, progress=clock.end_step)
    trainable = sum(t.numel() for t in load_file(str(result.adapter / "adapter_model.safetensors")).values())
    metrics = [m for m in result.metrics if "generation_s" in m]
    steps = clock.per_step()
    for step, record in zip(steps, metrics, strict=True):
        step["sampling_s"] = record["sampling_s"]  # the decode loop, timed by the decoder (`DecodeStats`)
        step["scoring_s"] = record["generation_s"] - step["sampling_s"]
        step["training_s"] = record["training_s"]
        step["tokens"] = record["tokens"]
        step["reward"] = record["reward"]
        step["kl"] = record["kl"]
    return {
        "ends": clock.ends,
        "steps": steps,
        "trainable": trainable,
        "prompt_tokens": sorted(len(model.encode(p)) for p in PROMPTS),
        "optimizer": "AdamW",
        "loaded_mb": loaded,
    }


def run_trl(args: argparse.Namespace, tmp: Path, kind: str) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    from steering.eval.sentiment import vader_reward
    from steering.models import load_model

    clock = StepClock()
    prompt_tokens: list[int] = []

    def vader(prompts: Sequence[str], completions: Sequence[str], **_: Any) -> list[float]:
        """TRL's reward signature (it passes more keyword arguments) around ours."""
        rewards = vader_reward(prompts, completions)
        clock.add("reward", sum(rewards) / len(rewards))
        return rewards

    model = load_model(args.model, dtype="float32")
    loaded = rss_mb()
    common = {
        **trl_arguments(tmp, steps=args.steps, learning_rate=args.lr),
        "per_device_train_batch_size": args.prompts * args.samples,  # completions, not prompts
        "num_generations": args.samples,
        "num_iterations": 1,
        "max_completion_length": args.max_new_tokens,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "beta": args.beta,
        "use_vllm": False,
    }
    config_class, trainer_class = (RLOOConfig, RLOOTrainer) if kind == "rloo" else (GRPOConfig, GRPOTrainer)
    trainer = trainer_class(
        model=model.module,
        reward_funcs=vader,
        args=config_class(**common),
        train_dataset=Dataset.from_list([{"prompt": p} for p in PROMPTS]),
        processing_class=model.tokenizer,
        peft_config=rl_lora(args),
        callbacks=[trl_callback(clock.ends)],
    )

    sample = trainer._generate_single_turn

    def sampled(prompt_ids: list[list[int]], *rest: Any, **kwargs: Any) -> Any:
        if not prompt_tokens:
            prompt_tokens.extend(sorted({tuple(ids): len(ids) for ids in prompt_ids}.values()))
        result = sample(prompt_ids, *rest, **kwargs)
        completion_ids = result[0] if kind == "grpo" else result  # GRPO's also returns (vLLM) log-probs
        clock.add("tokens", sum(len(ids) for ids in completion_ids))
        return result

    # Wrapped on this trainer instance only; TRL calls them through `self`.
    trainer._generate_single_turn = clock.timed("sampling_s", sampled)  # type: ignore[method-assign]
    trainer._get_per_token_logps_and_entropies = clock.timed(  # type: ignore[method-assign]
        "scoring_s", trainer._get_per_token_logps_and_entropies, when=lambda: not torch.is_grad_enabled()
    )
    trainer._prepare_inputs = clock.timed("prepare_s", trainer._prepare_inputs)  # type: ignore[method-assign]
    trainer.training_step = clock.timed("step_s", trainer.training_step)  # type: ignore[method-assign]
    trainer.train()
    steps = clock.per_step()
    for step in steps:
        step["training_s"] = step.pop("step_s") - step.pop("prepare_s")
    logs = [h for h in trainer.state.log_history if "kl" in h]
    for step, log in zip(steps, logs, strict=False):
        step["kl"] = log["kl"]  # TRL logs the mean KL per token (ours: per sequence)
    return {
        "ends": clock.ends,
        "steps": steps,
        "trainable": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "prompt_tokens": prompt_tokens,
        "optimizer": type(getattr(trainer.optimizer, "optimizer", trainer.optimizer)).__name__,
        "loaded_mb": loaded,
    }


RUNS = {
    "ours": run_ours,
    "trl-rloo": lambda a, t: run_trl(a, t, "rloo"),
    "trl-grpo": lambda a, t: run_trl(a, t, "grpo"),
}
OPTIONS = ("steps", "prompts", "samples", "max_new_tokens", "rank", "lr", "beta")


def summarise(model: str, trainer: str, runs: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    """Medians over the timed steps (steps warmup+1 … of every run) of the step time and its phases."""
    totals, phases, tokens = [], defaultdict(list), []
    for run in runs:
        # step_s[i] ends step i + 2 (1-based), whose phases are steps[i + 1]
        for i in range(max(0, warmup - 1), len(run["step_s"])):
            step, total = run["steps"][i + 1], run["step_s"][i]
            totals.append(total)
            for name in PHASES:
                phases[name].append(step[name])
            phases["other_s"].append(total - sum(step[name] for name in PHASES))
            tokens.append(step["tokens"])
    sampling, generation = sum(phases["sampling_s"]), sum(phases["sampling_s"]) + sum(phases["scoring_s"])
    first = runs[0]
    return {
        "model": model,
        "trainer": trainer,
        "s_per_step": statistics.median(totals),
        **{name: statistics.median(values) for name, values in phases.items()},
        "rollout_tokens_per_s": sum(tokens) / generation,
        "sampling_tokens_per_s": sum(tokens) / sampling,
        "tokens_per_step": sum(tokens) / len(tokens),
        "timed_steps": len(totals),
        "peak_mb": max(r["peak_mb"] for r in runs),
        "loaded_mb": max(r["loaded_mb"] for r in runs),
        "first_reward": first["steps"][0]["reward"],
        "rewards": [s["reward"] for s in first["steps"]],
        "kl": [s.get("kl") for s in first["steps"]],
        "trainable": first["trainable"],
        "prompt_tokens": first["prompt_tokens"],
        "optimizer": first["optimizer"],
    }


def benchmark(args: argparse.Namespace) -> list[dict[str, Any]]:
    table = []
    for model in args.models.split(","):
        runs: dict[str, list[dict[str, Any]]] = {t: [] for t in TRAINERS}
        for repeat in range(args.repeats):
            shift = repeat % len(TRAINERS)  # rotate who goes first
            for trainer in TRAINERS[shift:] + TRAINERS[:shift]:
                runs[trainer].append(spawn(__file__, trainer, model, args, OPTIONS))
        block = [summarise(model, trainer, results, args.warmup) for trainer, results in runs.items()]
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
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per run (warm-up included)")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing")
    parser.add_argument("--repeats", type=int, default=1, help="runs per trainer × model (order rotates)")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step")
    parser.add_argument("--samples", type=int, default=4, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--beta", type=float, default=0.1, help="KL coefficient β")
    parser.add_argument("--write", type=Path, help="update this markdown file's training-rl section")
    parser.add_argument("--child", choices=TRAINERS, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(RUNS[args.child], args)
        return
    if args.prompts > len(PROMPTS):
        parser.error(f"--prompts must be at most {len(PROMPTS)} (the prompts of benchmarks/common.py)")
    if args.warmup < 1 or args.steps < args.warmup + 1:
        parser.error("need --warmup ≥ 1 and --steps > --warmup (the first step has no start time)")
    result: dict[str, Any] = {"rl": benchmark(args), "machine": machine(), "versions": versions()}
    result["args"] = {k: str(v) for k, v in vars(args).items() if k not in ("child", "model", "out")}
    print(f"\n{'model':<12} {'trainer':<9} {'s/step':>7} {'sample s':>8} {'score s':>7} {'train s':>7} "
          f"{'other s':>7} {'tok/s':>6} {'peak MB':>8} {'loaded MB':>9}")  # fmt: skip
    for r in result["rl"]:
        print(
            f"{r['model']:<12} {r['trainer']:<9} {r['s_per_step']:>7.3f} {r['sampling_s']:>8.3f} "
            f"{r['scoring_s']:>7.3f} {r['training_s']:>7.3f} {r['other_s']:>7.3f} {r['rollout_tokens_per_s']:>6.0f} "
            f"{r['peak_mb']:>8.0f} {r['loaded_mb']:>9.0f}"
        )
    out = Path(__file__).parent / "results" / "training_rl.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    if args.write:
        write_section(args.write, "training-rl", _markdown(result, args))


def _markdown(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    v = result["versions"]
    table = result["rl"]
    lines = [
        "## KL-regularised RL: ours against TRL's RLOOTrainer and GRPOTrainer (`benchmarks/training_rl.py`)",
        "",
        f"{machine_line(result['machine'])}; trl {v['trl']}, peft {v['peft']}. Common to all: LoRA rank {args.rank} "
        f"(alpha {2 * args.rank}, dropout 0) on every linear layer, fp32, {args.prompts} prompts per step × "
        f"{args.samples} samples = {args.prompts * args.samples} rollouts per step (the same {len(PROMPTS)} "
        f"prompts of `benchmarks/common.py` every step), at most {args.max_new_tokens} new tokens, temperature 1 "
        f"with no top-k or top-p, the VADER reward, β = {args.beta:g}, one optimizer step per batch of rollouts "
        f"(TRL: `num_iterations=1`, gradient accumulation 1), AdamW at {args.lr:g} with cosine decay and no "
        'warm-up, clipping at 1.0. Each trainer gets the module and tokenizer of `load_model(name, dtype="float32")` '
        "in its own subprocess; TRL with `gradient_checkpointing=False, bf16=False`, `use_vllm=False` (it samples "
        "with `model.generate`), `peft_config` and a plain model (its reference: the adapter disabled, as ours). "
        "Being the same module, TRL's model keeps `load_model`'s hook that hands the LM head a contiguous input.",
        "",
        "The methods are not the same work, by design, and the rows say so: ours samples through the decode "
        "engine, which records log q of each sampled token as it samples, then runs one teacher-forced pass "
        "with the adapter off for log π; KL (k1, summed per sequence) in the reward, leave-one-out advantages, "
        "loss −mean(A · log q_θ). TRL RLOO is the same algorithm but runs two no-grad teacher-forced passes (the "
        "policy's log-probs, for the KL and the ratio, and the reference), and its loss forward also computes the "
        "entropy of every completion position (a pass over the whole vocabulary). TRL GRPO (otherwise its "
        'defaults: `loss_type="dapo"`, group-normalised rewards) runs one no-grad reference pass and puts the '
        "KL (k3, per token) in the loss.",
        "",
        f"Seconds per optimizer step: median over {args.repeats} run(s) × {args.steps - args.warmup} steps (the "
        f"first {args.warmup} of each run left out), wall time between the ends of consecutive steps. Its phases, "
        "timed inside the subprocess (medians per step): *sampling* — ours: the decode engine's loop "
        "(`sampling_s` from `metrics.jsonl`, the decoder's own clock); TRL: `_generate_single_turn` (padding, `model.generate`, the cut after "
        "EOS; wrapped on the trainer). *Scoring* — the no-grad teacher-forced passes for the KL: ours: "
        "`generation_s` from `metrics.jsonl` minus sampling; TRL: its `_get_per_token_logps_and_entropies` calls "
        "with gradients off. *Training* — forward + backward of the loss: ours: `training_s` from `metrics.jsonl`; "
        "TRL: `training_step` minus `_prepare_inputs` (where it samples, scores and rewards). *Other* — the rest "
        "of the step (rewards, advantages, optimizer, logging). Rollout tokens/s: sampled tokens (EOS included) "
        "/ (sampling + scoring) seconds, what ours' `metrics.jsonl` reports as `rollout_tokens_per_s`; sampling "
        "tokens/s: over the sampling seconds alone. Peak MB: the subprocess's peak resident set, loading included.",
        "",
        "| model | trainer | s/step | vs TRL RLOO | vs TRL GRPO | sampling s | scoring s | training s | other s "
        "| rollout tok/s | sampling tok/s | tokens/step | peak MB | MB after loading |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['model']} | {LABELS[r['trainer']]} | {r['s_per_step']:.3f} | {r['vs_trl-rloo']:.2f}× "
            f"| {r['vs_trl-grpo']:.2f}× | {r['sampling_s']:.3f} | {r['scoring_s']:.3f} | {r['training_s']:.3f} "
            f"| {r['other_s']:.3f} | {r['rollout_tokens_per_s']:.0f} | {r['sampling_tokens_per_s']:.0f} "
            f"| {r['tokens_per_step']:.0f} | {r['peak_mb']:.0f} | {r['loaded_mb']:.0f} |"
        )
    checks = []
    for model in dict.fromkeys(r["model"] for r in table):
        by = {r["trainer"]: r for r in table if r["model"] == model}
        rows = [by[t] for t in TRAINERS]
        checks.append(
            f"{model}: {_vs(rows, 'trainable', '{:,}')} LoRA parameters, prompt tokens "
            f"{' vs '.join('/'.join(map(str, r['prompt_tokens'])) for r in rows)}, mean step-1 reward (rollouts of "
            f"the base model: the adapter starts at zero) {_vs(rows, 'first_reward', '{:.3f}')}, optimizer "
            f"{_vs(rows, 'optimizer', '{}')}"
        )
    lines += [
        "",
        "Same set-up on all sides, checked (ours vs TRL RLOO vs TRL GRPO): " + "; ".join(checks) + ". "
        "Tokens per step differ with what each side happened to sample (each stops a row at EOS). No bar for RL: "
        "these numbers are reported, not judged.",
        "",
        "Reproduce: `.venv/bin/pip install trl==1.16.0`, then "
        "`HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/training_rl.py --write BENCHMARKS.md`.",
    ]
    return lines


def _vs(rows: list[dict[str, Any]], key: str, form: str) -> str:
    return " vs ".join(form.format(r[key]) for r in rows)


if __name__ == "__main__":
    main()

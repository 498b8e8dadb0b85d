"""Experiment 1 of the fine-tuning issue: instruction tuning from nothing but the base model.

Run: `python experiments/instruction_tuning.py --write BENCHMARKS.md`. The base model (gemma-270m)
writes its own demonstrations (`steering.recipes.self_instruct`: few-shot Q:/A: prompting with the project's
four seed pairs, filters on stopping and repetition, the held-out questions excluded); an SFT adapter
(LoRA) and a soft prompt are trained on them (`tune_from_base`). Then the project's 48 held-out
questions are asked *without* the Q:/A: wrapper — the bare question as the prompt — to the raw base,
the SFT adapter and the soft prompt, and with the wrapper (`QA`: "Q: …\\nA:" + stop at "\\nQ:") to the
base as the reference a prompt engineer would use. Per technique: accuracy (greedy, and sampled at
temperature 1), stop rate, new-question rate, distinct-2 and KL to the base on the bare question
(Σ log q − log p_base per sample, averaged; p_base = the base model on the raw prompt), from
`--samples` samples per question and one greedy decode.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from steering.controls import QA, Adapter, Greedy, SoftPrompt
from steering.decode import generate
from steering.eval import builtin_questions, summarise
from steering.models import load_model
from steering.recipes.self_instruct import REASONS, tune_from_base

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # common.py
from common import machine, machine_line, write_section

RESULTS = Path(__file__).parent / "results" / "instruction_tuning.json"


def _evaluate(
    model: Any, techniques: list[tuple[str, list[object]]], samples: int, tokens: int
) -> list[dict]:
    questions = builtin_questions()
    prompts = [q.question for q in questions]
    answers = [q.answers for q in questions]
    rows = []
    for name, controls in techniques:
        started = time.perf_counter()
        sampled = generate(model, prompts, controls=controls, n=samples, max_new_tokens=tokens, seed=0)
        greedy = generate(model, prompts, controls=[*controls, Greedy()], max_new_tokens=tokens, seed=0)
        summary = summarise(sampled, answers).as_dict()
        rows.append(
            {
                "technique": name,
                "accuracy_greedy": summarise(greedy, answers).accuracy,
                **summary,
                "seconds": time.perf_counter() - started,
                "examples": [[prompts[i], greedy.texts[i]] for i in range(0, len(prompts), 8)],
            }
        )
        print(f"{name}: {rows[-1]['accuracy_greedy']:.2f} greedy accuracy", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="gemma-270m")
    parser.add_argument("--demonstrations", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=4, help="sampled answers per question")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--out", type=Path, default=Path("runs/instruction-tuning"))
    parser.add_argument("--write", type=Path, help="update this markdown file's section")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    model = load_model(args.model, dtype="bfloat16")
    held_out = [q.question for q in builtin_questions()]
    tuned = tune_from_base(
        model, out_dir=args.out, demonstrations=args.demonstrations, exclude=held_out, epochs=args.epochs
    )
    train_s = time.perf_counter() - started
    techniques: list[tuple[str, list[object]]] = [
        ("raw base, bare question", []),
        ("base + Q:/A: wrapper + stop", [QA()]),
        ("SFT adapter, bare question", [Adapter(tuned.sft.adapter)]),
        ("soft prompt, bare question", [SoftPrompt.load(tuned.soft_prompt.adapter)]),
    ]
    rows = _evaluate(model, techniques, args.samples, args.max_new_tokens)
    harvest = tuned.harvest
    saved = {
        "machine": machine(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "harvest": {
            "drawn": harvest.drawn,
            "kept": len(harvest.rows),
            "dropped": dict(harvest.dropped),
            "model_calls": harvest.model_calls,
            "examples": harvest.rows[:10],
        },
        "training": {
            name: {
                "steps": run.steps,
                "stopped": run.stopped,
                "first": run.metrics[0] if run.metrics else None,
                "last": run.metrics[-1] if run.metrics else None,
                "eval_loss": [m["eval_loss"] for m in run.metrics if "eval_loss" in m],
            }
            for name, run in (("sft", tuned.sft), ("soft_prompt", tuned.soft_prompt))
        },
        "harvest_and_training_s": train_s,
        "rows": rows,
        "wall_s": time.perf_counter() - started,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(saved, indent=1, default=str))
    if args.write:
        write_markdown(args.write, saved)


def _f(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def write_markdown(path: Path, saved: dict[str, Any]) -> None:
    args, harvest, training = saved["args"], saved["harvest"], saved["training"]
    dropped = ", ".join(f"{r} {harvest['dropped'].get(r, 0)}" for r in REASONS)
    sft, soft = training["sft"], training["soft_prompt"]
    lines = [
        "## Instruction tuning from the base model's own demonstrations (`experiments/instruction_tuning.py`)",
        "",
        f"Model `{args['model']}` (bfloat16 for sampling, float32 for training), {machine_line(saved['machine'])}. "
        f"One run, {saved['wall_s'] / 60:.1f} min ({saved['harvest_and_training_s'] / 60:.1f} of them harvesting "
        "and training).",
        "",
        f"**Harvest**: {harvest['drawn']} few-shot continuations (3 of the 4 seed Q/A pairs, then an open 'Q:'; "
        f"{harvest['model_calls']} generated tokens); kept {harvest['kept']} "
        f"({harvest['kept'] / max(harvest['drawn'], 1):.0%}); dropped: {dropped}. Examples: "
        + "; ".join(f"{r['prompt']} →{r['completion']}" for r in harvest["examples"][:5])
        + ".",
        "",
        f"**Training** ({args['epochs']} epochs, batch 8, 10% held out for eval loss): SFT adapter (LoRA rank 16, "
        f"lr 2e-4) {sft['steps']} steps, loss {_f(sft['first'] and sft['first'].get('loss'))} → "
        f"{_f(sft['last'] and sft['last'].get('loss'))}, eval loss {', '.join(_f(v) for v in sft['eval_loss'])}; "
        f"soft prompt (16 vectors, lr 1e-2) {soft['steps']} steps, loss "
        f"{_f(soft['first'] and soft['first'].get('loss'))} → {_f(soft['last'] and soft['last'].get('loss'))}, "
        f"eval loss {', '.join(_f(v) for v in soft['eval_loss'])}.",
        "",
        f"**Held-out questions** (48, none in the harvest), {args['samples']} samples per question at temperature 1 "
        f"and one greedy decode, {args['max_new_tokens']} new tokens at most. Accuracy: an accepted answer in the "
        "first non-empty line. Stop rate: the sample ended (EOS or a stop sequence) before the budget. "
        "New-question rate: the text asks a question ('Q:' line or '?'). KL: Σ(log q − log p_base) per sample, "
        "mean, p_base = the base on the bare question.",
        "",
        "| technique | accuracy (greedy) | accuracy (sampled) | stop rate | new-question rate | distinct-2 "
        "| mean tokens | KL to base (nats) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in saved["rows"]:
        lines.append(
            f"| {r['technique']} | {_f(r['accuracy_greedy'])} | {_f(r['accuracy'])} | {_f(r['stop_rate'])} "
            f"| {_f(r['new_question_rate'])} | {_f(r['distinct_2'])} | {_f(r['mean_tokens'], 1)} | {_f(r['mean_kl'])} |"
        )
    lines += ["", "Greedy answers to every 8th question:", ""]
    lines += ["| question | " + " | ".join(r["technique"] for r in saved["rows"]) + " |"]
    lines += ["|---|" + "---|" * len(saved["rows"])]
    for i, (question, _) in enumerate(saved["rows"][0]["examples"]):
        cells = [r["examples"][i][1].replace("\n", " ⏎ ").replace("|", "\\|")[:70] for r in saved["rows"]]
        lines.append(f"| {question} | " + " | ".join(cells) + " |")
    lines += ["", "Reproduce: `.venv/bin/python experiments/instruction_tuning.py --write BENCHMARKS.md`."]
    write_section(path, "instruction-tuning", lines)


if __name__ == "__main__":
    main()

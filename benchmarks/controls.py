"""Tweak controls on gemma-270m: steering-vector overhead, PPLM cost, and a reward–KL table.

Run: `python benchmarks/controls.py --write BENCHMARKS.md` (part of `make bench`).

1. Steering-vector overhead: tokens/s with no control, with a vector (hook only, `score_base=False`),
   and with a vector plus the exact base books (one teacher-forced pass of the plain model after
   generation); batch 1 and 8, sampling at temperature 1; the variants are interleaved in every repeat
   so that the VM's drift hits them alike; medians reported.
2. PPLM: seconds per generated step and tokens/s, against plain sampling, from the table's runs.
3. Reward–KL: positive sentiment by a prompt prefix, a bag-of-words boost, an activation steering
   vector and PPLM at several strengths; same openings, same seed; mean VADER compound score of the
   continuation and mean KL = Σ(log q − log p_base) against the base model on the raw opening.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from common import PROMPTS, machine, machine_line, timed, write_section

from steering.controls import PPLM, BagOfWords, Instruction, build_steering_vector
from steering.decode import generate
from steering.eval.sentiment import vader_reward
from steering.models import load_model
from steering.recipes.demo.pools_and_tweaks import (
    NEGATIVE_EXAMPLES,
    POSITIVE_EXAMPLES,
    POSITIVE_WORDS,
    STARTS,
)


def overhead(model, vector, *, repeats: int, max_new_tokens: int) -> list[dict[str, object]]:
    variants = {
        "no control": ([], True),
        "vector, hook only": ([vector], False),
        "vector + exact base books": ([vector], True),
    }
    rows = []
    for batch in (1, 8):
        prompts = PROMPTS[:batch]
        rates: dict[str, list[float]] = {name: [] for name in variants}

        def run(controls, score_base, prompts=prompts, tokens=max_new_tokens) -> int:
            samples = generate(
                model,
                prompts,
                controls=controls,
                max_new_tokens=tokens,
                batch_size=len(prompts),
                score_base=score_base,
                seed=0,
            )
            return sum(len(s.token_ids) for s in samples)

        for controls, score_base in variants.values():
            run(controls, score_base, tokens=4)  # warm-up
        for _ in range(repeats):
            for name, (controls, score_base) in variants.items():
                rates[name].append(timed(lambda c=controls, b=score_base: run(c, b))[0])
        base = statistics.median(rates["no control"])
        for name, values in rates.items():
            rate = statistics.median(values)
            rows.append({"batch": batch, "variant": name, "tokens_per_s": rate, "vs_none": rate / base})
            print(rows[-1], flush=True)
    return rows


def sentiment_settings(vector, *, pplm: bool = True) -> list[tuple[str, str, list[object]]]:
    """The reward–KL table's rows: (technique, strength, controls)."""
    prefix = Instruction("The following text is cheerful, warm and full of positive feelings.")
    settings: list[tuple[str, str, list[object]]] = [
        ("base model", "–", []),
        ("prompt prefix", "1 sentence", [prefix]),
        *[("bag of words", f"+{s:g}", [BagOfWords(POSITIVE_WORDS, s)]) for s in (2.0, 4.0, 8.0)],
        *[("steering vector (layer 6)", f"α={a:g}", [vector.with_alpha(a)]) for a in (1.0, 2.0, 4.0)],
    ]
    if pplm:
        settings += [
            ("PPLM (bag of words)", f"step {s:g}", [PPLM(POSITIVE_WORDS, step_size=s)]) for s in (0.02, 0.05)
        ]
    return settings


def sentiment_row(
    model,
    technique: str,
    strength: str,
    controls: list[object],
    *,
    samples_per_start: int,
    max_new_tokens: int,
) -> dict[str, object]:
    """Mean VADER and mean KL to the base (each with its standard error) of `controls` on the STARTS openings
    (seed 0)."""
    started = time.perf_counter()
    samples = generate(
        model, STARTS, controls=controls, n=samples_per_start, max_new_tokens=max_new_tokens, seed=0
    )
    seconds = time.perf_counter() - started
    rewards = vader_reward([s.prompt for s in samples], samples.texts)
    kls = samples.kl.tolist()
    tokens = sum(len(s.token_ids) for s in samples)
    row: dict[str, object] = {
        "technique": technique,
        "strength": strength,
        "vader": statistics.mean(rewards),
        "vader_se": statistics.stdev(rewards) / len(rewards) ** 0.5,
        "kl": statistics.mean(kls),
        "kl_se": statistics.stdev(kls) / len(kls) ** 0.5,
        "samples": len(rewards),
        "tokens_per_s": tokens / seconds,
        "example": samples[0].prompt + samples[0].text,
    }
    pplm = next((c for c in controls if isinstance(c, PPLM)), None)
    if pplm is not None:
        row["pplm_ms_per_step"] = 1000 * pplm.stats.seconds / pplm.stats.steps
        row["pplm_iterations"] = pplm.iterations
    print({k: v for k, v in row.items() if k != "example"}, flush=True)
    return row


def reward_kl(model, vector, *, samples_per_start: int, max_new_tokens: int) -> list[dict[str, object]]:
    return [
        sentiment_row(
            model,
            technique,
            strength,
            controls,
            samples_per_start=samples_per_start,
            max_new_tokens=max_new_tokens,
        )
        for technique, strength, controls in sentiment_settings(vector)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="gemma-270m")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--samples-per-start", type=int, default=4)
    parser.add_argument("--table-tokens", type=int, default=32)
    parser.add_argument("--write", type=Path, help="update this markdown file's controls section")
    args = parser.parse_args()
    model = load_model(args.model)
    vector = build_steering_vector(model, positive=POSITIVE_EXAMPLES, negative=NEGATIVE_EXAMPLES, layers=[6])
    result = {
        "overhead": overhead(
            model, vector.with_alpha(2.0), repeats=args.repeats, max_new_tokens=args.max_new_tokens
        ),
        "table": reward_kl(
            model, vector, samples_per_start=args.samples_per_start, max_new_tokens=args.table_tokens
        ),
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    out = Path(__file__).parent / "results" / "controls.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    if args.write:
        write_section(args.write, "controls", _markdown(result, args))


def _markdown(result, args) -> list[str]:
    lines = [
        "## Tweaks: steering-vector overhead, PPLM cost, reward–KL (`benchmarks/controls.py`)",
        "",
        f"Model `{args.model}` in bfloat16, {machine_line(result['machine'])}. Sampling at temperature 1.",
        "",
        f"**Steering-vector overhead** ({args.max_new_tokens} new tokens, median of {args.repeats} interleaved "
        "runs; layer-6 vector at α=2). Bar: ≤ 5% tokens/s lost to the vector.",
        "",
        "| batch | variant | tok/s | vs no control |",
        "|---|---|---|---|",
    ]
    for r in result["overhead"]:
        lines.append(f"| {r['batch']} | {r['variant']} | {r['tokens_per_s']:.1f} | {r['vs_none']:.2f}× |")
    hook = {r["batch"]: r["vs_none"] for r in result["overhead"] if r["variant"] == "vector, hook only"}
    books = {
        r["batch"]: r["vs_none"] for r in result["overhead"] if r["variant"] == "vector + exact base books"
    }
    lines += [
        "",
        f"With the hook alone tokens/s is {hook[8]:.2f}× at batch 8 ({hook[1]:.2f}× at batch 1): "
        f"the bar {'holds' if hook[8] >= 0.95 else 'fails'} for the vector. Exact base books for a model "
        f"control need one teacher-forced pass of the plain model, {100 * (1 - books[8]):.0f}% at batch 8 in "
        "all; `generate(..., score_base=False)` skips it (log p_base and KL are then NaN, not guessed). "
        "Differences of a few percent are within this VM's run-to-run noise; absolute tokens/s vary between "
        "sessions on this shared VM (compare ratios within one table, not across sections).",
        "",
        f"**Reward–KL for positive sentiment** ({len(STARTS)} neutral openings × {args.samples_per_start} "
        f"samples, {args.table_tokens} new tokens, seed 0 for every row; VADER compound in [−1, 1]; KL in "
        "nats per sequence; tok/s includes PPLM's gradient steps and, for the vector and the prefix, the "
        "base-books pass).",
        "",
        "| technique | strength | mean VADER | mean KL | tok/s | PPLM ms/step (batch 8) |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["table"]:
        cost = (
            f"{r['pplm_ms_per_step']:.0f} ({r['pplm_iterations']} iterations)"
            if "pplm_ms_per_step" in r
            else ""
        )
        lines.append(
            f"| {r['technique']} | {r['strength']} | {r['vader']:.3f} | {r['kl']:.2f} | "
            f"{r['tokens_per_s']:.1f} | {cost} |"
        )
    base_rate = result["table"][0]["tokens_per_s"]
    pplm_rates = [r["tokens_per_s"] for r in result["table"] if "pplm_ms_per_step" in r]
    lines += [
        "",
        f"PPLM costs about {base_rate / statistics.mean(pplm_rates):.0f}× the time of plain sampling per token "
        "here (each of its iterations is one forward and one backward pass of the last token over the whole "
        "past), for the reward shown in its rows.",
        "",
        "Reproduce: `.venv/bin/python benchmarks/controls.py --write BENCHMARKS.md`.",
    ]
    return lines


if __name__ == "__main__":
    main()

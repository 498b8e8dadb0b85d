"""The constrained-decoding section of BENCHMARKS.md, rendered from `results/constrained.json`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common import write_section

BASELINES = ("unconstrained", "no-op logit control")


def _bar(saved: dict[str, Any]) -> tuple[bool, str]:
    rows = [r for r in saved["end_to_end"] if r["batch"] == 8 and r["variant"] not in BASELINES]
    held = all(r["rate_ratio"] >= 0.9 for r in rows)
    ratios = ", ".join(f"{r['variant']} {r['rate_ratio']:.2f}×" for r in rows)
    return held, ratios


def _shared_note(saved: dict[str, Any]) -> str:
    if saved["load_average"][0] < 0.5:
        return ""
    return (
        ": other work shared the machine, so absolute numbers are low and noisy; the ratios, taken "
        "between neighbouring runs, are the figures to read"
    )


def write_markdown(path: Path, saved: dict[str, Any]) -> None:
    m, args = saved["machine"], saved["args"]
    lines = [
        "## Constrained decoding (`benchmarks/constrained.py`)",
        "",
        f"Model `{args['model']}` in bfloat16 (262,144-token vocabulary), {m['cores']} CPU cores / "
        f"{m['threads']} torch threads ({m['cpu']}), torch {m['torch']}, Python {m['python']}, "
        f"transformers {m['transformers']}, llguidance {m['llguidance']}, "
        f"outlines-core {m['outlines-core'] or '—'}, xgrammar {m['xgrammar'] or '—'}. One run measures "
        f"everything below ({saved['wall_s'] / 60:.1f} min; 1-minute load average "
        f"{saved['load_average'][0]:.1f} before it started and {saved['load_average'][1]:.1f} at the end, "
        f"on {m['cores']} cores{_shared_note(saved)}). JSON schema: a person record (`name` and `city` strings of at "
        "most 24 characters, `age` an integer 0–120, `likes_cats` a boolean, no other keys), compact "
        f"whitespace in every backend. Regex: `{saved['regex']}` (a sentence of 6–31 words).",
        "",
        *_backend_lines(saved),
        "",
        *_compile_lines(saved),
        "",
        *_mask_lines(saved),
        "",
        *_end_to_end_lines(saved),
        "",
        "Reproduce: `.venv/bin/python benchmarks/constrained.py --write BENCHMARKS.md` (`make bench`; "
        "`--render-only` rewrites this section from `benchmarks/results/constrained.json`).",
    ]
    write_section(path, "constrained", lines)


def _backend_lines(saved: dict[str, Any]) -> list[str]:
    lines = ["**Competitors.**"]
    for package, state in saved["competitors"].items():
        if state == "ok":
            lines.append(f"- {package} {saved['machine'][package]}: measured.")
        else:
            lines.append(f"- {package}: {state}; not measured.")
    lines.append(
        "- How they are installed: `make bench` runs `pip install --no-deps outlines-core xgrammar "
        "apache-tvm-ffi` (pinned). outlines-core has no runtime dependencies. xgrammar's are already in "
        "the venv (torch 2.13 CPU, transformers, numpy, pydantic) except `triton`, which it imports only "
        "for its CUDA logits kernel; pip would add triton (a GPU compiler, no use on a CPU) but would "
        "not touch torch. So they are not in `pyproject.toml` and not a `bench` extra: the extra would "
        "pull triton."
    )
    lines.append(
        "- outlines-core gets its vocabulary as token bytes (decoded by llguidance's tokenizer, so no "
        "hub download; that part is not counted in its setup time). Its JSON-schema regex ignores "
        "`minimum`/`maximum` (any integer passes), so it checks a looser grammar than the other two."
    )
    return lines


def _compile_lines(saved: dict[str, Any]) -> list[str]:
    lines = [
        f"**(a) Compile time** (median of {saved['args']['compile_repeats']} cold compiles; "
        "'compile' = schema or regex → a matcher ready to produce masks, 'first mask' adds the first "
        "fill; llguidance builds its lexer lazily, xgrammar precomputes a per-state token-mask cache, "
        "outlines-core builds a token-level DFA over the whole vocabulary):",
        "",
        "| backend | tokenizer tables (once per process) | JSON compile | JSON first mask "
        "| regex compile | regex first mask |",
        "|---|---|---|---|---|---|",
    ]
    for r in saved["compile"]:
        lines.append(
            f"| {r['backend']} | {r['setup_s']:.2f} s | {_ms(r['json_compile_ms'])} | "
            f"{_ms(r['json_first_mask_ms'])} | {_ms(r['regex_compile_ms'])} | "
            f"{_ms(r['regex_first_mask_ms'])} |"
        )
    return lines


def _ms(value: float) -> str:
    return f"{value / 1e3:.2f} s" if value >= 1000 else f"{value:.1f} ms"


def _mask_lines(saved: dict[str, Any]) -> list[str]:
    lines = [
        "**(b) Mask cost per token**: µs to fill one row's allowed-token bitmask over the 262k vocabulary, "
        "replaying the 8 JSON and 8 regex token traces sampled in (c) (median and 90th percentile over "
        "every step):",
        "",
        "| backend | JSON median µs | JSON p90 µs | regex median µs | regex p90 µs | steps replayed |",
        "|---|---|---|---|---|---|",
    ]
    notes = []
    for r in saved["mask"]:
        json_cost, regex_cost = r["json"], r["regex"]
        rejected = [*json_cost["rejected"], *regex_cost["rejected"]]
        note = f" ({len(rejected)} trace{'s' if len(rejected) > 1 else ''} cut short¹)" if rejected else ""
        lines.append(
            f"| {r['backend']} | {json_cost['median_us']:.1f} | {json_cost['p90_us']:.1f} | "
            f"{regex_cost['median_us']:.1f} | {regex_cost['p90_us']:.1f} | "
            f"{json_cost['steps']} + {regex_cost['steps']}{note} |"
        )
        notes += [f"{r['backend']} rejects {x['token']!r} after {x['after']!r}" for x in rejected]
    if notes:
        lines += [
            "",
            "¹ Where a backend rejects a token that steering's grammar allowed, that trace stops there: "
            + "; ".join(notes)
            + ".",
        ]
    step, apply = saved["control_step_us_per_row"], saved["apply_us_per_row"]
    xgr = f", xgrammar's CPU kernel on a copy {apply['xgrammar']:.0f} µs" if "xgrammar" in apply else ""
    lines += [
        "",
        "Applying the mask (8 × 262k float32 scores → a masked copy, µs per row): steering "
        f"{apply['steering']:.0f} µs (numpy bit-unpack + one `torch.where`); the previous implementation "
        f"{apply['previous']:.0f} µs (int32 shifts, clone, indexed `masked_fill`){xgr}. The whole "
        f"`Grammar` step at batch 8 (fill 8 rows, unpack, mask) costs {step['json']:.0f} µs per row for "
        f"the JSON schema and {step['regex']:.0f} µs for the regex.",
    ]
    return lines


def _end_to_end_lines(saved: dict[str, Any]) -> list[str]:
    args = saved["args"]
    held, ratios = _bar(saved)
    lines = [
        f"**(c) End to end**: `steering.generate`, sampling at temperature 1, {args['max_new_tokens']} new "
        f"tokens at most, the same prompts (the decode benchmark's) and seed in every run, "
        f"{args['rounds']} rounds after {args['warmup']} warm-up round; in each round every variant runs "
        "once, next to the others. Tokens/s = generated tokens / wall time: median over rounds, with "
        "the slowest–fastest range; 'vs unconstrained' is the median of the per-round ratios, and 'best' "
        "compares the fastest run of each variant (the one least disturbed by other work). Steps = "
        "forward passes (the batch runs until its longest row ends); slot use = tokens / (steps × batch).",
        "",
        "| batch | variant | tokens | steps | slot use | tok/s median (range) | vs unconstrained "
        "| best tok/s | best vs unconstrained | ms/step, best | per step vs unconstrained, median / best |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(saved["end_to_end"], key=lambda r: -r["batch"]):
        rates = r["all_tokens_per_s"]
        lines.append(
            f"| {r['batch']} | {r['variant']} | {r['tokens']} | {r['steps']} | {100 * r['slot_use']:.0f}% "
            f"| {r['tokens_per_s']:.1f} ({min(rates):.1f}–{max(rates):.1f}) | {r['rate_ratio']:.2f}× "
            f"| {r['best_tokens_per_s']:.1f} | {r['best_rate_ratio']:.2f}× | {r['best_ms_per_step']:.1f} "
            f"| {r['step_ratio']:.2f}× / {r['best_step_ratio']:.2f}× |"
        )
    return [*lines, "", *_verdict_lines(saved, held, ratios)]


def _verdict_lines(saved: dict[str, Any], held: bool, ratios: str) -> list[str]:
    constrained = [r for r in saved["end_to_end"] if r["variant"] not in BASELINES]
    batch8 = [r for r in constrained if r["batch"] == 8]
    noop = next(r for r in saved["end_to_end"] if r["batch"] == 8 and r["variant"] == BASELINES[1])
    plain = next(r for r in saved["end_to_end"] if r["batch"] == 8 and r["variant"] == BASELINES[0])
    mask_ms = {kind: 8 * us / 1e3 for kind, us in saved["control_step_us_per_row"].items()}
    engine = saved["engine_ms"]
    slow_exp_ms = sum(engine[op]["masked"] - engine[op]["finite"] for op in ("sample", "step_kl"))

    def listing(key: str, rows: list[dict[str, Any]]) -> str:
        return ", ".join(f"{r['variant']} {r[key]:.2f}×" for r in rows)

    steps = ", ".join(
        f"{r['variant']} {r['best_ms_per_step']:.1f} ms (+{r['best_ms_per_step'] - plain['best_ms_per_step']:.1f})"
        for r in batch8
    )
    lines = [
        f"**Bar** (constrained tokens/s at batch 8 ≥ 0.9 × unconstrained, median of per-round ratios): "
        f"**{'held' if held else 'not held'}** ({ratios}; best runs: {listing('best_rate_ratio', batch8)}).",
        "",
        f"Where the time goes, per forward pass at batch 8 (best runs): unconstrained "
        f"{plain['best_ms_per_step']:.1f} ms, {steps}; per step that is {listing('step_ratio', batch8)} "
        f"the unconstrained speed (median; best {listing('best_step_ratio', batch8)}). "
        f"(1) The masks (the `Grammar` step of (b), 8 rows): {mask_ms['json']:.1f} ms (JSON), "
        f"{mask_ms['regex']:.1f} ms (regex). "
        f"(2) The engine's books for any logit control (a second log-softmax, the exact per-step KL): a "
        f"control that changes nothing runs at {noop['step_ratio']:.2f}× (best "
        f"{noop['best_step_ratio']:.2f}×). "
        f"(3) The same sampling math on scores with −inf: the engine's draw takes "
        f"{engine['sample']['masked']:.1f} ms instead of {engine['sample']['finite']:.1f} ms and its KL "
        f"{engine['step_kl']['masked']:.1f} ms instead of {engine['step_kl']['finite']:.1f} ms "
        f"(+{slow_exp_ms:.1f} ms), because torch's vectorised `exp` takes a slow path for −inf inputs "
        f"({engine['exp']['masked']:.1f} ms instead of {engine['exp']['finite']:.1f} ms for 8 × 262k); "
        "(2) and (3) live in `steering/decode/` (engine and sampling), not in the mask. "
        "At batch 1, where no slot idles, constrained tokens/s is "
        f"{listing('rate_ratio', [r for r in constrained if r['batch'] == 1])} of unconstrained.",
    ]
    idle = [r for r in batch8 if r["slot_use"] < 0.95]
    if idle:
        uses = ", ".join(f"{r['variant']} {100 * r['slot_use']:.0f}%" for r in idle)
        lines[-1] += (
            f" The rest of the batch-8 gap is slot use ({uses}): a row whose grammar has completed stays "
            "in the batch, idle, until the longest row ends, while the unconstrained rows run to the "
            "budget. Short structured outputs therefore yield fewer tokens per forward pass whatever the "
            "mask costs; recovering that needs the engine to refill finished slots "
            "(`steering/decode/engine.py`), not a faster mask."
        )
    return lines

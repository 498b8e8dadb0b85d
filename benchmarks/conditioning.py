"""Conditioning samplers on gemma-270m: satisfying samples per model call and per minute, and llamppl.

Run: `python benchmarks/conditioning.py --write BENCHMARKS.md` (or `make bench`). Two conditions on
completions of "Once upon a time" under the base model (temperature 1, EOS or the length limit):

- suffix: the story ends with " happily ever after." (`ends_with`);
- infill: the 5th generated token onwards is " dragon" (`fixed_tokens({4: " dragon"})`).

Samplers, one run each per seed (the same seeds for every sampler):
- rejection from the base, with as many model calls as SMC spent;
- importance with a pool proposal: infill — `ForceTokens` (forces the fixed tokens, masks EOS before
  them); suffix — for every length L a proposal that writes L free tokens (EOS masked), then forces
  the suffix and EOS (`ForceTokens({L: S, L+|S|: EOS})`), two samples per L, the strata merged (their
  supports are disjoint, so the merged weights are exact for the whole target);
- SMC: suffix — the lookahead twist (`smc`); infill — `ForceTokens` as SMC proposal, resampling on ESS;
- llamppl 0.2.3 (suffix only), in its own venv (see `llamppl_runner.py`): its idiomatic model (mask
  EOS unless the text ends with S, condition at the limit) and the same lookahead written in llamppl.

A model call here is one next-token distribution: for steering one token position through the model
with the KV cache (the lookahead's teacher-forced tokens count one each); for llamppl the next-token
queries that missed its cache ("queries"), and separately the token positions its HF backend computed
(it keeps KV only for the prompt and recomputes each continuation). Satisfying samples = the ESS of
the samples that satisfy the condition, identical texts merged first (a particle's copies after
resampling are one sample; for rejection, the accepted count).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from common import machine, write_section

from steering.condition import Posterior, Target, ends_with, fixed_tokens, importance, rejection, smc
from steering.controls import ForceTokens
from steering.models import load_model

PROMPT = "Once upon a time"
SUFFIX = " happily ever after."
INFILL = {4: " dragon"}
RESULTS = Path(__file__).parent / "results" / "conditioning.json"
# `make bench` builds this venv (see the Makefile); LLAMPPL_PYTHON points elsewhere.
LLAMPPL_PYTHON = Path(
    os.environ.get("LLAMPPL_PYTHON", Path(__file__).parent.parent / ".venv-llamppl/bin/python")
)


def _ess(weights: list[float]) -> float:
    return sum(weights) ** 2 / sum(w * w for w in weights) if weights else 0.0


def _distinct_ess(texts: list[str], weights: list[float]) -> float:
    """ESS with copies of one text merged (weights summed): resampling's N copies are one sample."""
    merged: dict[str, float] = {}
    for text, weight in zip(texts, weights, strict=True):
        merged[text] = merged.get(text, 0.0) + weight
    return _ess(list(merged.values()))


def _summary(posterior: Posterior, seconds: float, satisfied: list[bool]) -> dict[str, Any]:
    weights = posterior.weights.tolist() if posterior.samples else []
    kept = [
        (s.text, w) for s, w, ok in zip(posterior.samples, weights, satisfied, strict=True) if ok and w > 0
    ]
    ess = _distinct_ess([t for t, _ in kept], [w for _, w in kept])
    drawn = re.search(r"drew (\d+)", posterior.sampler)  # rejection says how many it drew
    return {
        "sampler": posterior.sampler,
        "drawn": int(drawn.group(1)) if drawn else None,
        "seconds": seconds,
        "calls": posterior.model_calls,
        "samples": len(posterior.samples),
        "satisfying_ess": ess,
        "satisfying_ess_copies": _ess([w for _, w in kept]),
        "log_evidence": posterior.log_evidence,
        "examples": [s.text for s in posterior.resample(3, seed=0)] if posterior.found else [],
    }


def _timed(run: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    value = run()
    return time.perf_counter() - started, value


def _stratified_suffix(target: Target, per_length: int, seed: int) -> Posterior:
    """Importance with a pool proposal for "ends with S": one stratum per free length L, merged."""
    model = target.model
    suffix_ids = model.encode_continuation(SUFFIX)
    eos = model.eos_token_ids[0]
    runs = []
    for length in range(target.max_new_tokens - len(suffix_ids)):
        spans = {length: list(suffix_ids), length + len(suffix_ids): [eos]}
        runs.append(
            importance(
                target, n_particles=per_length, proposal=[ForceTokens(spans)], seed=seed * 1000 + length
            )
        )
    samples = [s for r in runs for s in r.samples]
    log_w = torch.cat([r.log_weights for r in runs])
    total = len(samples)
    return Posterior(
        samples,
        log_w,
        float(torch.logsumexp(log_w, 0)) - math.log(per_length),  # Z = Σ_L Z_L, each from per_length draws
        torch.cat([r.log_potentials for r in runs]),
        sum(r.model_calls for r in runs),
        f"importance, pool proposal (forced suffix after L free tokens, {per_length} per L, {total} in all)",
    )


def _suffix_task(model: Any, particles: int, max_new_tokens: int, seeds: list[int]) -> list[dict[str, Any]]:
    target = Target(model, PROMPT, [ends_with(SUFFIX)], max_new_tokens=max_new_tokens)
    rows = []
    for seed in seeds:
        seconds, post = _timed(lambda s=seed: smc(target, n_particles=particles, seed=s))
        rows.append(
            {"seed": seed, "method": "steering smc (lookahead)", **_summary(post, seconds, _ends(post))}
        )
        budget = post.model_calls
        seconds, post = _timed(
            lambda s=seed, b=budget: rejection(target, n_particles=1000, budget=b, seed=s, batch_size=8)
        )
        rows.append({"seed": seed, "method": "rejection", **_summary(post, seconds, _ends(post))})
        seconds, post = _timed(lambda s=seed: _stratified_suffix(target, 2, s))
        rows.append({"seed": seed, "method": "importance + pool", **_summary(post, seconds, _ends(post))})
        print(rows[-3:], flush=True)
    return rows


def _ends(posterior: Posterior) -> list[bool]:
    return [s.text.endswith(SUFFIX) for s in posterior.samples]


def _infill_task(model: Any, particles: int, max_new_tokens: int, seeds: list[int]) -> list[dict[str, Any]]:
    target = Target(model, PROMPT, [fixed_tokens(INFILL)], max_new_tokens=max_new_tokens)
    bound = target.resolved[0]

    def satisfied(post: Posterior) -> list[bool]:
        return [bound.matches(s.token_ids) == len(bound.ids) for s in post.samples]  # type: ignore[attr-defined]

    rows = []
    for seed in seeds:
        seconds, post = _timed(
            lambda s=seed: smc(target, n_particles=particles, proposal=[ForceTokens(dict(INFILL))], seed=s)
        )
        rows.append(
            {"seed": seed, "method": "steering smc (ForceTokens)", **_summary(post, seconds, satisfied(post))}
        )
        budget = post.model_calls
        seconds, post = _timed(
            lambda s=seed, b=budget: rejection(target, n_particles=1000, budget=b, seed=s, batch_size=8)
        )
        rows.append({"seed": seed, "method": "rejection", **_summary(post, seconds, satisfied(post))})
        seconds, post = _timed(
            lambda s=seed: importance(
                target, n_particles=particles, proposal=[ForceTokens(dict(INFILL))], seed=s
            )
        )
        rows.append({"seed": seed, "method": "importance + pool", **_summary(post, seconds, satisfied(post))})
        print(rows[-3:], flush=True)
    return rows


def _llamppl(kind: str, particles: int, max_new_tokens: int, seed: int) -> dict[str, Any]:
    """One llamppl run in its own interpreter; a record saying why when it cannot run."""
    if not LLAMPPL_PYTHON.exists():
        return {"method": f"llamppl ({kind})", "error": f"no llamppl venv at {LLAMPPL_PYTHON}"}
    out = RESULTS.parent / f"llamppl_{kind}_{seed}.json"
    command = [
        str(LLAMPPL_PYTHON),
        str(Path(__file__).parent / "llamppl_runner.py"),
        *("--particles", str(particles), "--max-new-tokens", str(max_new_tokens), "--seed", str(seed)),
        *("--prompt", PROMPT, "--suffix", SUFFIX, "--model", kind, "--dtype", "bfloat16", "--out", str(out)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        return {"method": f"llamppl ({kind})", "error": done.stderr.strip().splitlines()[-1:]}
    record = json.loads(out.read_text())
    if kind == "lookahead":
        samples = record.get("samples", [])  # the top candidates, with normalised weights
        weights = [s["weight"] for s in samples if s["ends_with_suffix"]]
        ess = record.get("candidate_ess_distinct", 0.0)
        copies = record.get("candidate_ess", 0.0)
    else:
        finals = record["particles"]
        logs = torch.tensor([p["log_weight"] for p in finals], dtype=torch.float64)
        weights = logs.softmax(0).tolist() if torch.isfinite(logs).any() else [0.0] * len(finals)
        good = [
            (p["text"], w) for w, p in zip(weights, finals, strict=True) if p["ends_with_suffix"] and w > 0
        ]
        ess = _distinct_ess([t for t, _ in good], [w for _, w in good])
        copies = _ess([w for _, w in good])
    return {
        "seed": seed,
        "method": f"llamppl ({kind})",
        "seconds": record["wall_seconds"],
        "calls": record["calls"]["queries"],
        "forward_tokens": record["calls"]["forward_tokens"],
        "samples": record.get("candidates", len(record["particles"])),
        "satisfying_ess": ess,
        "satisfying_ess_copies": copies,
        "log_evidence": record.get("log_Z"),
        "examples": [s["text"] for s in record.get("samples", [])[:3]]
        or [p["text"] for p in record["particles"] if p["ends_with_suffix"]][:3],
        "versions": record["versions"],
        "load_seconds": record["load_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="gemma-270m")
    parser.add_argument("--particles", type=int, default=8)
    parser.add_argument("--suffix-tokens", type=int, default=32, help="max_new_tokens of the suffix task")
    parser.add_argument("--infill-tokens", type=int, default=16, help="max_new_tokens of the infill task")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--llamppl-seeds", type=int, default=5, help="runs of each llamppl model (≈1 min each)"
    )
    parser.add_argument("--no-llamppl", action="store_true")
    parser.add_argument("--write", type=Path, help="update this markdown file's conditioning section")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the markdown from the saved results"
    )
    args = parser.parse_args()
    if args.render_only:
        if args.write:
            write_markdown(args.write, json.loads(RESULTS.read_text()))
        return
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    model = load_model(args.model, dtype="bfloat16")
    seeds = list(range(args.seeds))
    suffix = _suffix_task(model, args.particles, args.suffix_tokens, seeds)
    infill = _infill_task(model, args.particles, args.infill_tokens, seeds)
    llamppl = []
    if not args.no_llamppl:
        del model  # llamppl loads its own copy
        for kind in ("filter", "lookahead"):
            for seed in range(args.llamppl_seeds):
                llamppl.append(_llamppl(kind, args.particles, args.suffix_tokens, seed))
                print(llamppl[-1], flush=True)
    saved = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(),
        "suffix": suffix,
        "infill": infill,
        "llamppl": llamppl,
        "wall_s": time.perf_counter() - started,
        "load_average": [load_before, os.getloadavg()[0]],
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(saved, indent=2, ensure_ascii=False))
    print(f"wrote {RESULTS} ({saved['wall_s']:.0f} s)")
    if args.write:
        write_markdown(args.write, saved)


# ---------------------------------------------------------------- the markdown section


def _aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method: medians over seeds of seconds, calls and satisfying ESS, and the rates."""
    methods: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if "error" not in row:
            methods.setdefault(row["method"], []).append(row)
    out = []
    for method, runs in methods.items():
        ess = [r["satisfying_ess"] for r in runs]
        calls = [r["calls"] for r in runs]
        seconds = [r["seconds"] for r in runs]
        out.append(
            {
                "method": method,
                "runs": len(runs),
                "seconds": statistics.median(seconds),
                "calls": statistics.median(calls),
                "ess": statistics.median(ess),
                "ess_copies": statistics.median(
                    r.get("satisfying_ess_copies", r["satisfying_ess"]) for r in runs
                ),
                "found": sum(e > 0 for e in ess),
                "per_kcall": statistics.median(1000 * e / c for e, c in zip(ess, calls, strict=True)),
                "per_kcall_all": [1000 * e / c for e, c in zip(ess, calls, strict=True)],
                "per_kcall_copies": statistics.median(
                    1000 * r.get("satisfying_ess_copies", r["satisfying_ess"]) / r["calls"] for r in runs
                ),
                "per_min": statistics.median(60 * e / s for e, s in zip(ess, seconds, strict=True)),
                "log_evidence": [r["log_evidence"] for r in runs],
                "forward_tokens": runs[0].get("forward_tokens"),
                "example": next((r["examples"][0] for r in runs if r["examples"]), ""),
            }
        )
    return out


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| sampler | runs | model calls (median) | satisfying samples (ESS, median) | ESS counting copies "
        "| runs that found one | per 1000 calls | per minute | seconds | log Ẑ per run | an example |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        calls = f"{r['calls']:.0f}"
        if r["forward_tokens"]:
            calls += f" ({r['forward_tokens']} token positions computed)"
        evidence = ", ".join(
            "—" if v is None or not math.isfinite(v) else f"{v:.1f}" for v in r["log_evidence"]
        )
        example = r["example"].replace("\n", " ").replace("|", "\\|")
        lines.append(
            f"| {r['method']} | {r['runs']} | {calls} | {r['ess']:.2f} | {r['ess_copies']:.2f} "
            f"| {r['found']}/{r['runs']} "
            f"| {r['per_kcall']:.3f} | {r['per_min']:.2f} | {r['seconds']:.1f} | {evidence} | {example[:90]!s} |"
        )
    return lines


def _copies_note(ours: dict[str, Any], llamppl: list[dict[str, Any]]) -> list[str]:
    """The same comparison with copies counted as samples, and the spread over seeds."""
    best = max(llamppl, key=lambda r: r["per_kcall"])

    def spread(row: dict[str, Any]) -> str:
        return f"{min(row['per_kcall_all']):.2f}–{max(row['per_kcall_all']):.2f}"

    return [
        f"Counting copies of a text as separate samples, the medians are steering {ours['per_kcall_copies']:.2f} and "
        f"{best['method']} {best['per_kcall_copies']:.2f} per 1000 calls (on that measure steering is "
        f"{'not behind' if ours['per_kcall_copies'] >= best['per_kcall_copies'] else 'behind'}). The two run "
        "the same algorithm and differ in where a particle's candidate is recorded: llamppl records it after "
        "resampling (the copies of a resampled particle then give identical candidates), steering before. "
        f"Per-run spread of merged ESS per 1000 calls: steering {spread(ours)}, {best['method']} {spread(best)} "
        "— wide on both sides at 8 particles.",
        "",
    ]


def write_markdown(path: Path, saved: dict[str, Any]) -> None:
    m, args = saved["machine"], saved["args"]
    suffix = _aggregate(saved["suffix"] + saved["llamppl"])
    infill = _aggregate(saved["infill"])
    by = {r["method"]: r for r in suffix}
    ours, reject = by["steering smc (lookahead)"], by["rejection"]
    ours_rate = ours["per_kcall"]
    reject_rate = reject["per_kcall"]
    # Rejection's expected rate: Z satisfying samples per draw, a draw costing its length in calls.
    z = statistics.median(v for v in ours["log_evidence"] if v is not None and math.isfinite(v))
    draws = [r for r in saved["suffix"] if r["method"] == "rejection" and r["drawn"]]
    mean_len = statistics.median(r["calls"] / r["drawn"] for r in draws) if draws else args["suffix_tokens"]
    expected_reject = 1000 * math.exp(z) / mean_len
    held_rejection = ours_rate >= 10 * max(reject_rate, expected_reject)
    llamppl = [r for r in suffix if r["method"].startswith("llamppl")]
    errors = [r for r in saved["llamppl"] if "error" in r]
    best_llamppl = max((r["per_kcall"] for r in llamppl), default=None)
    held_llamppl = best_llamppl is not None and ours_rate >= best_llamppl
    lines = [
        "## Conditioning: satisfying samples per model call (`benchmarks/conditioning.py`)",
        "",
        f"Model `{args['model']}` in bfloat16, {m['threads']} CPU threads ({m['cpu']}), torch {m['torch']}, "
        f"transformers {m['transformers']}. Prompt {PROMPT!r}, base model at temperature 1. One run "
        f"({saved['wall_s'] / 60:.1f} min; load average {saved['load_average'][0]:.1f} before, "
        f"{saved['load_average'][1]:.1f} after). {args['particles']} particles for SMC and llamppl; "
        f"{args['seeds']} seeds for steering's samplers, {args.get('llamppl_seeds', 1)} for each llamppl model; medians over seeds. A model call = "
        "one next-token distribution (see the script's docstring); satisfying samples = the ESS of the "
        "weighted samples that satisfy the condition, with identical texts merged (their weights summed: "
        "after resampling, N copies of a particle are one sample, not N; rejection: the accepted count). "
        "The ESS counting copies as separate samples is shown beside it; the rates use the merged ESS.",
        "",
        f"**Suffix**: the story ends with {SUFFIX!r} within {args['suffix_tokens']} new tokens.",
        "",
        *_table(suffix),
        "",
        f"**Infill**: generated tokens 4… are {INFILL[4]!r}, within {args['infill_tokens']} new tokens.",
        "",
        *_table(infill),
        "",
        f"**Bar 1** (SMC ≥ 10× rejection's satisfying samples per model call on the suffix task): "
        f"**{'held' if held_rejection else 'not held'}**. SMC {ours_rate:.3f} per 1000 calls; rejection found "
        f"{reject['ess']:.0f} in its budget (the same calls as SMC), and its expected rate is "
        f"Z / (mean draw length) = e^{z:.1f} / {mean_len:.0f} ≈ {expected_reject:.2g} per 1000 calls, "
        f"from SMC's median log Ẑ.",
        "",
        f"**Bar 2** (no worse than llamppl on the same task): **{'held' if held_llamppl else 'not held'}**"
        + (
            f". Best llamppl model {best_llamppl:.3f} satisfying samples per 1000 calls (its cache-missing "
            f"queries), steering {ours_rate:.3f}; per minute steering {ours['per_min']:.2f}, llamppl "
            + ", ".join(f"{r['method']} {r['per_min']:.2f}" for r in llamppl)
            + "."
            if llamppl
            else f": llamppl did not run ({errors})."
        ),
        "",
        *(_copies_note(ours, llamppl) if llamppl else []),
        "Notes. llamppl's idiomatic model (EOS only where the text already ends with S) rarely or never "
        "writes the suffix by chance; the lookahead model is our algorithm written in llamppl, so its "
        "satisfying samples per call should match ours up to noise, and the difference is in time: "
        "llamppl's HF backend recomputes each continuation from the prompt (no KV cache past the prompt), "
        "so its token positions grow quadratically with length. Installing llamppl beside steering: its "
        "own venv with `torch==2.13.0` first, then `--no-deps llamppl genlm-backend` and their CPU "
        "dependencies (commands in `benchmarks/llamppl_runner.py`); it pins no torch.",
        "",
        "Reproduce: `.venv/bin/python benchmarks/conditioning.py --write BENCHMARKS.md` "
        "(`--render-only` rewrites this section from `benchmarks/results/conditioning.json`).",
    ]
    write_section(path, "conditioning", lines)


if __name__ == "__main__":
    sys.exit(main())

"""Constrained decoding: grammar compile time, per-token mask cost and end-to-end tokens/s, in one run.

Run: `python benchmarks/constrained.py --write BENCHMARKS.md` (or `make bench`). Three measurements on
one model (gemma-270m, 262k vocabulary) and one JSON schema and one regex:

(a) compile: from the user's schema or regex to a matcher that can produce its first mask, for steering
    (llguidance), outlines-core and xgrammar, each where it imports; the one-time tokenizer tables apart.
(b) mask: µs per token per row to fill the allowed-token bitmask of the 262k vocabulary, replaying the
    token traces that steering sampled in (c) through each backend's matcher; and the cost of applying a
    bitmask to (8, 262k) float32 scores.
(c) end to end: `steering.generate` tokens/s (sampling, temperature 1, 64 new tokens) unconstrained,
    with the JSON schema and with the regex, for three workloads: 32 prompts at batch 8 (a finished
    row's slot takes the next waiting prompt — the bar's workload), 8 prompts at batch 8 (nothing
    waits, so a finished slot idles) and 1 prompt at batch 1; same prompts and seeds in every run, the
    variants interleaved round by round, medians over rounds. Tokens are the generated tokens: a
    constrained row stops when its grammar can only stop, so it generates fewer; on the 32-prompt
    workload an unconstrained run with each row cut at its constrained twin's length (a per-prompt
    budget) measures what the constraint itself costs, at the same tokens, queue and refills.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import PROMPTS, machine
from constrained_report import write_markdown
from grammar_backends import REGEX, SCHEMA, available_backends, competitor_status, version

from steering.controls import JsonSchema, Regex
from steering.controls.grammar import unpack_bitmask
from steering.decode import generate
from steering.decode.sampling import probabilities, sample_inverse_cdf, step_kl
from steering.models import load_model

# ---------------------------------------------------------------- (a) compile and (b) mask cost


def _seconds(run: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = run()
    return time.perf_counter() - started, value


def _compile_times(backend: Any, vocab: int, repeats: int) -> dict[str, Any]:
    """Compile (to a matcher) and time-to-first-mask, median of `repeats` cold compiles, per grammar."""
    row: dict[str, Any] = {"backend": backend.name}
    bitmask = torch.zeros((1, (vocab + 31) // 32), dtype=torch.int32)
    for kind in ("json", "regex"):
        compile_s, first_s = [], []
        for _ in range(repeats):
            seconds, (matcher, compiled) = _seconds(lambda k=kind: backend.compile(k))
            fill_s, _ = _seconds(lambda m=matcher: backend.fill(m, bitmask))
            compile_s.append(seconds)
            first_s.append(seconds + fill_s)
        row[f"{kind}_compile_ms"] = 1e3 * statistics.median(compile_s)
        row[f"{kind}_first_mask_ms"] = 1e3 * statistics.median(first_s)
        row[f"_{kind}_compiled"] = compiled
    return row


def _mask_costs(
    backend: Any, compiled: Any, traces: list[list[int]], vocab: int, tokenizer: Any
) -> dict[str, Any]:
    """Replay each trace: time the bitmask fill before every token, then consume the token."""
    bitmask = torch.zeros((1, (vocab + 31) // 32), dtype=torch.int32)
    micros: list[float] = []
    rejected = []
    for trace in traces:
        matcher = backend.matcher(compiled)
        for step, token in enumerate(trace):
            started = time.perf_counter_ns()
            backend.fill(matcher, bitmask)
            micros.append((time.perf_counter_ns() - started) / 1e3)
            if not backend.consume(matcher, token):
                # The backend reads the grammar differently from llguidance: stop this trace here.
                rejected.append({"after": tokenizer.decode(trace[:step]), "token": tokenizer.decode([token])})
                break
    return {
        "median_us": statistics.median(micros),
        "p90_us": float(np.percentile(micros, 90)),
        "steps": len(micros),
        "rejected": rejected,
    }


def _control_step_cost(model: Any, kind: str, traces: list[list[int]]) -> float:
    """µs per row of `Grammar.__call__` at batch 8 (fill every row, unpack, mask), replaying traces."""
    grammar = JsonSchema(SCHEMA) if kind == "json" else Regex(REGEX)
    batch = len(traces)
    grammar.start(tokenizer=model.tokenizer, prompt_width=1, batch_size=batch)
    vocab = model.module.config.vocab_size
    scores = torch.randn((batch, vocab), generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    ids = torch.zeros((batch, 1), dtype=torch.long)
    micros = []
    for step in range(max(len(t) for t in traces)):
        started = time.perf_counter_ns()
        grammar(ids, scores)
        micros.append((time.perf_counter_ns() - started) / 1e3 / batch)
        for row, trace in enumerate(traces):
            if step < len(trace):
                grammar.is_complete(trace[: step + 1], row=row)
    return statistics.median(micros)


def _apply_costs(model: Any, traces: list[list[int]], repeats: int = 30) -> dict[str, float]:
    """µs per row to turn a filled (8, W) bitmask into masked (8, V) float32 scores, three ways."""
    grammar = JsonSchema(SCHEMA)
    batch, vocab = len(traces), model.module.config.vocab_size
    grammar.start(tokenizer=model.tokenizer, prompt_width=1, batch_size=batch)
    scores = torch.randn((batch, vocab), generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    for row, trace in enumerate(traces):  # a mid-output state: some rows in strings, some not
        grammar.is_complete(trace[: len(trace) // 2], row=row)
    grammar(torch.zeros((batch, 1), dtype=torch.long), scores)
    bitmask = grammar._bitmask
    assert bitmask is not None

    def ours() -> torch.Tensor:
        return torch.where(unpack_bitmask(bitmask, vocab), scores, float("-inf"))

    def previous() -> torch.Tensor:  # before this benchmark: int32 shifts, clone, indexed masked_fill
        bits = torch.arange(32, dtype=torch.int32)
        allowed = ((bitmask.unsqueeze(-1) >> bits) & 1).reshape(batch, -1)[:, :vocab].bool()
        rows = torch.arange(batch)
        masked = scores.clone()
        masked[rows] = scores[rows].masked_fill(~allowed[rows], float("-inf"))
        return masked

    ways: dict[str, Callable[[], torch.Tensor]] = {"steering": ours, "previous": previous}
    try:
        import xgrammar

        def xgrammar_kernel() -> torch.Tensor:
            masked = scores.clone()
            xgrammar.apply_token_bitmask_inplace(masked, bitmask)
            return masked

        ways["xgrammar"] = xgrammar_kernel
    except ImportError:
        pass
    reference = ours()
    costs = {}
    for name, way in ways.items():
        assert torch.equal(way(), reference), name  # every way must give the same exact mask
        micros = []
        for _ in range(repeats):
            started = time.perf_counter_ns()
            way()
            micros.append((time.perf_counter_ns() - started) / 1e3 / batch)
        costs[name] = statistics.median(micros)
    return costs


def _engine_costs(vocab: int, repeats: int = 30) -> dict[str, dict[str, float]]:
    """ms for the engine's per-step sampling math on (8, V), on plain log-probs and on masked ones.

    Masked = 97% of entries −inf, as a grammar leaves them. `exp` is torch's (what the engine used
    before), `probabilities` the softmax the engine uses now; then the inverse-CDF draw and the exact
    step KL given those probabilities.
    """
    plain = torch.randn((8, vocab), generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    masked = plain.clone()
    masked[:, : int(0.97 * vocab)] = float("-inf")
    masked = masked.log_softmax(-1)
    uniforms = torch.rand(8, generator=torch.Generator().manual_seed(1))
    costs: dict[str, dict[str, float]] = {}
    for name, logq in (("finite", plain), ("masked", masked)):
        probs = probabilities(logq)
        ops: dict[str, Callable[[], Any]] = {
            "exp": logq.exp,
            "probabilities": lambda q=logq: probabilities(q),
            "sample": lambda q=logq, p=probs: sample_inverse_cdf(q, uniforms, probs=p),
            "step_kl": lambda q=logq, p=probs: step_kl(q, plain, probs=p),
        }
        for op, run in ops.items():
            millis = []
            for _ in range(repeats):
                started = time.perf_counter_ns()
                run()
                millis.append((time.perf_counter_ns() - started) / 1e6)
            costs.setdefault(op, {})[name] = statistics.median(millis)
    return costs


# ---------------------------------------------------------------- (c) end to end


class NoOpControl:
    """A logit control that returns the scores unchanged: what the engine spends on any logit control."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores

    def __repr__(self) -> str:
        return "NoOpControl()"


def _variants() -> dict[str, list[object]]:
    return {
        "unconstrained": [],
        "no-op logit control": [NoOpControl()],
        "JSON schema": [JsonSchema(SCHEMA)],
        "regex": [Regex(REGEX)],
    }


# 32 distinct prompts: the 8 openings under 4 framings (one sample each, so a row is a prompt and
# a per-prompt budget can give every row the length its constrained twin had).
FRAMINGS = ("", "Draft: ", "Note: ", "Story: ")
QUEUE = [framing + prompt for framing in FRAMINGS for prompt in PROMPTS]
MATCHED = {"JSON schema": "unconstrained, JSON's lengths", "regex": "unconstrained, regex's lengths"}

# (name, prompts, samples per prompt, batch size, with matched-length runs); the first is the bar's.
WORKLOADS = [
    ("32 prompts at batch 8", QUEUE, 1, 8, True),
    ("8 prompts at batch 8", PROMPTS, 1, 8, False),
    ("1 prompt at batch 1", PROMPTS[:1], 1, 1, False),
]


def _run(
    model: Any,
    workload: tuple[str, list[str], int, int, bool],
    controls: list[object],
    budgets: int | list[int],
) -> dict[str, Any]:
    _, prompts, n, batch, _ = workload
    started = time.perf_counter()
    samples = generate(
        model, prompts, controls=controls, n=n, max_new_tokens=budgets, batch_size=batch, seed=0
    )
    seconds = time.perf_counter() - started
    lengths = [len(s.token_ids) for s in samples]
    stats = samples.stats
    return {
        "seconds": seconds,
        "tokens": sum(lengths),
        "lengths": lengths,
        # The decoder's own counters: draws (one per step), rows put into freed slots, prefill forwards.
        "steps": stats.sample_calls,
        "refilled": stats.refilled_rows,
        "prefills": stats.prefill_forwards,
        "stops": [s.stop_reason for s in samples],
        "token_ids": [list(s.token_ids) for s in samples],
    }


def _end_to_end(model: Any, *, rounds: int, warmup: int, max_new_tokens: int) -> list[dict[str, Any]]:
    """Interleaved rounds: every variant on every workload once per round; the first `warmup` discarded.

    On the matched workload each constrained variant is followed by an unconstrained run whose rows
    get exactly the lengths the constrained rows had (a per-prompt budget): the same tokens, queue and
    refills, so the ratio between the two is what the constraint costs.
    """
    variants = _variants()
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for round_index in range(warmup + rounds):
        for workload in WORKLOADS:
            for name, controls in variants.items():
                result = _run(model, workload, controls, max_new_tokens)
                if round_index >= warmup:
                    runs.setdefault((workload[0], name), []).append(result)
                if workload[4] and name in MATCHED:
                    matched = _run(model, workload, [], result["lengths"])
                    if round_index >= warmup:
                        runs.setdefault((workload[0], MATCHED[name]), []).append(matched)
        print(f"round {round_index + 1}/{warmup + rounds}", flush=True)
    rows = []
    for (workload_name, name), results in runs.items():
        batch = next(w[3] for w in WORKLOADS if w[0] == workload_name)
        base = runs[(workload_name, "unconstrained")]
        twin = runs.get((workload_name, MATCHED.get(name, "")))
        rates = [r["tokens"] / r["seconds"] for r in results]
        step_ms = [1e3 * r["seconds"] / r["steps"] for r in results]
        base_rates = [r["tokens"] / r["seconds"] for r in base]
        base_step = [1e3 * r["seconds"] / r["steps"] for r in base]
        first = results[0]
        rows.append(
            {
                "workload": workload_name,
                "batch": batch,
                "variant": name,
                "rows": len(first["stops"]),
                "tokens": first["tokens"],
                "steps": first["steps"],
                "refilled": first["refilled"],
                "prefills": first["prefills"],
                "slot_use": first["tokens"] / (first["steps"] * batch),
                "stops": first["stops"],
                "token_ids": first["token_ids"],
                "tokens_per_s": statistics.median(rates),
                "ms_per_step": statistics.median(step_ms),
                # Paired within a round: the neighbouring runs saw the same machine load.
                "rate_ratio": statistics.median(a / b for a, b in zip(rates, base_rates, strict=True)),
                "matched_ratio": None
                if twin is None
                else statistics.median(
                    a / (t["tokens"] / t["seconds"]) for a, t in zip(rates, twin, strict=True)
                ),
                "step_ratio": statistics.median(b / a for a, b in zip(step_ms, base_step, strict=True)),
                # Best runs: the ones least disturbed by other work on the machine.
                "best_tokens_per_s": max(rates),
                "best_rate_ratio": max(rates) / max(base_rates),
                "best_matched_ratio": None
                if twin is None
                else max(rates) / max(t["tokens"] / t["seconds"] for t in twin),
                "best_ms_per_step": min(step_ms),
                "best_step_ratio": min(base_step) / min(step_ms),
                "all_tokens_per_s": rates,
            }
        )
    return rows


# ---------------------------------------------------------------- main and the markdown section


def _machine() -> dict[str, Any]:
    packages = ("llguidance", "outlines-core", "xgrammar", "apache-tvm-ffi", "numpy")
    return {
        **machine(),
        "cores": len(os.sched_getaffinity(0)),
        **{package: version(package) for package in packages},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="gemma-270m")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4, help="end-to-end rounds (median)")
    parser.add_argument("--warmup", type=int, default=1, help="end-to-end rounds discarded first")
    parser.add_argument("--compile-repeats", type=int, default=3)
    parser.add_argument("--write", type=Path, help="update this markdown file's constrained section")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the markdown from results/constrained.json"
    )
    args = parser.parse_args()
    results_path = Path(__file__).parent / "results" / "constrained.json"
    if args.render_only:
        if args.write:
            write_markdown(args.write, json.loads(results_path.read_text()))
        return

    started, load_before = time.perf_counter(), os.getloadavg()[0]
    model = load_model(args.model, dtype="bfloat16")
    vocab = model.module.config.vocab_size
    status = competitor_status()
    print("competitors:", status, flush=True)

    end_to_end = _end_to_end(
        model, rounds=args.rounds, warmup=args.warmup, max_new_tokens=args.max_new_tokens
    )
    for row in end_to_end:
        print({k: v for k, v in row.items() if k not in ("token_ids", "stops", "all_tokens_per_s")})
    traces = {
        kind: next(r for r in end_to_end if r["workload"] == WORKLOADS[1][0] and r["variant"] == name)[
            "token_ids"
        ]
        for kind, name in (("json", "JSON schema"), ("regex", "regex"))
    }

    compile_rows, mask_rows = [], []
    for backend in available_backends(status):
        setup_s, _ = _seconds(lambda b=backend: b.setup(model.tokenizer, vocab))
        row = _compile_times(backend, vocab, args.compile_repeats)
        row["setup_s"] = getattr(backend, "setup_s", setup_s)
        masks = {"backend": backend.name}
        for kind in ("json", "regex"):
            masks[kind] = _mask_costs(
                backend, row.pop(f"_{kind}_compiled"), traces[kind], vocab, model.tokenizer
            )
        compile_rows.append(row)
        mask_rows.append(masks)
        print(row, masks, flush=True)
    control_step = {kind: _control_step_cost(model, kind, traces[kind]) for kind in ("json", "regex")}
    apply_costs = _apply_costs(model, traces["json"])
    engine_costs = _engine_costs(vocab)
    print("control step µs/row:", control_step, "apply µs/row:", apply_costs, flush=True)

    saved = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": _machine(),
        "competitors": status,
        "schema": SCHEMA,
        "regex": REGEX,
        "compile": compile_rows,
        "mask": mask_rows,
        "control_step_us_per_row": control_step,
        "apply_us_per_row": apply_costs,
        "engine_ms": engine_costs,
        "end_to_end": end_to_end,
        "wall_s": time.perf_counter() - started,
        "load_average": [load_before, os.getloadavg()[0]],  # other work on the machine, before and after
    }
    results_path.parent.mkdir(exist_ok=True)
    results_path.write_text(json.dumps(saved, indent=2))
    print(f"wrote {results_path} ({saved['wall_s']:.0f} s)")
    if args.write:
        write_markdown(args.write, saved)


if __name__ == "__main__":
    main()

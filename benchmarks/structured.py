"""Structured output on real public JSON schemas: does the output validate within its budget?

Run: `python benchmarks/structured.py --write BENCHMARKS.md` (about 10–30 minutes on 2 CPU cores).
For every schema in `benchmarks/data/schemas/` (48 real schemas from SchemaStore and Snowplow's Iglu
Central, chosen mechanically: see its README.md) and every configuration, one sample from gemma-270m
(temperature 1, seed 0, `max_new_tokens` 256) with the prompt `A JSON object for: <title>\\n`
(`title`, else the first line of `description`, else the file name). A schema the generator cannot
compile is *refused* (the reason is kept); an accepted schema's output *validates* when it parses as
JSON and `jsonschema` (with its format checker) accepts it under the schema as written.

Configurations: "before" is the pool as it was (no budget awareness, duplicate keys allowed, JSON
Schema's open objects); "after" is the default (finishes within budget, no duplicate keys, strict
objects); "after (open objects)" keeps the first two with `strict=False`, to show what strictness adds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import jsonschema
from common import machine, machine_line, write_section

from steering.controls import JsonSchema
from steering.decode import generate
from steering.errors import SteeringError
from steering.models import load_model

DATA = Path(__file__).parent / "data" / "schemas"
CONFIGS: dict[str, dict[str, bool]] = {
    "before": {"budget_aware": False, "unique_keys": False, "strict": False},
    "after": {},
    "after (open objects)": {"strict": False},
}


def prompt_for(schema: dict[str, Any], path: Path) -> str:
    """'A JSON object for: <title>\\n' (else the description's first line, else the file's name)."""
    subject = schema.get("title") or str(schema.get("description") or "").strip().split("\n")[0]
    if not isinstance(subject, str) or not subject.strip():
        subject = path.stem.replace("-", " ").replace("_", " ").replace(".", " ")
    return f"A JSON object for: {subject.strip()[:120]}\n"


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError(f"duplicate key among {keys}")
    return dict(pairs)


def check(text: str, schema: dict[str, Any]) -> str:
    """'valid', or what is wrong: 'not JSON', 'duplicate key', or the schema error (short)."""
    try:
        value = json.loads(text, object_pairs_hook=_pairs)
    except ValueError as error:
        return "duplicate key" if "duplicate key" in str(error) else "not JSON"
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    error = jsonschema.exceptions.best_match(
        cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(value)
    )
    return "valid" if error is None else f"schema: {error.message[:80]}"


def run_one(model: Any, path: Path, options: dict[str, bool], budget: int) -> dict[str, Any]:
    schema = json.loads(path.read_text(encoding="utf-8"))
    row: dict[str, Any] = {"schema": f"{path.parent.name}/{path.name}", "prompt": prompt_for(schema, path)}
    started = time.perf_counter()
    try:
        control = JsonSchema(schema, **options)
        samples = generate(model, [row["prompt"]], controls=[control], max_new_tokens=budget, seed=0)
    except SteeringError as error:
        return {**row, "refused": str(error).split(" Received:")[0][:160]}
    sample = samples[0]
    return {
        **row,
        "refused": None,
        "seconds": time.perf_counter() - started,
        "tokens": len(sample.token_ids),
        "stop_reason": sample.stop_reason,
        "check": check(sample.text, schema),
        "text": sample.text,
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    accepted = [r for r in rows if r["refused"] is None]
    valid = [r for r in accepted if r["check"] == "valid"]
    return {
        "schemas": len(rows),
        "accepted": len(accepted),
        "valid": len(valid),
        "share_valid": len(valid) / len(accepted) if accepted else float("nan"),
        "unfinished": sum(r["stop_reason"] == "unfinished" for r in accepted),
        "duplicate_keys": sum(r["check"] == "duplicate key" for r in accepted),
        "mean_tokens": statistics.mean(r["tokens"] for r in accepted) if accepted else float("nan"),
        "mean_seconds": statistics.mean(r["seconds"] for r in accepted) if accepted else float("nan"),
        "total_seconds": sum(r["seconds"] for r in accepted),
    }


def refusal(message: str) -> str:
    """A refusal's reason in a few words (the full message is in results/structured.json)."""
    if "Resource '" in message:
        return "a remote `$ref` (schemas are not fetched)"
    if "Unimplemented keys" in message:
        return "unsupported keyword " + message.split("[", 1)[1].split("]", 1)[0].replace('"', "`")
    if "Unknown format" in message:
        return "unknown string format `" + message.split("Unknown format: ", 1)[1].rstrip(".") + "`"
    if "look-around" in message:
        return "a `pattern` with look-around"
    return " ".join(message.split())[:100]


def markdown(saved: dict[str, Any]) -> list[str]:
    budget = saved["args"]["max_new_tokens"]
    lines = [
        "## Structured output on real public JSON schemas (`benchmarks/structured.py`)",
        "",
        f"{next(iter(saved['summary'].values()))['schemas']} real schemas (24 from SchemaStore, 24 from Snowplow's Iglu "
        "Central, chosen by a seeded random draw: `benchmarks/data/schemas/README.md`), one sample each from "
        f"{saved['args']['model']} ({saved['args']['dtype']}, temperature 1, seed 0) with the prompt `A JSON object for: <title>\\n`, "
        f"**budget {budget} new tokens**. *Valid*: the output parses (no duplicate key) and `jsonschema` "
        "(format checker on) accepts it under the schema as written. Machine: "
        f"{machine_line(saved['machine'])}, {saved['machine']['cores']} cores; timings are wall-clock on a "
        "machine shared with other work.",
        "",
        "| configuration | accepted | valid / accepted | unfinished | duplicate keys | mean tokens | "
        "mean s / schema |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in sorted(saved["summary"], key=lambda n: n != "before"):  # before first
        summary = saved["summary"][name]
        lines.append(
            f"| {name} | {summary['accepted']}/{summary['schemas']} | {summary['valid']}/{summary['accepted']} "
            f"= **{summary['share_valid']:.2f}** | {summary['unfinished']} | {summary['duplicate_keys']} | "
            f"{summary['mean_tokens']:.0f} | {summary['mean_seconds']:.1f} |"
        )
    reasons: dict[str, list[str]] = {}
    for row in saved["results"]["after"]:
        if row["refused"]:
            reasons.setdefault(refusal(row["refused"]), []).append(row["schema"].split("/")[1])
    refused = sum(len(names) for names in reasons.values())
    lines += ["", f"Refused ({refused}, the same in every configuration), by reason:", ""]
    lines += [f"- {reason} ({len(names)}): {', '.join(names)}" for reason, names in reasons.items()]
    failed = [r for r in saved["results"]["after"] if r["refused"] is None and r["check"] != "valid"]
    lines += ["", "Not valid after: " + ("; ".join(f"{r['schema']} ({r['check']}, {r['stop_reason']})"
                                                   for r in failed) or "none") + "."]  # fmt: skip
    lines += [
        "",
        '"before" is the pool without budget awareness, with duplicate keys and open objects (the previous '
        'behaviour, `JsonSchema(schema, budget_aware=False, unique_keys=False, strict=False)`); "after" '
        "the defaults: near the end of the budget only tokens after which the JSON can still close "
        "(`steering/controls/closing.py`), no repeated key, objects closed to unlisted keys unless the "
        "schema allows them. Both read a `$schema` that names a non-JSON-Schema meta-schema (Iglu's) as "
        "Draft 2020-12; the previous commit refused all 24 Snowplow schemas for it (llguidance tried to "
        "fetch the meta-schema). Full outputs: `benchmarks/results/structured.json`.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="gemma-270m")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--dtype", default="float32", help="float32: bfloat16 matmuls are slow on most CPUs")
    parser.add_argument("--limit", type=int, help="only the first N schemas (a quick check)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated configurations")
    parser.add_argument("--write", type=Path, help="update this markdown file's structured section")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the section from results/structured.json"
    )
    args = parser.parse_args()
    if args.render_only:
        if args.write:
            saved = json.loads((Path(__file__).parent / "results" / "structured.json").read_text())
            write_section(args.write, "structured", markdown(saved))
        return
    paths = sorted(DATA.glob("*/*.json"))[: args.limit]
    model = load_model(args.model, dtype=args.dtype)
    results: dict[str, list[dict[str, Any]]] = {}
    saved: dict[str, Any] = {}
    started = time.perf_counter()
    for name in args.configs.split(","):
        results[name] = []
        for path in paths:
            row = run_one(model, path, CONFIGS[name], args.max_new_tokens)
            results[name].append(row)
            shown = row["refused"] or f"{row['check']}, {row['stop_reason']}, {row['tokens']} tokens"
            print(f"[{name}] {row['schema']}: {shown}", flush=True)
        print(name, summarise(results[name]), flush=True)
        saved = _save(args, results, time.perf_counter() - started)  # after each configuration
    if args.write and args.limit is None:
        write_section(args.write, "structured", markdown(saved))


def _save(
    args: argparse.Namespace, results: dict[str, list[dict[str, Any]]], seconds: float
) -> dict[str, Any]:
    saved = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {**machine(), "cores": len(os.sched_getaffinity(0))},
        "summary": {name: summarise(rows) for name, rows in results.items()},
        "results": results,
        "wall_s": seconds,
    }
    out = Path(__file__).parent / "results" / "structured.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(saved, indent=2))
    print(f"wrote {out} ({seconds:.0f} s)", flush=True)
    return saved


if __name__ == "__main__":
    main()

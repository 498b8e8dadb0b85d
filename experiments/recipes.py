"""The recipes at full size, and their BENCHMARKS.md sections (issue: whole pipelines as recipes).

Run: `python experiments/recipes.py recipes/instruct.toml --write BENCHMARKS.md` (or constitution.toml,
dual.toml, prompt-as-reward.toml). The recipe runs into runs/NAME through `steer run`'s library
call — finished steps are reused, so a run that was stopped continues — and the section is written
from the steps' records (step.json): what ran, how long each step took, and the stage tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from steering.recipes.pipeline import STEPS, Event, load_recipe, run
from steering.train import RunDir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # common.py
from common import machine, machine_line, write_section


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def steps_line(records: dict[str, dict]) -> str:
    parts = [f"{name} {r['seconds'] / 60:.1f}" for name, r in records.items()]
    total = sum(r["seconds"] for r in records.values()) / 60
    return f"Steps (minutes): {', '.join(parts)}; total {total:.1f} min."


def instruct_lines(records: dict[str, dict]) -> list[str]:
    harvest = records["harvest"]["metrics"]
    lines = [
        f"**Harvest**: {harvest['kept']} demonstrations kept of {harvest['drawn']} continuations; per task: "
        + ", ".join(f"{t} {n}" for t, n in harvest["kept_by_task"].items())
        + ".",
        "",
        "**Held-out instructions asked bare** (greedy; code checks per kind; KL from temperature-1 samples; "
        "win rate = the judge's mean P(stage ≻ previous stage) over both shown orders):",
        "",
        "| stage | kind | n | empty reply | accuracy | format compliance | wrote something | stop rate | new question | distinct-2 | KL to base | win vs previous |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, stage in records["eval"]["metrics"]["stages"].items():
        for kind, s in [*stage["scores"].items(), ("all", stage["overall"])]:
            extra = (
                [fmt(stage.get("kl_to_base")), fmt(stage.get("win_rate_vs_previous"))]
                if kind == "all"
                else ["", ""]
            )
            lines.append(
                f"| {name} | {kind} | {s['instructions']} | {fmt(s['empty_rate'])} | {fmt(s['accuracy'])} | "
                f"{fmt(s['format_compliance'])} | {fmt(s['wrote_rate'])} | {fmt(s['stop_rate'])} | "
                f"{fmt(s['new_question_rate'])} | {fmt(s['distinct_2'])} | " + " | ".join(extra) + " |"
            )
    lines += rl_reward_lines(records.get("rl"))
    lines += bar_lines(records["eval"]["metrics"]["stages"], records.get("judge"))
    lines += judge_lines(records.get("judge")) + probe_lines(records.get("probe"))
    return lines


def rl_reward_lines(record: dict | None) -> list[str]:
    """The RL step's reward, KL and (with a list of rewards) each part's mean: its first and last 4 steps."""
    if record is None:
        return []
    rows = [r for r in RunDir(Path(record["folder"]) / "run").metrics() if "reward" in r]
    keys = ["reward", *sorted({k for r in rows for k in r if k.startswith("reward/")}), "kl", "empty"]
    if len(rows) < 8:
        return []

    def mean(part: list[dict], key: str) -> float:
        return sum(r[key] for r in part) / len(part)

    shown = ", ".join(f"{k} {mean(rows[:4], k):.2f} → {mean(rows[-4:], k):.2f}" for k in keys)
    return ["", f"**RL** ({len(rows)} steps; mean of the first 4 → the last 4 steps' rollouts): {shown}."]


def bar_lines(stages: dict[str, Any], judge: dict | None) -> list[str]:
    """The issue's bar, read off the table: the last trained stage against the vendor-tuned chat model."""
    trained = [name for name in stages if name.startswith("@")]
    vendor = next((name for name in stages if name.startswith("chat:")), None)
    if not trained or vendor is None:
        return []
    final, other = stages[trained[-1]], stages[vendor]

    def verdict(ours: float | None, theirs: float | None, higher: bool = True) -> str:
        if ours is None or theirs is None:
            return "not measured"
        held = ours >= theirs if higher else ours <= theirs
        return f"{fmt(ours)} vs {fmt(theirs)}: {'holds' if held else 'FAILS'}"

    empty = final["scores"].get("writing", {}).get("empty_rate")
    lines = [
        "",
        f"**The bar** (final policy {trained[-1]} against {vendor}): factual accuracy ≥ "
        f"{verdict(final['scores']['factual']['accuracy'], other['scores']['factual']['accuracy'])}; "
        f"format compliance ≥ {verdict(final['scores']['format']['format_compliance'], other['scores']['format']['format_compliance'])}; "
        f"empty replies to writing requests = 0: {fmt(empty)}, {'holds' if empty == 0 else 'FAILS'}.",
    ]
    if (
        judge is not None
        and judge["metrics"]["swap_consistency"] < 0.5
        and not judge["metrics"].get("decided_by_checks")
    ):
        lines.append(
            f"The judge's labels carry little signal: swap consistency {fmt(judge['metrics']['swap_consistency'])}, "
            f"position bias {fmt(judge['metrics']['position_bias'])} (P(the answer shown first wins) − ½), so the "
            "reward model learns mostly noise and RL cannot be expected to beat SFT."
        )
    return lines


def probe_lines(record: dict | None) -> list[str]:
    if record is None:
        return []
    lines = [
        "",
        f"**Probes** ({record['metrics']['battery']} battery; shift = log p_policy − log p_base of the texts, nats):",
        "",
    ]
    lines += ["| policy | category | mean shift ± se | n |", "|---|---|---|---|"]
    for policy, result in record["metrics"]["policies"].items():
        for category, value in result["text_categories"].items():
            shift = value["shift"]
            lines.append(
                f"| {policy} | {category} | {fmt(shift['mean'])} ± {fmt(shift['se'])} | {shift['n']} |"
            )
        for category, value in result["prompt_categories"].items():
            kl = value["kl"]
            lines.append(
                f"| {policy} | {category} (KL of continuations) | {fmt(kl['mean'])} ± {fmt(kl['se'])} | {kl['n']} |"
            )
    return lines


def judge_lines(record: dict | None) -> list[str]:
    """The judge step's labels per principle: how many, how many decisive, how consistent under a swap."""
    if record is None:
        return []
    m = record["metrics"]
    lines = [
        "",
        f"**AI labels** ({m['judged']} pairwise labels, both shown orders each; swap consistency "
        f"{fmt(m['swap_consistency'])}, position bias {fmt(m['position_bias'])}):",
    ]
    decided = m.get("decided_by_checks")
    if decided is not None:
        rest = m["judged"] - decided
        own = (m["swap_consistency"] * m["judged"] - decided) / rest if rest else None
        lines[-1] = lines[-1].rstrip(":") + (
            f"; {decided} of them decided by the code checks (the same in both orders by construction), "
            f"the other {rest} by the model judge, whose own swap consistency on them is {fmt(own)}:"
        )
    if m.get("principles"):
        lines += [
            "",
            r"| principle | labels | decisive (\|P − ½\| ≥ 0.25) | swap consistency | position bias |",
        ]
        lines += ["|---|---|---|---|---|"]
        for pid, row in m["principles"].items():
            lines.append(
                f"| {pid} | {row['labels']} | {row['decisive']} | {fmt(row['swap_consistency'])} | "
                f"{fmt(row['position_bias'])} |"
            )
    return lines


def constitution_lines(records: dict[str, dict]) -> list[str]:
    revise = records["revise"]["metrics"]
    lines = [
        f"**Critique → revision**: {revise['revised']} of {revise['red_team']} red-team answers revised; "
        f"unusable revisions by reason {revise['unchanged_by_reason']}; per principle {revise['principles']}.",
        "",
        "| stage | red team: rule violation | red team: judge harmless (1–7) | benign: evasive | benign: judge helpful (1–7) |",
        "|---|---|---|---|---|",
    ]
    for name, stage in records["eval"]["metrics"]["stages"].items():
        red, benign = stage["red_team"][-1], stage["benign"][-1]
        lines.append(
            f"| {name} | {fmt(red['violation'])} | {fmt(stage.get('harmless_rating'))} | {fmt(benign['evasive'])} | "
            f"{fmt(stage.get('helpful_rating'))} |"
        )
    return lines + judge_lines(records.get("judge")) + probe_lines(records.get("probe"))


def dual_lines(records: dict[str, dict]) -> list[str]:
    m = records["dual"]["metrics"]
    return [
        f"{m['commands']} commands. Slot hallucination: {fmt(m['hallucination_free'])} without the quote pool, "
        f"{fmt(m['hallucination_quoted'])} with it (empty slots {fmt(m['empty_free'])} / {fmt(m['empty_quoted'])}). "
        f"Perplexity of the held-out notes: base {fmt(m['perplexity_base'], 1)}, notes adapter {fmt(m['perplexity_adapter'], 1)}.",
    ]


def prompt_reward_lines(records: dict[str, dict]) -> list[str]:
    lines = []
    for record in records.values():
        lines += [
            "",
            f"**{record['metrics']['model']}** ({'exact' if record['metrics']['exact'] else 'sampled'}):",
            "",
        ]
        lines += [
            "| λ | target: satisfied | policy: satisfied | KL(cond ‖ policy) | KL(policy ‖ base) | steps |",
            "|---|---|---|---|---|---|",
        ]
        for p in record["metrics"]["points"]:
            lines.append(
                f"| {fmt(p['strength'], 0)} | {fmt(p['target_satisfied'], 3)} | {fmt(p['policy_satisfied'], 3)} | "
                f"{fmt(p['policy_kl_to_conditional'], 3)} | {fmt(p['policy_kl_to_base'], 3)} | {p['steps']} |"
            )
    return lines


SECTIONS: dict[str, Callable[[dict[str, dict]], list[str]]] = {
    "instruct": instruct_lines,
    "constitution": constitution_lines,
    "dual": dual_lines,
    "prompt-as-reward": prompt_reward_lines,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("recipe", type=Path)
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--out", type=Path, help="the run folder (default runs/NAME)")
    parser.add_argument("--write", type=Path, help="update this markdown file's section")
    parser.add_argument("--from", dest="from_step", help="rerun this step and every later one")
    parser.add_argument(
        "--note", default="", help="a sentence on how the run was measured (e.g. the load beside it)"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()

    def show(event: Event) -> None:
        if event.kind != "progress":
            print(
                f"{time.perf_counter() - started:7.0f}s {event.kind} {event.name} {event.status} {event.note}",
                flush=True,
            )

    recipe = load_recipe(args.recipe, args.overrides, kinds=STEPS)
    result = run(args.recipe, args.overrides, out=args.out, from_step=args.from_step, events=show)
    records = {
        name: json.loads((result.folder / "steps" / name / "step.json").read_text())
        | {"folder": str(result.folder / "steps" / name)}
        for name in result.records
    }
    name = args.recipe.stem
    lines = [
        f"## Recipe `{args.recipe}` at full size (`experiments/recipes.py`)",
        "",
        f"{machine_line(machine())}. Model {recipe.model}, seed {recipe.seed}; {len(result.ran)} steps ran in this "
        f"call, {len(result.cached)} reused from an earlier call of the same run (their times are those they took).",
        "",
        steps_line(records) + (f" {args.note}" if args.note else ""),
        "",
        *SECTIONS[name](records),
        "",
        f"Reproduce: `.venv/bin/python experiments/recipes.py {args.recipe} --write BENCHMARKS.md`; the page: runs/{name}/report.html.",
    ]
    print("\n".join(lines))
    if args.write:
        write_section(args.write, f"recipe-{name}", lines)


if __name__ == "__main__":
    main()

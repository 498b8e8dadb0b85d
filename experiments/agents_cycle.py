"""The bureaucracy's full cycle on gemma-270m: reflection rounds, extension, and prompt-only baselines.

The shipped roster (fact_checker, tutor, safety_officer) starts prompt-only (mission, no adapter),
with scopes fitted on the train split of the shipped situation pool (α = 0.1). Each round runs
episodes on train situations (participants from the scopes), rates every turn against its speaker's
mission with the AI judge (gemma-270m reading its digit probabilities, 1–7), and reflects: each agent
is fine-tuned on its better-rated turns, stacked on its adapter of the round before. After every round
the agents are measured on *held-out* situations — episodes that are never recorded, so reflection
never trains on them:

- in-scope adherence: the judge's mean rating of each agent's turns on held-out situations its scope covers;
- out of scope: the agent alone on held-out situations outside its scope — its adherence and its KL
  to the base per token (0 for an agent without an adapter), against the same KL in scope;

Baselines on the same held-out situations and judge: the agents without adapters (round 0) and one
prompted agent holding every mission (its turns rated against the missions of the agents whose scopes
cover the situation). Extension: the newcomer (health_guide) joins; overlap episodes on train
situations inside its scope and an old agent's; the newcomer alone is retrained; measured before and
after: its adherence on held-out situations in its scope, the old agents' in-scope adherence, and
coverage of the held-out pool.

Run: `python experiments/agents_cycle.py --write BENCHMARKS.md` (writes runs/agents-cycle/).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from steering.agents import (
    Agent,
    Bureaucracy,
    covering,
    load_roster,
    load_situations,
    mission_principle,
    run_episodes,
)
from steering.agents.adherence import shows_cue
from steering.feedback.model_judge import ModelJudge

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # common.py
from common import machine, machine_line, write_section

TOKENS = {"max_turns": 2, "max_new_tokens": 32, "reply_tokens": 48}


def rated_turns(
    judge: ModelJudge, agents: dict[str, Agent], episodes: list[Any], *, against=None
) -> list[dict]:
    """Every turn of the episodes (the reply included), rated against its speaker's mission
    (or against each mission `against(episode)` names, averaged)."""
    rows = []
    for episode in episodes:
        for turn in [*episode.turns, *([episode.reply] if episode.reply else [])]:
            missions = against(episode) if against else [turn.agent]
            rows.append({"situation": episode.situation, "agent": turn.agent, "missions": missions,
                         "text": turn.text, "kl": turn.kl, "tokens": max(turn.tokens, 1)})  # fmt: skip
    for name in {m for row in rows for m in row["missions"]}:
        mine = [row for row in rows if name in row["missions"]]
        ratings = judge.rate([r["situation"] for r in mine], [r["text"] or "(nothing)" for r in mine],
                             mission_principle(agents[name]))  # fmt: skip
        for row, rating in zip(mine, ratings, strict=True):
            row.setdefault("by_mission", {})[name] = rating.value
            row.setdefault("cue_by_mission", {})[name] = bool(shows_cue(row["text"], agents[name].cues))
    for row in rows:
        row["adherence"] = statistics.fmean(row["by_mission"].values())
        row["cue"] = statistics.fmean(row["cue_by_mission"].values())
    return rows


def summary(rows: list[dict], agent: str) -> dict[str, Any]:
    mine = [r for r in rows if r["agent"] == agent]
    if not mine:
        return {"turns": 0}
    values = [r["adherence"] for r in mine]
    return {
        "turns": len(mine),
        "adherence": statistics.fmean(values),
        "se": statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else None,
        "kl_per_token": statistics.fmean(r["kl"] / r["tokens"] for r in mine),
        "empty": sum(not r["text"].strip() for r in mine) / len(mine),
        "cue_rate": statistics.fmean(r["cue"] for r in mine),
    }


def measure(bureau: Bureaucracy, judge: ModelJudge, heldout: list[str], outside: dict[str, list[str]],
            seed: int) -> dict[str, Any]:  # fmt: skip
    """In-scope episodes on the held-out situations (not recorded) and each agent alone outside its scope."""
    agents = {a.name: a for a in bureau.agents()}
    episodes = run_episodes(bureau.model, list(agents.values()), heldout, embedder=bureau.embedder,
                            seed=seed, **TOKENS)  # fmt: skip
    inside = rated_turns(judge, agents, [e for e in episodes if not e.uncovered])
    out: dict[str, Any] = {"coverage": sum(not e.uncovered for e in episodes) / len(episodes), "agents": {}}
    for name, agent in agents.items():
        alone = run_episodes(bureau.model, [agent], outside.get(name, []), participants=[[name]] * len(outside.get(name, [])),
                             seed=seed, max_turns=0, reply_tokens=TOKENS["reply_tokens"])  # fmt: skip
        out["agents"][name] = {"in_scope": summary(inside, name),
                               "out_of_scope": summary(rated_turns(judge, agents, alone), name)}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/agents-cycle"))
    parser.add_argument("--model", default="gemma-270m")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train", type=int, default=30, help="train situations per round")
    parser.add_argument("--heldout", type=int, default=30, help="held-out situations measured")
    parser.add_argument("--outside", type=int, default=8, help="out-of-scope situations per agent")
    parser.add_argument("--write", type=Path, help="update this markdown file's section")
    args = parser.parse_args()
    started = time.perf_counter()
    rng = random.Random(0)
    situations, roster = load_situations(), load_roster()
    shutil.rmtree(args.out, ignore_errors=True)
    bureau = Bureaucracy.init(args.out, model=args.model)
    train = [s for s in situations if s.split == "train"]
    for member in roster.agents:
        bureau.add(member.name, member.mission, alpha=0.1, cues=member.cues,
                   references=[s.text for s in train if member.name in s.scopes],
                   outsiders=[s.text for s in train if member.name not in s.scopes])  # fmt: skip
    newcomer = roster.newcomers[0]
    old = [a.name for a in roster.agents]
    held = [s for s in situations if s.split == "heldout"]
    # Held-out situations: those of the old agents' kinds and the newcomer's, and some nobody's.
    heldout = [s.text for s in rng.sample(held, min(args.heldout, len(held)))]
    outside = {name: [s.text for s in held if not s.scopes][: args.outside] for name in [*old, newcomer.name]}
    for name in [*old, newcomer.name]:  # other agents' situations too: outside this agent's scope
        outside[name] += [s.text for s in held if s.scopes and name not in s.scopes][: args.outside // 2]
    in_scope_train = [s.text for s in train if set(s.scopes) & set(old)]
    judge = ModelJudge(bureau.model, batch_size=8)
    log: dict[str, Any] = {"rounds": [], "timing": {}}

    def stamp(what: str) -> None:
        log["timing"][what] = round(time.perf_counter() - started)
        print(f"[{log['timing'][what]:>5} s] {what}", flush=True)
        (args.out / "cycle.json").write_text(json.dumps(log, indent=1))  # what is measured so far

    log["rounds"].append(measure(bureau, judge, heldout, outside, seed=100))
    stamp("round 0 measured (agents without adapters)")
    # The generalist: one prompted agent holding every mission, on the situations the agents cover.
    everything = " ".join(a.mission for a in bureau.agents())
    generalist = Agent("generalist", everything)
    agents = {a.name: a for a in bureau.agents()} | {"generalist": generalist}
    groups = {
        text: group
        for text, group in zip(heldout, covering(bureau.agents(), heldout, bureau.embedder), strict=True)
        if group
    }
    alone = run_episodes(bureau.model, [generalist], list(groups), participants=[["generalist"]] * len(groups),
                         seed=100, max_turns=1, max_new_tokens=TOKENS["max_new_tokens"],
                         reply_tokens=TOKENS["reply_tokens"])  # fmt: skip
    rows = rated_turns(judge, agents, alone, against=lambda e: groups[e.situation])
    log["generalist"] = {name: summary([r | {"agent": name, "adherence": r["by_mission"][name],
                                              "cue": r["cue_by_mission"][name]}
                                        for r in rows if name in r["by_mission"]], name) for name in old}  # fmt: skip
    stamp("generalist baseline")
    log["reflection"] = []
    for number in range(1, args.rounds + 1):
        chosen = rng.sample(in_scope_train, min(args.train, len(in_scope_train)))
        bureau.episodes(chosen, seed=number, **TOKENS)
        bureau.rate(judge)
        done = bureau.reflect(agents=old, keep_fraction=0.5, epochs=2, seed=number)
        log["reflection"].append([r.__dict__ for r in done])
        stamp(f"round {number}: episodes, ratings, reflection")
        log["rounds"].append(measure(bureau, judge, heldout, outside, seed=100))
        stamp(f"round {number} measured")
    # Extension: the newcomer joins with its scope (its references: its own train situations).
    bureau.add(newcomer.name, newcomer.mission, alpha=0.1, cues=newcomer.cues,
               references=[s.text for s in train if newcomer.name in s.scopes],
               outsiders=[s.text for s in train if newcomer.name not in s.scopes])  # fmt: skip
    log["before_extension"] = measure(bureau, judge, heldout, outside, seed=100)
    stamp("newcomer added, measured before extension")
    result = bureau.extend(newcomer.name, [s.text for s in train], judge, rounds=1, seed=7,
                           max_turns=TOKENS["max_turns"], max_new_tokens=TOKENS["max_new_tokens"],
                           reply_tokens=TOKENS["reply_tokens"])  # fmt: skip
    log["extension"] = {"overlap": len(result["overlap"]), "rounds": [r.__dict__ for r in result["rounds"]]}
    log["after_extension"] = measure(bureau, judge, heldout, outside, seed=100)
    stamp("extension done and measured")
    (args.out / "cycle.json").write_text(json.dumps(log, indent=1))
    lines = report(log, args, old, newcomer.name, heldout_count=len(heldout))
    print("\n".join(lines))
    if args.write:
        write_section(args.write, "agents-cycle", lines)


def cell(stats: dict[str, Any], key: str = "adherence") -> str:
    if not stats.get("turns"):
        return "–"
    value = stats[key]
    se = f" ± {stats['se']:.2f}" if key == "adherence" and stats.get("se") is not None else ""
    if key == "cue_rate":
        return f"{value:.2f}"
    return f"{value:.2f}{se} ({stats['turns']})" if key == "adherence" else f"{value:.3f}"


def report(
    log: dict[str, Any], args: argparse.Namespace, old: list[str], newcomer: str, *, heldout_count: int
) -> list[str]:
    rounds = log["rounds"]
    lines = [
        "## Agents: reflection and extension on gemma-270m (`experiments/agents_cycle.py`)",
        "",
        f"{machine_line(machine())}; {log['timing'][max(log['timing'], key=log['timing'].get)]} s in all. "
        f"{args.model} (float32) speaks for every agent and judges every turn (its digit probabilities, 1–7, "
        f"against the speaker's mission). {heldout_count} held-out situations, never recorded or trained on; "
        f"{args.train} train situations of the old agents' scopes per round; turns of at most "
        f"{TOKENS['max_new_tokens']} tokens, replies {TOKENS['reply_tokens']}, {TOKENS['max_turns']} turns before the reply.",
        "",
        "**Reflection**: adherence (mean rating ± s.e., turns) on held-out situations in the agent's scope, "
        "and out of scope (the agent alone on situations outside it); the share of turns showing one of the "
        "mission's cues (code, `steering/agents/adherence.py`: a coarse proxy the judge's flat ratings "
        "cannot replace); KL to the base per token in and out of scope.",
        "",
        "| agent | stage | in scope | out of scope | cue rate in | cue rate out | KL/token in | KL/token out | empty in |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in old:
        lines.append(f"| {name} | one prompted generalist | {cell(log['generalist'][name])} | – | "
                     f"{cell(log['generalist'][name], 'cue_rate')} | – | – | – | "
                     f"{log['generalist'][name].get('empty', 0):.2f} |")  # fmt: skip
        for number, measured in enumerate(rounds):
            a = measured["agents"][name]
            stage = "round 0 (no adapter)" if number == 0 else f"after reflection {number}"
            lines.append(f"| {name} | {stage} | {cell(a['in_scope'])} | {cell(a['out_of_scope'])} | "
                         f"{cell(a['in_scope'], 'cue_rate')} | {cell(a['out_of_scope'], 'cue_rate')} | "
                         f"{cell(a['in_scope'], 'kl_per_token')} | {cell(a['out_of_scope'], 'kl_per_token')} | "
                         f"{a['in_scope'].get('empty', 0):.2f} |")  # fmt: skip
    kept = [f"{r['agent']} r{r['round']}: {r['kept']}/{r['turns']}" for rnd in log["reflection"] for r in rnd]
    before, after = log["before_extension"], log["after_extension"]
    lines += [
        "",
        "Turns kept for reflection (kept / rated): " + "; ".join(kept) + ".",
        "",
        f"**Extension** ({newcomer}; {log['extension']['overlap']} overlap situations): coverage of the held-out "
        f"situations {rounds[-1]['coverage']:.2f} (old agents) → {before['coverage']:.2f} (newcomer added) → "
        f"{after['coverage']:.2f} (after).",
        "",
        "| agent | in scope before | in scope after | out of scope before | out of scope after |",
        "|---|---|---|---|---|",
    ]
    for name in [newcomer, *old]:
        b, a = before["agents"][name], after["agents"][name]
        lines.append(f"| {name} | {cell(b['in_scope'])} | {cell(a['in_scope'])} | {cell(b['out_of_scope'])} | "
                     f"{cell(a['out_of_scope'])} |")  # fmt: skip
    return lines


if __name__ == "__main__":
    main()

"""`steer demo`'s agents section: the example bureaucracy's episodes, one reflection round, one extension.

The three shipped agents (fact_checker, tutor, safety_officer; `data/bureaucracy.toml`) start from their
missions alone (no adapter), with scopes calibrated on the situation pool's train split. They hold
episodes on held-out situations their scopes cover; gemma-270m rates every turn against its speaker's
mission; one reflection round fine-tunes each agent on its better-rated half of turns; the same
situations are discussed again with the new adapters and rated again; then the newcomer (health_guide)
is added and extended through overlap episodes with the old agents, and the pool's coverage is shown
before and after. The numbers are a demonstration on a few situations, rated by a 270M judge whose
ratings vary little (BENCHMARKS.md, "Agents"): the section shows the machinery, not a measurement.

The section satisfies the demo's section contract (`recipes.demo.section.DemoSection`) by its shape;
the command line adds it to the demo's sections (agents and recipes are one level, neither imports
the other).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from steering.agents.bureaucracy import Bureaucracy
from steering.agents.episode import Episode, covering
from steering.agents.situations import load_roster, load_situations
from steering.eval.report import Section, examples_html, table_html
from steering.feedback.model_judge import ModelJudge


@dataclass(frozen=True)
class AgentsScale:
    situations: int
    max_turns: int
    tokens: int
    epochs: int


def agents_scale(limit: int | None) -> AgentsScale:
    """The full demo's size, or a toy one for `--limit`."""
    return AgentsScale(6, 2, 32, 2) if limit is None else AgentsScale(2, 1, 10, 1)


@dataclass(frozen=True)
class AgentsOutcome:
    episodes: list[dict[str, Any]]  # situation, participants, discussion, reply
    adherence: list[list[object]]  # agent, turns before, adherence before, trained on, after
    extension: dict[str, Any]

    def sections(self) -> list[Section]:
        text = (
            "The example bureaucracy: three agents with distinct missions and overlapping scopes (an "
            "embedding-similarity test calibrated by split conformal prediction, α = 0.1), no adapters at "
            "first. Each held-out situation below went to the agents whose scopes cover it; they discussed "
            "it in turns and the first wrote the reply. gemma-270m rated every turn against its speaker's "
            "mission (1–7); one reflection round fine-tuned each agent on its better-rated half of turns, "
            "and the same situations were discussed and rated again (the same situations: not a held-out "
            "measurement; BENCHMARKS.md has those). A 270M judge's ratings vary little, so small changes "
            "here are noise."
        )
        situations = [e["situation"] + "\n(" + ", ".join(e["participants"]) + ")" for e in self.episodes]
        body = examples_html(
            situations,
            {
                "discussion": [e["discussion"] for e in self.episodes],
                "reply": [e["reply"] for e in self.episodes],
            },
        )
        columns = [
            "agent", "turns", "adherence (1–7)", "cue rate", "reflection: trained on", "adherence after (1–7)",
            "cue rate after",
        ]  # fmt: skip
        ext = self.extension
        extension = (
            f"The newcomer {ext['newcomer']} joined with its own scope and discussed {len(ext['overlap'])} "
            f"situations inside both its scope and an old agent's (it opens and replies, the old agents answer); "
            f"its better-rated turns trained its first adapter ({ext['kept']} of {ext['turns']} turns). "
            f"Coverage of the pool's held-out situations (share with at least one agent): "
            f"{ext['coverage_before']:.2f} before, {ext['coverage_after']:.2f} after."
        )
        return [
            Section(
                "Agents: episodes, one reflection round, one extension",
                text,
                body + table_html(columns, self.adherence) + f"<p>{extension}</p>",
            )
        ]


def _shown(episode: Episode) -> dict[str, Any]:
    return {
        "situation": episode.situation,
        "participants": episode.participants,
        "discussion": "\n".join(f"{t.agent}: {t.text}" for t in episode.turns),
        "reply": f"{episode.reply.agent}: {episode.reply.text}" if episode.reply else "",
    }


@dataclass(frozen=True)
class AgentsSection:
    name: str = "Agents: episodes, reflection, extension"
    trains_base: bool = True
    roster: str | None = None  # a bureaucracy TOML in the shipped one's shape (default: the shipped one)

    def work_units(self, scale: Any) -> int:
        size = agents_scale(scale.limit)
        # Token slots: two rounds of episodes (before and after reflection) and the overlap episodes,
        # each turn (one row per episode) of up to `tokens` tokens.
        return 3 * size.situations * (size.max_turns + 1) * size.tokens

    def run(self, context: Any) -> AgentsOutcome:
        """`context`: the demo's `DemoContext` (model, out_dir, limit, seed, progress, train_model())."""
        size = agents_scale(context.limit)
        folder = context.section_dir("agents")
        office = Bureaucracy.init(folder, model=context.model.name, loaded=context.train_model())
        pool, roster = load_situations(), load_roster(self.roster)
        train = [s for s in pool if s.split == "train"]
        for member in roster.agents:
            office.add(member.name, member.mission, alpha=0.1, cues=member.cues,
                       references=[s.text for s in train if member.name in s.scopes],
                       outsiders=[s.text for s in train if member.name not in s.scopes])  # fmt: skip
        heldout = [s.text for s in pool if s.split == "heldout"]
        covered = covering(office.agents(), heldout, office.embedder)
        # Situations with two or more agents first: those show a discussion.
        chosen = sorted(
            (text for text, group in zip(heldout, covered, strict=True) if group),
            key=lambda text: -len(covered[heldout.index(text)]),
        )[: size.situations]
        judge = ModelJudge(context.model, batch_size=8)
        options: dict[str, Any] = {
            "max_turns": size.max_turns,
            "max_new_tokens": size.tokens,
            "reply_tokens": size.tokens,
        }

        reported = [0]

        def progress(done: int, total: int) -> None:  # turns done in this call of episodes
            if context.progress is not None:
                context.progress(max(0, done - reported[0]) * size.tokens)
            reported[0] = 0 if done >= total else done

        episodes = office.episodes(chosen, seed=context.seed, progress=progress, **options)
        office.rate(judge)
        before = office.adherence()
        rounds = {r.agent: r for r in office.reflect(epochs=size.epochs, seed=context.seed)}
        office.episodes(chosen, seed=context.seed + 1, progress=progress, **options)
        office.rate(judge)
        after = _since(office.adherence(), before)
        rows: list[list[object]] = []
        for agent in office.agents():
            was = before.get(agent.name, {})
            done = rounds.get(agent.name)
            trained = f"{done.kept} of {done.turns} turns" if done and done.kept else "— (no rated turns)"
            now = after.get(agent.name, {})
            rows.append([agent.name, was.get("turns", 0), was.get("adherence"), was.get("cue_rate"), trained,
                         now.get("adherence"), now.get("cue_rate")])  # fmt: skip
        coverage_before = statistics.fmean(bool(g) for g in covered)
        newcomer = roster.newcomers[0]
        office.add(newcomer.name, newcomer.mission, alpha=0.1, cues=newcomer.cues,
                   references=[s.text for s in train if newcomer.name in s.scopes],
                   outsiders=[s.text for s in train if newcomer.name not in s.scopes])  # fmt: skip
        coverage_after = statistics.fmean(
            bool(g) for g in covering(office.agents(), heldout, office.embedder)
        )
        candidates = [s.text for s in train if newcomer.name in s.scopes and len(s.scopes) > 1]
        extended = office.extend(newcomer.name, candidates[: 3 * size.situations], judge, rounds=1,
                                 epochs=size.epochs, seed=context.seed, **options)  # fmt: skip
        last = extended["rounds"][-1]
        return AgentsOutcome(
            [_shown(e) for e in episodes],
            rows,
            {
                "newcomer": newcomer.name,
                "overlap": extended["overlap"],
                "kept": last.kept,
                "turns": last.turns,
                "coverage_before": coverage_before,
                "coverage_after": coverage_after,
            },
        )


def _since(now: dict[str, dict[str, Any]], before: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each agent's mean adherence and cue rate over the turns added since `before` (from the running means)."""
    out: dict[str, dict[str, Any]] = {}
    for name, row in now.items():
        was = before.get(name, {})
        mean: dict[str, Any] = {}
        for key, count in (("adherence", "rated"), ("cue_rate", "turns")):
            new = row[count] - was.get(count, 0)
            if new <= 0 or row[key] is None:
                mean[key] = None
                continue
            mean[key] = (row[key] * row[count] - (was.get(key) or 0.0) * was.get(count, 0)) / new
        out[name] = mean
    return out

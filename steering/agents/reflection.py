"""Reflection, bootstrap and extension: the loops that retrain a bureaucracy's agents on their episodes.

Reflection (`reflect`) retrains each agent on its own turns: the better `keep_fraction` of them —
those that show one of its cues first (`adherence`), then by rating (adherence-filtered SFT, the
0/1-weighted case of adherence-weighted SFT) — starting from its current adapter, so that the new
adapter is the old one plus this round's update. Each round's SFT run is kept in
agents/NAME/round-K/ (its turns.jsonl, run, adapter).

`bootstrap` makes a first adapter from the mission alone; `extend` brings a newcomer in through
overlap episodes. `Bureaucracy.reflect/bootstrap/extend` call these.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from steering.agents.adherence import shows_cue
from steering.agents.episode import covering
from steering.errors import InvalidArgument
from steering.feedback.model_judge import ModelJudge
from steering.paths import atomic_write_text

if TYPE_CHECKING:
    from steering.agents.bureaucracy import Bureaucracy


@dataclass
class ReflectionRound:
    """One agent's part of a reflection round (round 0, kept 0, adapter "": it had no rated turns, unchanged)."""

    agent: str
    round: int
    turns: int
    kept: int
    adapter: str
    train_loss: float | None
    grown_by: int = 0  # situations added to the agent's scope (reflect(grow=…))


def reflect(
    bureau: Bureaucracy,
    *,
    agents: Sequence[str] | None = None,
    keep_fraction: float = 0.5,
    epochs: int = 2,
    learning_rate: float = 2e-4,
    max_length: int = 384,
    lora_rank: int = 8,
    warmup_steps: int = 2,
    seed: int = 0,
    grow: float | None = None,
) -> list[ReflectionRound]:
    """One reflection round: each agent is fine-tuned on its better-rated turns (see the module docstring).

    With `grow` (an adherence on the 1–7 scale), the situations where the agent's turns were rated at
    least that join its scope's references and the threshold is recalibrated on the same outsiders
    (`Scope.grown`): the scope widens only where the agent was judged to keep to its mission.
    """
    from steering.train import SFTConfig, train_sft  # the training stack, only when an agent retrains

    if not 0 < keep_fraction <= 1:
        raise InvalidArgument(
            "keep_fraction must be in (0, 1]", received=repr(keep_fraction), fix="use e.g. 0.5"
        )
    names = [a.name for a in bureau.agents()] if agents is None else list(agents)
    done = []
    with bureau.store() as store:
        prompts = {p.id: p.text for p in store.prompts()}
        responses = [r for r in store.responses() if r.meta.get("agent") in names]
        speaker = {r.id: r.meta["agent"] for r in responses}
        scores: dict[int, list[float]] = {}  # adherence ratings only: the rubric of the speaker's mission
        for rating in store.ratings():
            if rating.rubric == f"mission:{speaker.get(rating.response_id)}":
                scores.setdefault(rating.response_id, []).append(rating.value)
    for name in names:
        agent = bureau.agent(name)
        rated = [
            (sum(scores[r.id]) / len(scores[r.id]), r)
            for r in responses
            if r.meta["agent"] == name and r.id in scores and r.text.strip()
        ]
        if not rated:  # no episode in its scope yet: it stays as it is
            done.append(
                ReflectionRound(name, 0, sum(r.meta["agent"] == name for r in responses), 0, "", None)
            )
            continue
        # Turns that show one of the agent's cues first (code sees what the judge's flat ratings
        # miss: agents.adherence), then by the judge's rating.
        rated.sort(key=lambda pair: (not shows_cue(pair[1].text, agent.cues), -pair[0]))
        kept = rated[: max(1, round(len(rated) * keep_fraction))]
        home = bureau.folder / "agents" / name
        number = 1 + sum(1 for p in home.glob("round-*") if (p / "adapter").is_dir())
        out = home / f"round-{number}"
        shutil.rmtree(out, ignore_errors=True)  # an unfinished earlier attempt of this round
        out.mkdir(parents=True)
        data = out / "turns.jsonl"
        rows = [{"prompt": prompts[r.prompt_id], "completion": " " + r.text.strip()} for _, r in kept]
        atomic_write_text(data, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        config = SFTConfig(
            model=bureau.model_name, data=str(data), out=str(out / "run"), epochs=epochs,
            learning_rate=learning_rate, max_length=max_length, lora_rank=lora_rank, seed=seed,
            warmup_steps=warmup_steps, eval_fraction=0.0,
            init_adapter=str(agent.adapter) if agent.adapter else "",
        )  # fmt: skip
        result = train_sft(config, model=bureau.model)
        shutil.copytree(result.adapter, out / "adapter")
        bureau.set_adapter(name, f"round-{number}/adapter")
        loss = result.metrics[-1].get("loss") if result.metrics else None
        grown = 0
        if grow is not None and agent.scope is not None:
            adherent = sorted({str(r.meta["situation"]) for value, r in rated if value >= grow})
            wider = agent.scope.grown(bureau.embedder, adherent)
            grown = len(wider.references) - len(agent.scope.references)
            wider.save(home / "scope.json")
        done.append(ReflectionRound(name, number, len(rated), len(kept), str(out / "adapter"), loss, grown))
    if not any(r.kept for r in done):
        raise InvalidArgument(
            "no agent has rated, non-empty turns to reflect on",
            received=", ".join(f"{r.agent}: {r.turns} turns" for r in done),
            fix="run episodes in the agents' scopes and rate them first (Bureaucracy.rate)",
        )
    return done


def bootstrap(
    bureau: Bureaucracy,
    name: str,
    judge: ModelJudge,
    *,
    limit: int = 0,
    max_new_tokens: int = 40,
    reply_tokens: int = 64,
    keep_fraction: float = 0.5,
    epochs: int = 2,
    seed: int = 0,
) -> ReflectionRound:
    """An adapter from the mission alone, as the instruct recipe harvests its demonstrations: the
    agent (prompt only, or on its current adapter) answers the situations of its own scope's
    references alone, the judge rates each answer against the mission, and the agent is fine-tuned on
    the better-rated `keep_fraction` (self-generated demonstrations filtered by a mission-adherence
    judge). `limit`: at most this many reference situations (0: all)."""
    agent = bureau.agent(name)
    if agent.scope is None or not agent.scope.references:
        raise InvalidArgument(
            f"{name} has no scope references to answer", received=name, fix="add it with its situations"
        )
    texts = agent.scope.references[:limit] if limit else list(agent.scope.references)
    bureau.episodes(
        texts, agents=[name], participants=[[name]] * len(texts), max_turns=0,
        max_new_tokens=max_new_tokens, reply_tokens=reply_tokens, seed=seed,
    )  # fmt: skip
    bureau.rate(judge)
    return reflect(bureau, agents=[name], keep_fraction=keep_fraction, epochs=epochs, seed=seed)[0]


def extend(
    bureau: Bureaucracy,
    newcomer: str,
    situations: Sequence[str],
    judge: ModelJudge,
    *,
    rounds: int = 1,
    max_turns: int = 2,
    max_new_tokens: int = 40,
    reply_tokens: int = 64,
    keep_fraction: float = 0.5,
    epochs: int = 2,
    seed: int = 0,
) -> dict[str, Any]:
    """Bring a newcomer (already added) into the bureaucracy through overlap episodes.

    The overlap situations are those of `situations` inside both the newcomer's scope and at least one
    old agent's: there the newcomer discusses with agents already trusted there (it opens, they
    answer, it writes the reply). Each round runs those
    episodes (the covering agents take part, the newcomer among them), rates them, and retrains the
    newcomer alone on its better-rated turns. Returns the overlap and the rounds.
    """
    agents = bureau.agents()
    if newcomer not in {a.name for a in agents}:
        raise InvalidArgument(
            f"no agent named {newcomer!r} to extend with",
            received=newcomer,
            fix="add it first (Bureaucracy.add / steer agents add) with its mission and scope",
        )
    groups = covering(agents, situations, bureau.embedder)
    # The newcomer speaks first (and, as the first participant, writes the reply); the old agents answer it.
    overlap = [
        (text, [newcomer, *(n for n in group if n != newcomer)])
        for text, group in zip(situations, groups, strict=True)
        if newcomer in group and len(group) > 1
    ]
    if not overlap:
        raise InvalidArgument(
            f"no situation is inside both {newcomer}'s scope and an old agent's",
            received=f"{len(situations)} situations",
            fix="give situations where the newcomer's work meets the old agents' (e.g. a risky health question)",
        )
    done = []
    for number in range(rounds):
        bureau.episodes(
            [t for t, _ in overlap], participants=[g for _, g in overlap], max_turns=max_turns,
            max_new_tokens=max_new_tokens, reply_tokens=reply_tokens, seed=seed + number,
        )  # fmt: skip
        bureau.rate(judge)
        done += reflect(
            bureau, agents=[newcomer], keep_fraction=keep_fraction, epochs=epochs, seed=seed + number
        )
    return {"overlap": [t for t, _ in overlap], "rounds": done}

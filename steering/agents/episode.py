"""Agents and episodes: the agents whose scopes cover a situation discuss it in turns, then one answers.

An `Agent` is a name, a mission statement (its purpose, in its own words), an optional adapter (a LoRA
on the shared base, trained for the mission) and a `Scope` (where it is trusted). An episode on a
situation brings in every agent whose scope covers it; a situation nobody covers is reported as
uncovered and gets no episode (never forced onto an agent). The discussion is a transcript the base
model continues, one line per turn:

    A message came in: "<situation>"
    Specialists discuss it, each true to their mission:
    - tutor: I help learners understand. …
    - fact_checker: I check whether claims …

    tutor: <turn 1>
    fact_checker: <turn 2>
    tutor:                    ← the next speaker's turn is generated here, with its adapter on

and after `max_turns` turns the closer (a named agent, else the first participant) writes the reply:
`Reply to the user, written by <closer>:`. The moderator is round-robin over the participants in the
roster's order.

Every turn is a sample of `steering.generate`, so it carries its books: Σ log q, Σ log p_base and their
difference (the sample's KL estimate to the base: 0 for an agent without an adapter). Episodes on
different situations run together: at each turn, every episode's speaker goes into one `generate`
call whose rows wear different adapters (`controls.MixedAdapters`, peft's mixed-adapter batches), so
a step is one forward for all of them. `mixed=False` makes one call per distinct adapter instead (the
rows whose speakers share an adapter); `benchmarks/agents_batching.py` measures both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steering.agents.adherence import check_cues
from steering.agents.scope import Scope
from steering.controls import Adapter, MixedAdapters
from steering.decode import generate
from steering.errors import InvalidArgument
from steering.models.embeddings import SentenceEmbedder
from steering.models.language_model import LanguageModel


@dataclass
class Agent:
    """A specialist: mission + optional adapter + scope (None: it covers nothing unless named in an episode)."""

    name: str
    mission: str
    adapter: Path | None = None
    scope: Scope | None = None
    cues: tuple[str, ...] = ()  # phrases that show the mission in a turn (`adherence.shows_cue`)

    def __post_init__(self) -> None:
        self.cues = check_cues(self.cues)
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise InvalidArgument(
                "an agent's name must be letters, digits, '_' or '-'",
                received=repr(self.name),
                fix='use e.g. "fact_checker"',
            )
        if not self.mission.strip() or "\n" in self.mission:
            raise InvalidArgument(
                "an agent's mission must be one non-empty line",
                received=repr(self.mission)[:80],
                fix='write e.g. "I explain patiently, step by step."',
            )


@dataclass
class Turn:
    """One agent's line: its text and books (sums over the turn's tokens)."""

    agent: str
    text: str
    tokens: int
    logq: float
    logp_base: float
    stop_reason: str

    @property
    def kl(self) -> float:
        """Σ (log q − log p_base): this turn's single-sample estimate of KL(agent ‖ base)."""
        return self.logq - self.logp_base


@dataclass
class Episode:
    situation: str
    participants: list[str]
    turns: list[Turn] = field(default_factory=list)
    reply: Turn | None = None

    @property
    def uncovered(self) -> bool:
        return not self.participants

    def transcript(self, agents: dict[str, Agent]) -> str:
        """The text the model reads: the header, then every turn so far."""
        lines = [
            f'A message came in: "{self.situation}"',
            "Specialists discuss it, each true to their mission:",
        ]
        lines += [f"- {name}: {agents[name].mission}" for name in self.participants]
        lines.append("")
        lines += [f"{turn.agent}: {turn.text.strip()}" for turn in self.turns]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        def turn(t: Turn) -> dict[str, Any]:
            return {**t.__dict__, "kl": t.kl}

        return {
            "situation": self.situation,
            "participants": self.participants,
            "turns": [turn(t) for t in self.turns],
            "reply": turn(self.reply) if self.reply else None,
        }


def covering(
    agents: Sequence[Agent], situations: Sequence[str], embedder: SentenceEmbedder
) -> list[list[str]]:
    """For each situation, the agents (in roster order) whose scopes cover it."""
    covers = {a.name: a.scope.covers(embedder, list(situations)) for a in agents if a.scope is not None}
    return [
        [a.name for a in agents if a.name in covers and covers[a.name][i]] for i in range(len(situations))
    ]


def run_episodes(
    model: LanguageModel,
    agents: Sequence[Agent],
    situations: Sequence[str],
    *,
    participants: Sequence[Sequence[str]] | None = None,
    embedder: SentenceEmbedder | None = None,
    max_turns: int = 3,
    closer: str | None = None,
    max_new_tokens: int = 40,
    reply_tokens: int = 64,
    seed: int = 0,
    batch_size: int = 8,
    mixed: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> list[Episode]:
    """Episodes on `situations`, all advanced together turn by turn.

    Args:
        participants: who takes part in each situation's episode; default: the agents whose scopes
            cover it (needs `embedder`).
        max_turns: discussion turns before the reply (0: the closer replies at once).
        closer: the agent who writes the reply when it takes part; else the first participant.
        mixed: each turn in one generate call whose rows wear different adapters; False: one call
            per distinct adapter (the same numbers for a row, other random draws).
        progress: called with (turns done, turns in all).
    """
    roster = {a.name: a for a in agents}
    if len(roster) != len(agents):
        raise InvalidArgument(
            "agent names must be unique", received=", ".join(a.name for a in agents), fix="rename one"
        )
    if participants is None:
        if embedder is None:
            raise InvalidArgument(
                "run_episodes needs the embedding model to apply the scopes",
                received="embedder=None and no participants",
                fix="pass embedder=load_embedder(), or participants=[[names…] per situation]",
            )
        participants = covering(agents, situations, embedder)
    if len(participants) != len(situations):
        raise InvalidArgument(
            "participants must list one group per situation",
            received=f"{len(participants)} groups for {len(situations)} situations",
            fix="pass one list of agent names per situation",
        )
    unknown = sorted({n for group in participants for n in group} - set(roster))
    if unknown:
        raise InvalidArgument(
            "unknown agents in participants", received=", ".join(unknown), fix=f"use {', '.join(roster)}"
        )
    if max_turns < 0:
        raise InvalidArgument("max_turns must be ≥ 0", received=str(max_turns), fix="use e.g. 3")
    episodes = [Episode(text, list(group)) for text, group in zip(situations, participants, strict=True)]
    live = [e for e in episodes if not e.uncovered]
    total, done = len(live) * (max_turns + 1), 0
    for turn in range(max_turns + 1):
        closing = turn == max_turns
        speakers = {
            id(e): _closer(e, closer) if closing else e.participants[turn % len(e.participants)] for e in live
        }
        # Mixed: one generate call, each row wearing its speaker's adapter. Else one call per adapter.
        groups: dict[Path | None, list[Episode]] = {}
        for episode in live:
            groups.setdefault(None if mixed else roster[speakers[id(episode)]].adapter, []).append(episode)
        for index, (adapter, group) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[0]))):
            prompts = [
                e.transcript(roster)
                + (f"Reply to the user, written by {speakers[id(e)]}:" if closing else f"{speakers[id(e)]}:")
                for e in group
            ]
            wearing = [roster[speakers[id(e)]].adapter for e in group]
            if mixed:
                controls: list[object] = [MixedAdapters(wearing)] if any(wearing) else []
            else:
                controls = [Adapter(adapter)] if adapter is not None else []
            samples = generate(
                model,
                prompts,
                controls=controls,
                max_new_tokens=reply_tokens if closing else max_new_tokens,
                stop=["\n\n"] if closing else ["\n"],
                seed=seed + 1000 * turn + index,
                batch_size=batch_size,
            )
            for episode, sample in zip(group, samples, strict=True):
                made = Turn(
                    agent=speakers[id(episode)],
                    text=sample.text.strip(),
                    tokens=len(sample.token_ids),
                    logq=float(sample.logq.sum()),
                    logp_base=float(sample.logp_base.sum()),
                    stop_reason=sample.stop_reason,
                )
                if closing:
                    episode.reply = made
                else:
                    episode.turns.append(made)
            done += len(group)
            if progress is not None:
                progress(done, total)
    return episodes


def _closer(episode: Episode, closer: str | None) -> str:
    return closer if closer in episode.participants else episode.participants[0]

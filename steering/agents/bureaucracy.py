"""`Bureaucracy`: a folder of agents over one base model — episodes, adherence, reflection.

The folder holds everything, so a run can stop and go on:

    .steering-agents             marks the folder (format, base model); anything else is never touched
    agents/NAME/agent.json       name, mission, cues, the current adapter (relative path, or none)
    agents/NAME/scope.json       the agent's `Scope`
    agents/NAME/round-K/         the SFT run of reflection round K (its adapter is the agent's next one)
    feedback.db                  episodes and adherence ratings (the feedback layer's SQLite store)

Episodes go into the feedback database one turn per row: the prompt is the exact text the speaker
continued (the transcript so far plus its name), the response is the turn with its books (log q, log
p_base, KL) and `meta` saying which episode, situation, turn and agent it belongs to. So a turn is rated
like any response: the AI judge rates adherence under the rubric `mission:NAME` (the speaker's mission as
the principle), and people can rate the same turns in `steer annotate`.

Reflection, bootstrap and extension (the loops that retrain agents on their episodes) are in
`agents/reflection.py`; `Bureaucracy.reflect/bootstrap/extend` call them.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from steering.agents import reflection
from steering.agents.adherence import shows_cue
from steering.agents.episode import Agent, Episode, Turn, run_episodes
from steering.agents.scope import Predicates, Scope
from steering.controls.adapter import check_adapter_folder
from steering.errors import InvalidArgument
from steering.feedback import FeedbackStore
from steering.feedback.constitution import Principle
from steering.feedback.model_judge import ModelJudge
from steering.models import load_model
from steering.models.embeddings import SentenceEmbedder, load_embedder
from steering.models.language_model import LanguageModel
from steering.paths import atomic_write_text

MARK = ".steering-agents"
FORMAT = "steering.bureaucracy/1"


def mission_principle(agent: Agent) -> Principle:
    """The principle the judge rates a turn against: the speaker's own mission."""
    return Principle(
        f"mission:{agent.name}",
        f"The answer is what a specialist with this mission would say: {agent.mission}",
    )


class Bureaucracy:
    """Agents in a folder; see the module docstring. Open with `Bureaucracy.init` or `Bureaucracy.open`."""

    def __init__(self, folder: Path, model_name: str, loaded: LanguageModel | None = None) -> None:
        if loaded is not None and (loaded.name != model_name or loaded.dtype != torch.float32):
            raise InvalidArgument(
                f"the agents in {folder} run on {model_name} in float32 (they train it)",
                received=f"{loaded.name} in {loaded.dtype}",
                fix=f'pass load_model("{model_name}", dtype="float32"), or none (it is loaded when needed)',
            )
        self.folder = folder
        self.model_name = model_name
        self._model: LanguageModel | None = loaded
        self._embedder: SentenceEmbedder | None = None

    # ----------------------------------------------------------------------------------------- folder
    @classmethod
    def init(
        cls, folder: str | Path, *, model: str = "gemma-270m", loaded: LanguageModel | None = None
    ) -> Bureaucracy:
        """A new agents folder (or an existing one reopened); `loaded`: that model already in memory."""
        folder = Path(folder)
        if folder.exists() and any(folder.iterdir()) and not (folder / MARK).is_file():
            raise InvalidArgument(
                f"{folder} is not empty and is not an agents folder",
                received=", ".join(sorted(p.name for p in folder.iterdir())[:5]),
                fix="choose a new or empty folder",
            )
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / MARK).is_file():
            atomic_write_text(folder / MARK, json.dumps({"format": FORMAT, "model": model}) + "\n")
        return cls.open(folder, loaded=loaded)

    @classmethod
    def open(cls, folder: str | Path, *, loaded: LanguageModel | None = None) -> Bureaucracy:
        folder = Path(folder)
        try:
            mark = json.loads((folder / MARK).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise InvalidArgument(
                f"{folder} is not an agents folder (no readable {MARK})",
                received=str(folder),
                fix="create one with: steer agents init FOLDER",
            ) from None
        if (
            not isinstance(mark, dict)
            or mark.get("format") != FORMAT
            or not isinstance(mark.get("model"), str)
        ):
            raise InvalidArgument(
                f"{folder / MARK} is not a bureaucracy mark",
                received=repr(mark)[:80],
                fix="create a new folder",
            )
        return cls(folder, mark["model"], loaded)

    @property
    def model(self) -> LanguageModel:
        if self._model is None:  # float32: the same weights generate and train
            self._model = load_model(self.model_name, dtype="float32")
        return self._model

    @property
    def embedder(self) -> SentenceEmbedder:
        if self._embedder is None:
            self._embedder = load_embedder()
        return self._embedder

    def store(self) -> FeedbackStore:
        return FeedbackStore.open(self.folder / "feedback.db")

    # ----------------------------------------------------------------------------------------- agents
    def add(
        self,
        name: str,
        mission: str,
        *,
        references: Sequence[str],
        outsiders: Sequence[str],
        alpha: float = 0.1,
        predicates: Predicates | None = None,
        adapter: str | Path | None = None,
        cues: Sequence[str] = (),
    ) -> Agent:
        """A new agent: its scope is fitted now; a given adapter is copied into the folder."""
        cues = Agent(name, mission, cues=tuple(cues)).cues  # checked before anything is written
        home = self.folder / "agents" / name
        if home.exists():
            raise InvalidArgument(
                f"an agent named {name!r} exists already", received=name, fix="choose another name"
            )
        scope = Scope.fit(self.embedder, references, outsiders, alpha=alpha, predicates=predicates)
        partial = home.with_name(f".{name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        relative = None
        if adapter is not None:
            shutil.copytree(check_adapter_folder(adapter), partial / "adapter")
            relative = "adapter"
        scope.save(partial / "scope.json")
        atomic_write_text(
            partial / "agent.json",
            json.dumps({"name": name, "mission": mission, "adapter": relative, "cues": list(cues)}) + "\n",
        )
        partial.replace(home)  # the agent appears whole or not at all
        return self.agent(name)

    def agent(self, name: str) -> Agent:
        home = self.folder / "agents" / name
        valid = bool(name) and name.replace("_", "").replace("-", "").isalnum()
        try:
            if not valid:  # never a path outside the folder ("../x")
                raise OSError
            data = json.loads((home / "agent.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            names = ", ".join(a.name for a in self.agents()) or "(none)"
            raise InvalidArgument(
                f"no agent named {name!r}", received=name, fix=f"use one of: {names}"
            ) from None
        adapter = home / data["adapter"] if data.get("adapter") else None
        return Agent(
            data["name"], data["mission"], adapter=adapter, scope=Scope.load(home / "scope.json"),
            cues=tuple(data.get("cues", ())),
        )  # fmt: skip

    def agents(self) -> list[Agent]:
        root = self.folder / "agents"
        names = (
            sorted(p.name for p in root.iterdir() if (p / "agent.json").is_file()) if root.is_dir() else []
        )
        return [self.agent(name) for name in names]

    def set_adapter(self, name: str, relative: str) -> None:
        path = self.folder / "agents" / name / "agent.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        atomic_write_text(path, json.dumps({**data, "adapter": relative}) + "\n")

    # --------------------------------------------------------------------------------------- episodes
    def episodes(
        self,
        situations: Sequence[str],
        *,
        agents: Sequence[str] | None = None,
        participants: Sequence[Sequence[str]] | None = None,
        max_turns: int = 2,
        closer: str | None = None,
        max_new_tokens: int = 40,
        reply_tokens: int = 64,
        seed: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Episode]:
        """Run episodes (participants from the scopes unless given) and record every turn."""
        roster = self.agents() if agents is None else [self.agent(n) for n in agents]
        if not roster:
            raise InvalidArgument(
                "the bureaucracy has no agents", received="none", fix="add one: steer agents add …"
            )
        episodes = run_episodes(
            self.model, roster, situations, participants=participants, embedder=self.embedder,
            max_turns=max_turns, closer=closer, max_new_tokens=max_new_tokens, reply_tokens=reply_tokens,
            seed=seed, progress=progress,
        )  # fmt: skip
        self.record(episodes, agents=roster)
        return episodes

    def record(self, episodes: Sequence[Episode], *, agents: Sequence[Agent] | None = None) -> None:
        """Put episodes (run here or by `run_episodes`) into the database: one prompt and response per
        turn, each queued for people to rate on its speaker's rubric; an uncovered situation as such."""
        by_name = {a.name: a for a in (self.agents() if agents is None else agents)}
        unknown = sorted({t.agent for e in episodes for t in [*e.turns, e.reply] if t} - set(by_name))
        if unknown:
            raise InvalidArgument(
                "episodes name agents this bureaucracy does not have",
                received=", ".join(unknown),
                fix=f"add them first, or record only episodes among {', '.join(by_name) or '(no agents)'}",
            )
        with self.store() as store:
            for episode in episodes:
                self._record(store, episode, by_name)

    def _record(self, store: FeedbackStore, episode: Episode, agents: dict[str, Agent]) -> None:
        tag = uuid.uuid4().hex[:12]
        if episode.uncovered:
            store.add_prompt(episode.situation, source="uncovered", meta={"episode": tag})
            return
        shown = Episode(episode.situation, episode.participants)
        turns: list[tuple[Turn, bool]] = [(t, False) for t in episode.turns]
        if episode.reply is not None:
            turns.append((episode.reply, True))
        for index, (turn, closing) in enumerate(turns):
            opener = f"Reply to the user, written by {turn.agent}:" if closing else f"{turn.agent}:"
            meta = {
                "episode": tag,
                "situation": episode.situation,
                "turn": index,
                "agent": turn.agent,
                "mission": agents[turn.agent].mission,
                "closing": closing,
            }
            prompt = store.add_prompt(shown.transcript(agents) + opener, source="episode", meta=meta)
            adapter = agents[turn.agent].adapter
            response = store.add_response(
                prompt, turn.text, model=self.model_name, adapter=str(adapter) if adapter else None,
                logq=turn.logq, logp_base=turn.logp_base, kl=turn.kl, meta={**meta, "tokens": turn.tokens},
            )  # fmt: skip
            store.add_item(
                "rate", [response], rubric=f"mission:{turn.agent}"
            )  # people rate it in steer annotate
            shown.turns.append(turn)

    # ------------------------------------------------------------------------------------- adherence
    def rate(self, judge: ModelJudge, *, batch_size: int = 8) -> int:
        """Rate every unrated turn against its speaker's mission (rubric `mission:NAME`); returns how many."""
        agents = {a.name: a for a in self.agents()}
        with self.store() as store:
            prompts = {p.id: p for p in store.prompts()}
            annotator = store.ensure_annotator(f"judge:{judge.name}/missions", f"judge:{judge.name}")
            rated = {r.response_id for r in store.ratings() if r.annotator_id == annotator}
            todo = [r for r in store.responses() if r.meta.get("agent") in agents and r.id not in rated]
            for name, agent in agents.items():
                mine = [r for r in todo if r.meta["agent"] == name]
                for start in range(0, len(mine), batch_size):
                    batch = mine[start : start + batch_size]
                    questions = [prompts[r.prompt_id].meta["situation"] for r in batch]
                    ratings = judge.rate(
                        questions, [r.text or "(nothing)" for r in batch], mission_principle(agent)
                    )
                    for response, rating in zip(batch, ratings, strict=True):
                        store.add_rating(
                            annotator, response.id, rubric=f"mission:{name}", value=rating.value,
                            reason=f"E = {rating.value:.2f}; digit mass {rating.label_mass:.2f}",
                            request_id=f"adherence:{response.id}",
                        )  # fmt: skip
        return len(todo)

    def adherence(self) -> dict[str, dict[str, Any]]:
        """Per agent: turns, rated turns and their mean adherence (1–7), from the database (judge and people),
        and the share of its turns that show one of its cues (None for an agent without cues)."""
        cues = {a.name: a.cues for a in self.agents()}
        with self.store() as store:
            responses = {r.id: r for r in store.responses() if "agent" in r.meta}
            values: dict[int, list[float]] = {}
            for rating in store.ratings():
                if (
                    rating.response_id in responses
                    and rating.rubric == f"mission:{responses[rating.response_id].meta['agent']}"
                ):
                    values.setdefault(rating.response_id, []).append(rating.value)
        out: dict[str, dict[str, Any]] = {}
        for rid, response in responses.items():
            row = out.setdefault(response.meta["agent"], {"turns": 0, "rated": 0, "sum": 0.0, "cued": 0})
            row["turns"] += 1
            row["cued"] += bool(shows_cue(response.text, cues.get(response.meta["agent"], ())))
            if rid in values:
                row["rated"] += 1
                row["sum"] += sum(values[rid]) / len(values[rid])
        return {
            name: {
                "turns": r["turns"],
                "rated": r["rated"],
                "adherence": r["sum"] / r["rated"] if r["rated"] else None,
                "cue_rate": r["cued"] / r["turns"] if cues.get(name) else None,
            }
            for name, r in out.items()
        }

    # ------------------------------------------------------------------------------------ reflection
    # The loops that retrain agents on their episodes (agents/reflection.py), as methods.
    reflect = reflection.reflect
    bootstrap = reflection.bootstrap
    extend = reflection.extend

    def status(self) -> dict[str, Any]:
        with self.store() as store:
            prompts = store.prompts()
        episodes = {p.meta.get("episode") for p in prompts if p.source == "episode"}
        uncovered = sum(p.source == "uncovered" for p in prompts)
        adherence = self.adherence()
        return {
            "folder": str(self.folder),
            "model": self.model_name,
            "episodes": len(episodes),
            "uncovered": uncovered,
            "agents": [
                {
                    "name": a.name,
                    "mission": a.mission,
                    "adapter": str(a.adapter) if a.adapter else None,
                    "scope": {"references": len(a.scope.references), "alpha": a.scope.alpha}
                    if a.scope
                    else None,
                    "cues": list(a.cues),
                    **adherence.get(a.name, {"turns": 0, "rated": 0, "adherence": None, "cue_rate": None}),
                }
                for a in self.agents()
            ],
        }

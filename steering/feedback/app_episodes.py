"""The annotation app's episode view: an agents' discussion read turn by turn, each turn rateable.

An episode (`steering.agents`) is stored as one prompt + one response per turn, the prompts' meta
naming the episode (`episode`: its tag), the situation, the turn's index, its speaker (`agent`,
`mission`) and whether it is the closing reply; the response carries the turn's books (KL to the
base). `episode_index` lists the episodes of a database, `episode_turns` one episode's turns in order
with every rating each turn has (judges' and people's, on the speaker's rubric `mission:NAME`) and
the queue item a person rates it through (`/rate/<item>`). Reading only: the view writes nothing.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

from steering.feedback.store import FeedbackStore


def episode_index(store: FeedbackStore) -> list[dict[str, Any]]:
    """One row per episode, in the order they were recorded: tag, situation, speakers, turns, rated turns."""
    rows: dict[str, dict[str, Any]] = {}
    rated = {r.response_id for r in store.ratings()}
    prompts = {p.id: p for p in store.prompts() if p.meta.get("episode") and p.source == "episode"}
    for response in store.responses():
        prompt = prompts.get(response.prompt_id)
        if prompt is None:
            continue
        tag = str(prompt.meta["episode"])
        row = rows.setdefault(
            tag,
            {
                "tag": tag,
                "situation": str(prompt.meta.get("situation", "")),
                "agents": [],
                "turns": 0,
                "rated": 0,
            },
        )
        agent = str(prompt.meta.get("agent", ""))
        if agent not in row["agents"]:
            row["agents"].append(agent)
        row["turns"] += 1
        row["rated"] += response.id in rated
    return list(rows.values())


def episode_turns(store: FeedbackStore, tag: str) -> dict[str, Any] | None:
    """The episode `tag`: its situation and its turns in order (None when there is no such episode)."""
    prompts = [p for p in store.prompts() if p.source == "episode" and str(p.meta.get("episode")) == tag]
    if not prompts:
        return None
    items = {item.response_ids[0]: item.id for item in store.items("rate") if item.response_ids}
    values: dict[tuple[int, str], list[float]] = {}
    for rating in store.ratings():
        values.setdefault((rating.response_id, rating.rubric), []).append(rating.value)
    turns: list[dict[str, Any]] = []
    for prompt in prompts:
        for response in store.responses(prompt_id=prompt.id):
            given = values.get((response.id, f"mission:{prompt.meta.get('agent', '')}"), [])
            turns.append(
                {
                    "index": int(prompt.meta.get("turn", 0)),
                    "agent": str(prompt.meta.get("agent", "")),
                    "mission": str(prompt.meta.get("mission", "")),
                    "closing": bool(prompt.meta.get("closing", False)),
                    "text": response.text,
                    "kl": response.kl,
                    "ratings": len(given),
                    "adherence": fmean(given) if given else None,
                    "item": items.get(response.id),
                }
            )
    turns.sort(key=lambda turn: turn["index"])
    return {"tag": tag, "situation": str(prompts[0].meta.get("situation", "")), "turns": turns}

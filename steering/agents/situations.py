"""The example bureaucracy the project ships: agents' missions and a labelled pool of situations.

`data/bureaucracy.toml` names three agents (fact_checker, tutor, safety_officer) and a newcomer
(health_guide) with their missions. `data/situations.jsonl` holds 258 short user messages, each with
the agents whose scope it belongs to (overlaps included, `[]` for the ones nobody should take), a kind
(factual, learner, risky, their pairs, health, health+…, outside) and a split (train / heldout, about
60/40 within each kind). Users bring their own files in the same shapes.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from steering.errors import InputFormatError
from steering.jsonl import read_jsonl

SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class Situation:
    text: str
    scopes: tuple[str, ...]
    kind: str
    split: str


@dataclass(frozen=True)
class Mission:
    name: str
    mission: str
    cues: tuple[str, ...] = ()


@dataclass(frozen=True)
class Roster:
    agents: tuple[Mission, ...]
    newcomers: tuple[Mission, ...]


def packaged(name: str) -> Path:
    return Path(str(files("steering.agents").joinpath(f"data/{name}")))


def load_situations(path: str | Path | None = None) -> list[Situation]:
    """Situations from a JSONL file of {"text", "scopes", "kind", "split"} rows (default: the packaged pool)."""
    path = Path(path) if path is not None else packaged("situations.jsonl")
    example = '{"text": "Is it true bats are blind?", "scopes": ["fact_checker"], "kind": "factual", "split": "train"}'
    situations, seen = [], set()
    for number, _, row in read_jsonl(path, what="situations file", example=example):
        where = f"{path}:{number}"
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
            raise InputFormatError(
                f"{where}: a situation needs a non-empty 'text'", received=repr(row)[:80], fix=example
            )
        scopes = row.get("scopes", [])
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise InputFormatError(
                f"{where}: 'scopes' must be a list of agent names", received=repr(scopes)[:80], fix=example
            )
        split = row.get("split", "train")
        if split not in SPLITS:
            raise InputFormatError(
                f"{where}: 'split' must be train or heldout", received=repr(split), fix=example
            )
        if row["text"] in seen:
            raise InputFormatError(
                f"{where}: this situation appears twice", received=row["text"][:80], fix="remove the copy"
            )
        seen.add(row["text"])
        situations.append(Situation(row["text"], tuple(scopes), str(row.get("kind", "")), split))
    return situations


def load_roster(path: str | Path | None = None) -> Roster:
    """Agents and newcomers ([[agents]] / [[newcomers]] with name and mission) from a TOML file."""
    path = Path(path) if path is not None else packaged("bureaucracy.toml")
    fix = '[[agents]]\\nname = "tutor"\\nmission = "I explain patiently, step by step."'
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise InputFormatError(
            f"cannot read the bureaucracy file {path}: {error}", received=str(path), fix=fix
        ) from None

    def missions(key: str) -> tuple[Mission, ...]:
        rows = data.get(key, [])
        out = []
        for index, row in enumerate(rows if isinstance(rows, list) else [rows]):
            if not isinstance(row, dict) or not all(
                isinstance(row.get(k), str) and row[k].strip() for k in ("name", "mission")
            ):
                raise InputFormatError(
                    f"{path}: {key}[{index}] needs a name and a mission", received=repr(row)[:80], fix=fix
                )
            cues = row.get("cues", [])
            if not isinstance(cues, list) or not all(isinstance(c, str) and c.strip() for c in cues):
                raise InputFormatError(
                    f"{path}: {key}[{index}].cues must be a list of phrases",
                    received=repr(cues)[:80],
                    fix='cues = ["see a doctor", "not a diagnosis"]',
                )
            out.append(Mission(row["name"], row["mission"], tuple(c.strip() for c in cues)))
        return tuple(out)

    roster = Roster(missions("agents"), missions("newcomers"))
    names = [m.name for m in (*roster.agents, *roster.newcomers)]
    if len(set(names)) != len(names):
        raise InputFormatError(
            f"{path}: agent names must be unique", received=", ".join(names), fix="rename one"
        )
    return roster

"""Constitutions: the written principles an AI judge reads, from a strict TOML file.

A constitution is a list of principles, each an `id`, a `text` (what a better answer does) and
optional `examples` (a prompt with a better and a worse answer, shown to the judge):

    name = "helpful"                      # optional
    description = "Short factual answers" # optional

    [[principles]]
    id = "correct"
    text = "The answer states the correct answer to the question."

    [[principles.examples]]
    prompt = "What is the capital of France?"
    better = "Paris."
    worse = "Lyon."

Parsing is strict — unknown keys, empty texts, duplicate ids are errors that name the file and the
principle — because a typo such as `txt = …` would otherwise give a judge an empty principle and
labels that look real. `Constitution.digest` is a hash of the *parsed content* (not the file's bytes:
comments and formatting do not change it), so the annotator id of a judge, `judge:<model>:<digest>`,
says exactly which principles produced its labels.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steering.errors import InputFormatError, did_you_mean
from steering.jsonl import read_text

TOP_KEYS = ("name", "description", "principles")
PRINCIPLE_KEYS = ("id", "text", "examples")
EXAMPLE_KEYS = ("prompt", "better", "worse")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DIGEST_LENGTH = 12


@dataclass(frozen=True)
class Example:
    """A worked example shown to the judge: for `prompt`, `better` follows the principle more than `worse`."""

    prompt: str
    better: str
    worse: str


@dataclass(frozen=True)
class Principle:
    """One written principle: a short id (used in rubrics and reports) and the text the judge reads."""

    id: str
    text: str
    examples: tuple[Example, ...] = ()


@dataclass(frozen=True)
class Constitution:
    """A named set of principles, in file order.

    Attributes:
        principles: at least one, ids unique.
        name: a display name (the file's stem when the file names none).
        description: free text, not shown to the judge.
    """

    principles: tuple[Principle, ...]
    name: str = "constitution"
    description: str = ""

    @property
    def digest(self) -> str:
        """A stable hash (12 hex digits of SHA-256) of the principles' ids, texts and examples.

        The name and description are left out: renaming a file does not change what a judge reads.
        """
        content = [
            {"id": p.id, "text": p.text, "examples": [[e.prompt, e.better, e.worse] for e in p.examples]}
            for p in self.principles
        ]
        canonical = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:DIGEST_LENGTH]

    def principle(self, principle_id: str) -> Principle:
        """The principle with this id.

        Raises:
            InputFormatError: no principle has that id (the message lists them).
        """
        for principle in self.principles:
            if principle.id == principle_id:
                return principle
        ids = [p.id for p in self.principles]
        raise InputFormatError(
            f"the constitution {self.name} has no principle '{principle_id}'."
            + did_you_mean(principle_id, ids),
            received=principle_id,
            fix=f"use one of: {', '.join(ids)}",
        )


def load_constitution(path: str | Path) -> Constitution:
    """Read and check a constitution TOML file.

    Raises:
        InputFormatError: the file is missing, not UTF-8, not TOML, or breaks a rule (unknown key,
            missing or empty text, duplicate id, no principles); the message names the file and the
            principle.
    """
    text = read_text(path, what="constitution file")
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputFormatError(
            f"the constitution file {path} is not valid TOML ({error})",
            received=str(path),
            fix="correct the TOML (see docs/feedback.md for the format)",
        ) from None
    return parse_constitution(values, source=str(path), default_name=Path(path).stem)


def parse_constitution(
    values: dict[str, Any], *, source: str, default_name: str = "constitution"
) -> Constitution:
    """A `Constitution` from parsed TOML values; `source` names the file in error messages."""
    _refuse_unknown(values, TOP_KEYS, where=f"the constitution file {source}")
    raw = values.get("principles")
    if not isinstance(raw, list) or not raw:
        raise InputFormatError(
            f"the constitution file {source} has no principles",
            received=type(raw).__name__ if raw is not None else "no [[principles]] table",
            fix='add at least one [[principles]] table with id = "…" and text = "…"',
        )
    principles: list[Principle] = []
    seen: set[str] = set()
    for number, item in enumerate(raw, start=1):
        principle = _parse_principle(item, source=source, number=number)
        if principle.id in seen:
            raise InputFormatError(
                f"the constitution file {source} has two principles with the id '{principle.id}'",
                received=f"principle {number}",
                fix="give every principle its own id",
            )
        seen.add(principle.id)
        principles.append(principle)
    name = _optional_text(values, "name", where=f"the constitution file {source}") or default_name
    description = _optional_text(values, "description", where=f"the constitution file {source}")
    return Constitution(tuple(principles), name=name, description=description)


def _parse_principle(item: object, *, source: str, number: int) -> Principle:
    where = f"principle {number} of the constitution file {source}"
    if not isinstance(item, dict):
        raise InputFormatError(
            f"{where} is not a table", received=item, fix='write [[principles]] with id = "…" and text = "…"'
        )
    principle_id = item.get("id")
    if not isinstance(principle_id, str) or not _ID.match(principle_id):
        raise InputFormatError(
            f"{where} needs an id of letters, digits, '_', '-' or '.'",
            received=principle_id,
            fix='add e.g. id = "concise"',
        )
    where = f"principle '{principle_id}' (number {number}) of the constitution file {source}"
    _refuse_unknown(item, PRINCIPLE_KEYS, where=where)
    text = item.get("text")
    if not isinstance(text, str) or not text.strip():
        raise InputFormatError(
            f"{where} has no text",
            received=text,
            fix='add text = "…": what a better answer does, in one or two sentences',
        )
    examples = item.get("examples", [])
    if not isinstance(examples, list):
        raise InputFormatError(
            f"{where}: examples must be a list of tables",
            received=examples,
            fix="write [[principles.examples]] with prompt, better and worse",
        )
    parsed = tuple(_parse_example(e, where=f"example {i} of {where}") for i, e in enumerate(examples, 1))
    return Principle(principle_id, text.strip(), parsed)


def _parse_example(item: object, *, where: str) -> Example:
    if not isinstance(item, dict):
        raise InputFormatError(f"{where} is not a table", received=item, fix="give prompt, better and worse")
    _refuse_unknown(item, EXAMPLE_KEYS, where=where)
    fields = {}
    for key in EXAMPLE_KEYS:
        value = item.get(key)
        if not isinstance(value, str) or not value.strip():
            raise InputFormatError(f"{where} needs a non-empty {key}", received=value, fix=f'add {key} = "…"')
        fields[key] = value.strip()
    return Example(**fields)


def _refuse_unknown(values: dict[str, Any], allowed: tuple[str, ...], *, where: str) -> None:
    for key in values:
        if key not in allowed:
            raise InputFormatError(
                f"{where} has an unknown key '{key}'." + did_you_mean(key, allowed),
                received=key,
                fix=f"use only: {', '.join(allowed)}",
            )


def _optional_text(values: dict[str, Any], key: str, *, where: str) -> str:
    value = values.get(key, "")
    if not isinstance(value, str):
        raise InputFormatError(f"{where}: {key} must be a string", received=value, fix=f'write {key} = "…"')
    return value.strip()

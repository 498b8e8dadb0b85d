"""The feedback store's tables and their migrations, the check that a file is ours, and row references.

The schema version lives in `PRAGMA user_version` and the file is marked as a steering feedback store by
`PRAGMA application_id`. `MIGRATIONS[i]` takes a file from version i to version i + 1; `migrate` applies
the missing ones in order inside the caller's transaction, so an upgrade is all or nothing. A file that is
not ours (another program's SQLite file) or that a newer version wrote is refused before anything is
written (`schema_version_of`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from steering.errors import InputFormatError, InvalidArgument

# "STFB" in ASCII: marks a SQLite file as a steering feedback store (PRAGMA application_id).
APPLICATION_ID = 0x53544642

_V1 = [
    """CREATE TABLE prompts (
        id INTEGER PRIMARY KEY, text TEXT NOT NULL, source TEXT, meta TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL)""",
    """CREATE TABLE responses (
        id INTEGER PRIMARY KEY, prompt_id INTEGER NOT NULL REFERENCES prompts(id), text TEXT NOT NULL,
        model TEXT NOT NULL, adapter TEXT, controls TEXT NOT NULL DEFAULT '{}', seed INTEGER,
        logq REAL, logp_base REAL, kl REAL, meta TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL)""",
    "CREATE INDEX responses_prompt ON responses(prompt_id)",
    """CREATE TABLE annotators (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, token_hash TEXT UNIQUE,
        created REAL NOT NULL)""",
    """CREATE TABLE answers (
        id INTEGER PRIMARY KEY, annotator_id INTEGER NOT NULL REFERENCES annotators(id),
        kind TEXT NOT NULL CHECK (kind IN ('compare', 'rank', 'rate', 'critique')),
        request_id TEXT UNIQUE, seconds REAL, created REAL NOT NULL)""",
    "CREATE INDEX answers_annotator ON answers(annotator_id, id)",
    """CREATE TABLE comparisons (
        answer_id INTEGER PRIMARY KEY REFERENCES answers(id) ON DELETE CASCADE,
        prompt_id INTEGER NOT NULL REFERENCES prompts(id),
        response_a INTEGER NOT NULL REFERENCES responses(id),
        response_b INTEGER NOT NULL REFERENCES responses(id),
        shown_left TEXT NOT NULL CHECK (shown_left IN ('a', 'b')),
        choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both_bad')),
        soft_label REAL CHECK (soft_label IS NULL OR (soft_label >= 0 AND soft_label <= 1)),
        reason TEXT, CHECK (response_a != response_b))""",
    """CREATE TABLE rankings (
        answer_id INTEGER PRIMARY KEY REFERENCES answers(id) ON DELETE CASCADE,
        prompt_id INTEGER NOT NULL REFERENCES prompts(id), reason TEXT)""",
    """CREATE TABLE ranking_items (
        ranking_id INTEGER NOT NULL REFERENCES rankings(answer_id) ON DELETE CASCADE,
        response_id INTEGER NOT NULL REFERENCES responses(id), rank INTEGER NOT NULL CHECK (rank >= 1),
        PRIMARY KEY (ranking_id, rank), UNIQUE (ranking_id, response_id))""",
    """CREATE TABLE ratings (
        answer_id INTEGER PRIMARY KEY REFERENCES answers(id) ON DELETE CASCADE,
        response_id INTEGER NOT NULL REFERENCES responses(id), rubric TEXT NOT NULL,
        value REAL NOT NULL CHECK (value >= 1 AND value <= 7), reason TEXT)""",
    """CREATE TABLE critiques (
        answer_id INTEGER PRIMARY KEY REFERENCES answers(id) ON DELETE CASCADE,
        response_id INTEGER NOT NULL REFERENCES responses(id), critique TEXT NOT NULL, revision TEXT)""",
]

# Version 2 adds the work queue (items, the responses each shows, who was handed which item) and the rubric
# (principle) of a comparison.
_V2 = [
    """CREATE TABLE items (
        id INTEGER PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('compare', 'rank', 'rate', 'critique')),
        prompt_id INTEGER NOT NULL REFERENCES prompts(id), rubric TEXT, created REAL NOT NULL)""",
    """CREATE TABLE item_responses (
        item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE, position INTEGER NOT NULL,
        response_id INTEGER NOT NULL REFERENCES responses(id), PRIMARY KEY (item_id, position))""",
    """CREATE TABLE assignments (
        item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
        annotator_id INTEGER NOT NULL REFERENCES annotators(id),
        status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'skipped')),
        created REAL NOT NULL, PRIMARY KEY (item_id, annotator_id))""",
    "CREATE INDEX assignments_annotator ON assignments(annotator_id, status)",
    "ALTER TABLE answers ADD COLUMN item_id INTEGER REFERENCES items(id)",
    "ALTER TABLE comparisons ADD COLUMN rubric TEXT",  # the principle a judge compared on; None: overall
]

# MIGRATIONS[i] takes a file from version i to version i + 1; SCHEMA_VERSION is where the last one ends.
MIGRATIONS: tuple[tuple[str, ...], ...] = (tuple(_V1), tuple(_V2))
SCHEMA_VERSION = len(MIGRATIONS)


def not_ours(path: Path, why: str) -> InputFormatError:
    """The error for a file that is not a steering feedback database (`why` says what it is instead)."""
    return InputFormatError(
        f"{path} is not a steering feedback database: {why}",
        received=str(path),
        fix="pass a file made by `steer feedback`, or a new path to create one",
    )


def schema_version_of(db: sqlite3.Connection, path: Path) -> int:
    """The file's schema version, after checking it is a feedback store (or empty) and not too new.

    Raises:
        InputFormatError: another program's SQLite file, or one written by a newer steering.
    """
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    version = db.execute("PRAGMA user_version").fetchone()[0]
    tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id != APPLICATION_ID and (app_id != 0 or version != 0 or tables != 0):
        raise not_ours(path, "it is a SQLite file of another program (unknown application id)")
    if version > SCHEMA_VERSION:
        raise InputFormatError(
            f"the feedback database {path} has schema version {version}, newer than this "
            f"steering's {SCHEMA_VERSION}",
            received=str(path),
            fix="upgrade steering (pip install -U steering) to read it",
        )
    return int(version)


def migrate(db: sqlite3.Connection, version: int) -> None:
    """Take a file at `version` to SCHEMA_VERSION and mark it as ours; call inside a write transaction."""
    for target in range(version, SCHEMA_VERSION):
        for statement in MIGRATIONS[target]:
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {target + 1}")
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")


# ----------------------------------------------------------------------------------- row references
def require(db: sqlite3.Connection, table: str, row_id: object) -> None:
    """Row `row_id` exists in `table` (one of our constant table names, never user input).

    Raises:
        InvalidArgument: the id is not an int, or there is no such row.
    """
    if isinstance(row_id, bool) or not isinstance(row_id, int):
        raise InvalidArgument(f"a {table[:-1]} id must be an int", received=row_id)
    if db.execute(f"SELECT 1 FROM {table} WHERE id = ?", (row_id,)).fetchone() is None:
        raise InvalidArgument(f"there is no {table[:-1]} with id {row_id}", received=row_id)


def same_prompt(db: sqlite3.Connection, response_ids: Sequence[int]) -> int:
    """The prompt id the responses all answer.

    Raises:
        InvalidArgument: a response does not exist, or they answer different prompts.
    """
    prompts = set()
    for response in response_ids:
        require(db, "responses", response)
        prompts.add(db.execute("SELECT prompt_id FROM responses WHERE id = ?", (response,)).fetchone()[0])
    if len(prompts) != 1:
        raise InvalidArgument(
            "the responses answer different prompts", received=list(response_ids), fix="pick one prompt's"
        )
    return int(prompts.pop())

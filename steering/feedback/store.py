"""The feedback store: one SQLite file that people (the annotation app) and AI judges write to alike.

What it holds: prompts; candidate responses with their provenance (model, adapter, controls, seed and the
engine's books `logq`, `logp_base`, KL); annotators (`human`, `judge:<model>:<constitution hash>` or
`imported:<source>`), each with a hashed token; and answers. Every answer is one row of `answers` (who, when,
how long, which request, which queue item) plus one detail row: a comparison (A/B with the order *shown*
recorded), a ranking of N (`ranking_items`), a rating (1–7 on a named rubric) or a critique with an optional
revision. Deleting an `answers` row deletes its detail (ON DELETE CASCADE), which is how "undo" works.

The queue: `items` are units of work (compare two responses, rank a prompt's responses, rate or critique one
response); `assignments` hand each item to at most `overlap` annotators so that agreement can be measured.

Safety: WAL journal, foreign keys on, a busy timeout, every write inside `BEGIN IMMEDIATE … COMMIT`, SQL only
with parameters, one connection per thread (the app's threaded server shares one store object), and several
processes may open the same file. The schema version lives in `PRAGMA user_version`; `MIGRATIONS` upgrade an
older file in place, in order, in one transaction. A file that is not ours (another program's SQLite file, a
text file) or that a newer version wrote is refused with a clear error, never modified.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steering.errors import InputFormatError, InvalidArgument

# "STFB" in ASCII: marks a SQLite file as a steering feedback store (PRAGMA application_id).
APPLICATION_ID = 0x53544642
CHOICES = ("a", "b", "tie", "both_bad")
ITEM_KINDS = ("compare", "rank", "rate", "critique")
RATING_MIN, RATING_MAX = 1.0, 7.0
BUSY_TIMEOUT_MS = 30_000
PENDING_LEASE_S = 3600.0  # a pending assignment older than this no longer counts toward `overlap`
COUNTED_TABLES = (
    "prompts",
    "responses",
    "annotators",
    "comparisons",
    "rankings",
    "ratings",
    "critiques",
    "items",
)

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


@dataclass(frozen=True)
class Prompt:
    id: int
    text: str
    source: str | None
    meta: dict[str, Any]
    created: float


@dataclass(frozen=True)
class Response:
    """A candidate answer with its provenance and the engine's books (None when unknown, e.g. imported)."""

    id: int
    prompt_id: int
    text: str
    model: str
    adapter: str | None
    controls: dict[str, Any]
    seed: int | None
    logq: float | None
    logp_base: float | None
    kl: float | None
    meta: dict[str, Any]
    created: float


@dataclass(frozen=True)
class Annotator:
    """`kind` is "human", "judge:<model>:<constitution hash>" or "imported:<source>"."""

    id: int
    name: str
    kind: str
    created: float

    @property
    def family(self) -> str:
        """ "human", "judge" or "imported": the part of `kind` before the first colon."""
        return self.kind.split(":", 1)[0]


@dataclass(frozen=True)
class Comparison:
    """`choice` is about the stored order (a = response_a); `shown_left` says which one was on the left."""

    answer_id: int
    annotator_id: int
    prompt_id: int
    response_a: int
    response_b: int
    shown_left: str
    choice: str
    soft_label: float | None
    reason: str | None
    seconds: float | None
    created: float
    rubric: str | None = None


@dataclass(frozen=True)
class RankingAnswer:
    """`response_ids` best first."""

    answer_id: int
    annotator_id: int
    prompt_id: int
    response_ids: tuple[int, ...]
    reason: str | None
    seconds: float | None
    created: float


@dataclass(frozen=True)
class RatingAnswer:
    answer_id: int
    annotator_id: int
    response_id: int
    rubric: str
    value: float
    reason: str | None
    seconds: float | None
    created: float


@dataclass(frozen=True)
class CritiqueAnswer:
    answer_id: int
    annotator_id: int
    response_id: int
    critique: str
    revision: str | None
    seconds: float | None
    created: float


@dataclass(frozen=True)
class Item:
    """A unit of work in the queue: `response_ids` in item order (two for compare, one for rate/critique)."""

    id: int
    kind: str
    prompt_id: int
    response_ids: tuple[int, ...]
    rubric: str | None


@dataclass(frozen=True)
class Progress:
    """One annotator's queue for one kind: answered, skipped, and still available to them."""

    done: int
    skipped: int
    remaining: int

    @property
    def total(self) -> int:
        return self.done + self.skipped + self.remaining


def hash_token(token: str) -> str:
    """SHA-256 of a token (tokens are 256-bit random strings, so no salt or slow hash is needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _loads(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text else {}


def _dumps(value: dict[str, Any] | None, *, name: str) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        raise InvalidArgument(f"{name} must be a dict (stored as JSON)", received=value)
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(
            f"{name} cannot be stored as JSON ({error})", received=value, fix="pass plain numbers and strings"
        ) from None


def _check_float(value: float | None, *, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgument(f"{name} must be a finite number or None", received=value)
    return float(value)


def _check_text(value: object, *, name: str, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not optional and not value.strip()):
        raise InvalidArgument(f"{name} must be a non-empty string", received=value)
    return value


def _check_kind(kind: str) -> str:
    family, _, rest = kind.partition(":")
    if kind == "human" or (family in ("judge", "imported") and rest):
        return kind
    raise InvalidArgument(
        "an annotator's kind must be 'human', 'judge:<model>:<constitution hash>' or 'imported:<source>'",
        received=kind,
    )


class FeedbackStore:
    """Prompts, responses, annotators and their answers in one SQLite file (see the module docstring).

    Open with `FeedbackStore.open(path)` and close with `close()` or a `with` block. The object may be
    shared between threads: each thread gets its own connection.
    """

    def __init__(self, path: Path) -> None:
        """Use `FeedbackStore.open`, which creates or checks and upgrades the file."""
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    # ----------------------------------------------------------------- opening, closing, transactions
    @classmethod
    def open(cls, path: str | Path, *, create: bool = True) -> FeedbackStore:
        """Open the store at `path`, creating it when `create` and upgrading an older schema in place.

        Raises:
            InputFormatError: the file is missing (with create=False) or a directory, is not a SQLite file,
                is another program's SQLite file, or was written by a newer version of steering.
        """
        file = Path(path)
        if file.is_dir():
            raise InputFormatError(
                f"the feedback database {path} is a directory", received=str(path), fix="pass a .db file"
            )
        if not file.exists() and not create:
            raise InputFormatError(
                f"the feedback database {path} does not exist",
                received=str(path),
                fix="check the path, or create one with `steer feedback add --db FILE …`",
            )
        store = cls(file)
        try:
            store._upgrade()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Close every thread's connection. The store cannot be used afterwards."""
        with self._lock:
            self._closed = True
            for connection in self._connections:
                connection.close()
            self._connections.clear()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        with self._lock:
            if self._closed:
                raise InvalidArgument("the feedback store is closed", received=str(self.path))
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            self._connections.append(connection)
        try:
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as error:
            raise self._not_ours(f"it is not a SQLite database ({error})") from None
        self._local.connection = connection
        return connection

    def _not_ours(self, why: str) -> InputFormatError:
        return InputFormatError(
            f"{self.path} is not a steering feedback database: {why}",
            received=str(self.path),
            fix="pass a file made by `steer feedback`, or a new path to create one",
        )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: BEGIN IMMEDIATE takes the write lock up front (no deadlocking upgrades).

        Inside `batch()` the writes join the batch's transaction instead.
        """
        connection = self._connection()
        if connection.in_transaction:
            yield connection
            return
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make every write of this thread inside the block one transaction: all of it is stored, or none.

        Used by imports (a crash or a bad row half-way leaves the store as it was) and by `feedback add`.
        Other writers wait (busy timeout) until the block ends, so keep it short of user interaction.
        """
        with self._write():
            yield

    def _upgrade(self) -> None:
        """Check the file is ours (or empty), then apply the missing migrations in one transaction.

        The check runs before anything is written (a foreign file is left exactly as it was, journal mode
        included) and again under the write lock, in case another process created the schema meanwhile.
        """
        connection = self._connection()
        try:
            if self._check_ours(connection) == SCHEMA_VERSION:
                connection.execute("PRAGMA journal_mode = WAL")  # already WAL: no write, no lock
                return
            connection.execute("PRAGMA journal_mode = WAL")
            with self._write() as db:
                version = self._check_ours(db)
                for target in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS[target]:
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {target + 1}")
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        except sqlite3.DatabaseError as error:
            raise self._not_ours(f"SQLite says: {error}") from None

    def _check_ours(self, db: sqlite3.Connection) -> int:
        """The file's schema version, after checking it is a feedback store (or empty) and not too new."""
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id != APPLICATION_ID and (app_id != 0 or version != 0 or tables != 0):
            raise self._not_ours("it is a SQLite file of another program (unknown application id)")
        if version > SCHEMA_VERSION:
            raise InputFormatError(
                f"the feedback database {self.path} has schema version {version}, newer than this "
                f"steering's {SCHEMA_VERSION}",
                received=str(self.path),
                fix="upgrade steering (pip install -U steering) to read it",
            )
        return int(version)

    @property
    def schema_version(self) -> int:
        """The file's `PRAGMA user_version`."""
        return int(self._connection().execute("PRAGMA user_version").fetchone()[0])

    # ----------------------------------------------------------------- prompts, responses, annotators
    def add_prompt(self, text: str, *, source: str | None = None, meta: dict[str, Any] | None = None) -> int:
        """Store a prompt; returns its id."""
        _check_text(text, name="prompt text")
        meta_json = _dumps(meta, name="meta")
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO prompts (text, source, meta, created) VALUES (?, ?, ?, ?)",
                (text, source, meta_json, time.time()),
            )
        return int(cursor.lastrowid or 0)

    def add_response(
        self,
        prompt_id: int,
        text: str,
        *,
        model: str,
        adapter: str | None = None,
        controls: dict[str, Any] | None = None,
        seed: int | None = None,
        logq: float | None = None,
        logp_base: float | None = None,
        kl: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Store a candidate response to prompt `prompt_id` with its provenance; returns its id.

        `logq` and `logp_base` are the engine's sums of log-probabilities of the sampled tokens under the
        steered and the base model, `kl` the KL estimate the engine reported (`steering.decode.Sample`).
        """
        if not isinstance(text, str):
            raise InvalidArgument("a response's text must be a string", received=text)
        _check_text(model, name="model")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InvalidArgument("seed must be an int or None", received=seed)
        row = (
            prompt_id,
            text,
            model,
            adapter,
            _dumps(controls, name="controls"),
            seed,
            _check_float(logq, name="logq"),
            _check_float(logp_base, name="logp_base"),
            _check_float(kl, name="kl"),
            _dumps(meta, name="meta"),
            time.time(),
        )
        with self._write() as db:
            self._require(db, "prompts", prompt_id)
            cursor = db.execute(
                "INSERT INTO responses (prompt_id, text, model, adapter, controls, seed, logq, logp_base, kl,"
                " meta, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        return int(cursor.lastrowid or 0)

    def add_annotator(self, name: str, kind: str = "human") -> str:
        """Create an annotator and return their token (shown once; only its SHA-256 is stored).

        Raises:
            InvalidArgument: the name is taken or empty, or the kind is not one of the three forms.
        """
        _check_text(name, name="annotator name")
        _check_kind(kind)
        token = secrets.token_urlsafe(32)
        with self._write() as db:
            if db.execute("SELECT 1 FROM annotators WHERE name = ?", (name,)).fetchone():
                raise InvalidArgument(
                    f"an annotator named {name!r} already exists", received=name, fix="choose another name"
                )
            db.execute(
                "INSERT INTO annotators (name, kind, token_hash, created) VALUES (?, ?, ?, ?)",
                (name, kind, hash_token(token), time.time()),
            )
        return token

    def ensure_annotator(self, name: str, kind: str) -> int:
        """The id of annotator `name`, created without a token if new (judges and imports use this).

        Raises:
            InvalidArgument: `name` exists with a different kind.
        """
        _check_text(name, name="annotator name")
        _check_kind(kind)
        with self._write() as db:
            row = db.execute("SELECT id, kind FROM annotators WHERE name = ?", (name,)).fetchone()
            if row is not None:
                if row[1] != kind:
                    raise InvalidArgument(
                        f"annotator {name!r} exists with kind {row[1]!r}, not {kind!r}",
                        received=kind,
                        fix="use another name",
                    )
                return int(row[0])
            cursor = db.execute(
                "INSERT INTO annotators (name, kind, token_hash, created) VALUES (?, ?, NULL, ?)",
                (name, kind, time.time()),
            )
        return int(cursor.lastrowid or 0)

    def annotator_for_token(self, token: str) -> Annotator | None:
        """The annotator whose token this is, or None (compared in constant time)."""
        if not isinstance(token, str) or not token:
            return None
        digest = hash_token(token)
        row = (
            self._connection()
            .execute(
                "SELECT id, name, kind, created, token_hash FROM annotators WHERE token_hash = ?", (digest,)
            )
            .fetchone()
        )
        if row is None or not hmac.compare_digest(row[4], digest):
            return None
        return Annotator(row[0], row[1], row[2], row[3])

    def annotator(self, annotator_id: int) -> Annotator | None:
        """Annotator `annotator_id`, or None."""
        row = (
            self._connection()
            .execute("SELECT id, name, kind, created FROM annotators WHERE id = ?", (annotator_id,))
            .fetchone()
        )
        return Annotator(*row) if row else None

    # ----------------------------------------------------------------- answers
    def add_comparison(
        self,
        annotator_id: int,
        *,
        response_a: int,
        response_b: int,
        choice: str,
        shown_left: str = "a",
        soft_label: float | None = None,
        rubric: str | None = None,
        reason: str | None = None,
        seconds: float | None = None,
        request_id: str | None = None,
        item_id: int | None = None,
    ) -> int:
        """Record that `annotator_id` compared two responses to the same prompt; returns the answer id.

        `choice` ("a", "b", "tie", "both_bad") refers to response_a/response_b, whatever the screen showed;
        `shown_left` records which of the two was on the left. `soft_label` is P(a ≻ b) (judges);
        `rubric` names the principle compared on (None: overall preference).
        A second call with the same `request_id` writes nothing and returns the first answer's id.
        """
        if choice not in CHOICES:
            raise InvalidArgument("choice must be one of " + ", ".join(CHOICES), received=choice)
        if shown_left not in ("a", "b"):
            raise InvalidArgument("shown_left must be 'a' or 'b'", received=shown_left)
        soft = _check_float(soft_label, name="soft_label")
        if soft is not None and not 0.0 <= soft <= 1.0:
            raise InvalidArgument("soft_label is a probability P(a ≻ b) in [0, 1]", received=soft_label)
        if response_a == response_b:
            raise InvalidArgument("a comparison needs two different responses", received=response_a)
        _check_text(reason, name="reason", optional=True)
        _check_text(rubric, name="rubric", optional=True)
        with self._write() as db:
            found = self._existing_answer(db, request_id, annotator_id)
            if found is not None:
                return found
            prompt_id = self._same_prompt(db, [response_a, response_b])
            answer = self._insert_answer(db, annotator_id, "compare", request_id, seconds, item_id)
            db.execute(
                "INSERT INTO comparisons (answer_id, prompt_id, response_a, response_b, shown_left, choice,"
                " soft_label, reason, rubric) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (answer, prompt_id, response_a, response_b, shown_left, choice, soft, reason, rubric),
            )
        return answer

    def add_ranking(
        self,
        annotator_id: int,
        response_ids: Sequence[int],
        *,
        reason: str | None = None,
        seconds: float | None = None,
        request_id: str | None = None,
        item_id: int | None = None,
    ) -> int:
        """Record a ranking (`response_ids` best first, ≥ 2 distinct responses to one prompt)."""
        ids = list(response_ids)
        if len(ids) < 2 or len(set(ids)) != len(ids):
            raise InvalidArgument("a ranking needs at least two distinct response ids", received=ids)
        _check_text(reason, name="reason", optional=True)
        with self._write() as db:
            found = self._existing_answer(db, request_id, annotator_id)
            if found is not None:
                return found
            prompt_id = self._same_prompt(db, ids)
            answer = self._insert_answer(db, annotator_id, "rank", request_id, seconds, item_id)
            db.execute(
                "INSERT INTO rankings (answer_id, prompt_id, reason) VALUES (?, ?, ?)",
                (answer, prompt_id, reason),
            )
            db.executemany(
                "INSERT INTO ranking_items (ranking_id, response_id, rank) VALUES (?, ?, ?)",
                [(answer, response, rank) for rank, response in enumerate(ids, start=1)],
            )
        return answer

    def add_rating(
        self,
        annotator_id: int,
        response_id: int,
        *,
        rubric: str,
        value: float,
        reason: str | None = None,
        seconds: float | None = None,
        request_id: str | None = None,
        item_id: int | None = None,
    ) -> int:
        """Record a rating in [1, 7] on `rubric` (judges may give a non-integer expected value)."""
        _check_text(rubric, name="rubric")
        number = _check_float(value, name="rating")
        if number is None or not RATING_MIN <= number <= RATING_MAX:
            raise InvalidArgument("a rating must be a number from 1 to 7", received=value)
        _check_text(reason, name="reason", optional=True)
        with self._write() as db:
            found = self._existing_answer(db, request_id, annotator_id)
            if found is not None:
                return found
            self._require(db, "responses", response_id)
            answer = self._insert_answer(db, annotator_id, "rate", request_id, seconds, item_id)
            db.execute(
                "INSERT INTO ratings (answer_id, response_id, rubric, value, reason) VALUES (?, ?, ?, ?, ?)",
                (answer, response_id, rubric, number, reason),
            )
        return answer

    def add_critique(
        self,
        annotator_id: int,
        response_id: int,
        *,
        critique: str,
        revision: str | None = None,
        seconds: float | None = None,
        request_id: str | None = None,
        item_id: int | None = None,
    ) -> int:
        """Record what is wrong with a response and, optionally, a better answer (SFT data)."""
        _check_text(critique, name="critique")
        _check_text(revision, name="revision", optional=True)
        with self._write() as db:
            found = self._existing_answer(db, request_id, annotator_id)
            if found is not None:
                return found
            self._require(db, "responses", response_id)
            answer = self._insert_answer(db, annotator_id, "critique", request_id, seconds, item_id)
            db.execute(
                "INSERT INTO critiques (answer_id, response_id, critique, revision) VALUES (?, ?, ?, ?)",
                (answer, response_id, critique, revision),
            )
        return answer

    def undo_last(self, annotator_id: int) -> int | None:
        """Delete the annotator's latest answer (its item goes back to their queue); returns its id or None."""
        with self._write() as db:
            row = db.execute(
                "SELECT id, item_id FROM answers WHERE annotator_id = ? ORDER BY id DESC LIMIT 1",
                (annotator_id,),
            ).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM answers WHERE id = ?", (row[0],))
            if row[1] is not None:
                db.execute(
                    "UPDATE assignments SET status = 'pending' WHERE item_id = ? AND annotator_id = ?",
                    (row[1], annotator_id),
                )
        return int(row[0])

    def answer_for_request(self, request_id: str) -> int | None:
        """The id of the answer submitted with `request_id`, or None."""
        row = (
            self._connection()
            .execute("SELECT id FROM answers WHERE request_id = ?", (request_id,))
            .fetchone()
        )
        return int(row[0]) if row else None

    def _existing_answer(
        self, db: sqlite3.Connection, request_id: str | None, annotator_id: int
    ) -> int | None:
        if request_id is None:
            return None
        _check_text(request_id, name="request_id")
        row = db.execute(
            "SELECT id, annotator_id FROM answers WHERE request_id = ?", (request_id,)
        ).fetchone()
        if row is not None and row[1] != annotator_id:
            raise InvalidArgument("request_id was already used by another annotator", received=request_id)
        return int(row[0]) if row else None

    def _insert_answer(
        self,
        db: sqlite3.Connection,
        annotator_id: int,
        kind: str,
        request_id: str | None,
        seconds: float | None,
        item_id: int | None,
    ) -> int:
        self._require(db, "annotators", annotator_id)
        spent = _check_float(seconds, name="seconds")
        if spent is not None and spent < 0:
            raise InvalidArgument("seconds spent cannot be negative", received=seconds)
        if item_id is not None:
            row = db.execute("SELECT kind FROM items WHERE id = ?", (item_id,)).fetchone()
            if row is None or row[0] != kind:
                raise InvalidArgument(f"there is no {kind} item with id {item_id}", received=item_id)
            db.execute(
                "INSERT INTO assignments (item_id, annotator_id, status, created) VALUES (?, ?, 'done', ?)"
                " ON CONFLICT (item_id, annotator_id) DO UPDATE SET status = 'done'",
                (item_id, annotator_id, time.time()),
            )
        cursor = db.execute(
            "INSERT INTO answers (annotator_id, kind, request_id, seconds, created, item_id)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (annotator_id, kind, request_id, spent, time.time(), item_id),
        )
        return int(cursor.lastrowid or 0)

    @staticmethod
    def _require(db: sqlite3.Connection, table: str, row_id: object) -> None:
        # `table` is one of our constant names, never user input; the id is a parameter.
        if isinstance(row_id, bool) or not isinstance(row_id, int):
            raise InvalidArgument(f"a {table[:-1]} id must be an int", received=row_id)
        if db.execute(f"SELECT 1 FROM {table} WHERE id = ?", (row_id,)).fetchone() is None:
            raise InvalidArgument(f"there is no {table[:-1]} with id {row_id}", received=row_id)

    def _same_prompt(self, db: sqlite3.Connection, response_ids: Sequence[int]) -> int:
        prompts = set()
        for response in response_ids:
            self._require(db, "responses", response)
            prompts.add(db.execute("SELECT prompt_id FROM responses WHERE id = ?", (response,)).fetchone()[0])
        if len(prompts) != 1:
            raise InvalidArgument(
                "the responses answer different prompts", received=list(response_ids), fix="pick one prompt's"
            )
        return int(prompts.pop())

    # ----------------------------------------------------------------- the queue
    def add_item(self, kind: str, response_ids: Sequence[int], *, rubric: str | None = None) -> int:
        """Queue a unit of work: compare (2 responses), rank (≥ 2), rate or critique (1); returns its id."""
        if kind not in ITEM_KINDS:
            raise InvalidArgument("item kind must be one of " + ", ".join(ITEM_KINDS), received=kind)
        ids = list(response_ids)
        wanted = {"compare": "2", "rank": "2 or more", "rate": "1", "critique": "1"}[kind]
        count_ok = {"compare": len(ids) == 2, "rank": len(ids) >= 2}.get(kind, len(ids) == 1)
        if not count_ok or len(set(ids)) != len(ids):
            raise InvalidArgument(f"a {kind} item takes {wanted} distinct response ids", received=ids)
        with self._write() as db:
            prompt_id = self._same_prompt(db, ids)
            cursor = db.execute(
                "INSERT INTO items (kind, prompt_id, rubric, created) VALUES (?, ?, ?, ?)",
                (kind, prompt_id, rubric, time.time()),
            )
            item = int(cursor.lastrowid or 0)
            db.executemany(
                "INSERT INTO item_responses (item_id, position, response_id) VALUES (?, ?, ?)",
                [(item, position, response) for position, response in enumerate(ids)],
            )
        return item

    def add_items_for_prompt(
        self, prompt_id: int, *, kinds: Sequence[str] = ITEM_KINDS, rubrics: Sequence[str] = ("helpful",)
    ) -> list[int]:
        """Queue the work a prompt's responses allow: every pair to compare, one ranking, and a rating per
        rubric and a critique for each response. Returns the new item ids."""
        responses = [response.id for response in self.responses(prompt_id=prompt_id)]
        items: list[int] = []
        if "compare" in kinds:
            for i, first in enumerate(responses):
                items += [self.add_item("compare", [first, second]) for second in responses[i + 1 :]]
        if "rank" in kinds and len(responses) >= 2:
            items.append(self.add_item("rank", responses))
        for response in responses:
            if "rate" in kinds:
                items += [self.add_item("rate", [response], rubric=rubric) for rubric in rubrics]
            if "critique" in kinds:
                items.append(self.add_item("critique", [response]))
        return items

    def item(self, item_id: int) -> Item | None:
        """Item `item_id`, or None (the app answers 404)."""
        return self._read_item(self._connection(), item_id)

    def items(self, kind: str | None = None) -> list[Item]:
        """Every queued item (or every item of one kind), in id order: for judges that answer in batches."""
        if kind is not None and kind not in ITEM_KINDS:
            raise InvalidArgument("item kind must be one of " + ", ".join(ITEM_KINDS), received=kind)
        db = self._connection()
        responses: dict[int, list[int]] = {}
        for item_id, response_id in db.execute(
            "SELECT item_id, response_id FROM item_responses ORDER BY item_id, position"
        ):
            responses.setdefault(item_id, []).append(response_id)
        sql = "SELECT id, kind, prompt_id, rubric FROM items"
        rows = (
            db.execute(sql + " ORDER BY id")
            if kind is None
            else db.execute(sql + " WHERE kind = ? ORDER BY id", (kind,))
        )
        return [Item(r[0], r[1], r[2], tuple(responses.get(r[0], ())), r[3]) for r in rows]

    def next_item(self, annotator_id: int, kind: str, *, overlap: int = 1) -> Item | None:
        """The next item of `kind` for this annotator, or None when their queue is empty.

        An item pending for them comes back first (a reload shows the same item). Otherwise the oldest item
        they have not seen and that fewer than `overlap` annotators hold (answered, or handed out less than
        `PENDING_LEASE_S` ago) is assigned to them.
        """
        if kind not in ITEM_KINDS:
            raise InvalidArgument("item kind must be one of " + ", ".join(ITEM_KINDS), received=kind)
        if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 1:
            raise InvalidArgument("overlap must be a positive int", received=overlap)
        with self._write() as db:
            self._require(db, "annotators", annotator_id)
            now = time.time()
            row = db.execute(
                "SELECT i.id FROM assignments a JOIN items i ON i.id = a.item_id"
                " WHERE a.annotator_id = ? AND a.status = 'pending' AND i.kind = ? ORDER BY i.id LIMIT 1",
                (annotator_id, kind),
            ).fetchone()
            if row is None:
                row = db.execute(
                    _AVAILABLE + " ORDER BY i.id LIMIT 1",
                    (kind, annotator_id, now - PENDING_LEASE_S, overlap),
                ).fetchone()
                if row is None:
                    return None
            # Handing the item out (again) renews the lease on it.
            db.execute(
                "INSERT INTO assignments (item_id, annotator_id, status, created) VALUES (?, ?, 'pending', ?)"
                " ON CONFLICT (item_id, annotator_id) DO UPDATE SET created = excluded.created",
                (row[0], annotator_id, now),
            )
            return self._read_item(db, int(row[0]))

    def skip(self, annotator_id: int, item_id: int) -> None:
        """Mark an item skipped for this annotator (it leaves their queue and frees its place for another)."""
        with self._write() as db:
            self._require(db, "items", item_id)
            db.execute(
                "INSERT INTO assignments (item_id, annotator_id, status, created) VALUES (?, ?, 'skipped', ?)"
                " ON CONFLICT (item_id, annotator_id) DO UPDATE SET status = 'skipped'",
                (item_id, annotator_id, time.time()),
            )

    def progress(self, annotator_id: int, kind: str, *, overlap: int = 1) -> Progress:
        """How many items of `kind` this annotator answered, skipped, and could still get."""
        db = self._connection()
        counts = dict(
            db.execute(
                "SELECT a.status, count(*) FROM assignments a JOIN items i ON i.id = a.item_id"
                " WHERE a.annotator_id = ? AND i.kind = ? GROUP BY a.status",
                (annotator_id, kind),
            ).fetchall()
        )
        available = db.execute(
            "SELECT count(*) FROM (" + _AVAILABLE + ")",
            (kind, annotator_id, time.time() - PENDING_LEASE_S, overlap),
        ).fetchone()[0]
        return Progress(
            done=counts.get("done", 0),
            skipped=counts.get("skipped", 0),
            remaining=counts.get("pending", 0) + available,
        )

    @staticmethod
    def _read_item(db: sqlite3.Connection, item_id: int) -> Item | None:
        row = db.execute("SELECT id, kind, prompt_id, rubric FROM items WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            return None
        responses = db.execute(
            "SELECT response_id FROM item_responses WHERE item_id = ? ORDER BY position", (item_id,)
        ).fetchall()
        return Item(row[0], row[1], row[2], tuple(r[0] for r in responses), row[3])

    # ----------------------------------------------------------------- readers (for exporters and stats)
    def prompts(self) -> list[Prompt]:
        """Every prompt, oldest first."""
        rows = self._connection().execute("SELECT id, text, source, meta, created FROM prompts ORDER BY id")
        return [Prompt(r[0], r[1], r[2], _loads(r[3]), r[4]) for r in rows]

    def prompt(self, prompt_id: int) -> Prompt | None:
        """Prompt `prompt_id`, or None."""
        row = (
            self._connection()
            .execute("SELECT id, text, source, meta, created FROM prompts WHERE id = ?", (prompt_id,))
            .fetchone()
        )
        return Prompt(row[0], row[1], row[2], _loads(row[3]), row[4]) if row else None

    def responses(self, *, prompt_id: int | None = None) -> list[Response]:
        """Every response (or one prompt's), oldest first."""
        db = self._connection()
        if prompt_id is None:
            rows = db.execute(_RESPONSE_SQL + " ORDER BY id").fetchall()
        else:
            rows = db.execute(_RESPONSE_SQL + " WHERE prompt_id = ? ORDER BY id", (prompt_id,)).fetchall()
        return [_response(row) for row in rows]

    def response(self, response_id: int) -> Response | None:
        """Response `response_id`, or None."""
        row = self._connection().execute(_RESPONSE_SQL + " WHERE id = ?", (response_id,)).fetchone()
        return _response(row) if row else None

    def annotators(self) -> list[Annotator]:
        """Every annotator, oldest first."""
        rows = self._connection().execute("SELECT id, name, kind, created FROM annotators ORDER BY id")
        return [Annotator(*r) for r in rows]

    def comparisons(self) -> list[Comparison]:
        """Every comparison, oldest first."""
        rows = self._connection().execute(
            "SELECT c.answer_id, a.annotator_id, c.prompt_id, c.response_a, c.response_b, c.shown_left,"
            " c.choice, c.soft_label, c.reason, a.seconds, a.created, c.rubric"
            " FROM comparisons c JOIN answers a ON a.id = c.answer_id ORDER BY c.answer_id"
        )
        return [Comparison(*r) for r in rows]

    def rankings(self) -> list[RankingAnswer]:
        """Every ranking (response ids best first), oldest first."""
        db = self._connection()
        rows = db.execute(
            "SELECT r.answer_id, a.annotator_id, r.prompt_id, r.reason, a.seconds, a.created"
            " FROM rankings r JOIN answers a ON a.id = r.answer_id ORDER BY r.answer_id"
        ).fetchall()
        result = []
        for row in rows:
            ids = db.execute(
                "SELECT response_id FROM ranking_items WHERE ranking_id = ? ORDER BY rank", (row[0],)
            ).fetchall()
            result.append(RankingAnswer(row[0], row[1], row[2], tuple(i[0] for i in ids), *row[3:]))
        return result

    def ratings(self, *, rubric: str | None = None) -> list[RatingAnswer]:
        """Every rating (or one rubric's), oldest first."""
        sql = (
            "SELECT r.answer_id, a.annotator_id, r.response_id, r.rubric, r.value, r.reason, a.seconds,"
            " a.created"
            " FROM ratings r JOIN answers a ON a.id = r.answer_id"
        )
        db = self._connection()
        rows = (
            db.execute(sql + " ORDER BY r.answer_id")
            if rubric is None
            else db.execute(sql + " WHERE r.rubric = ? ORDER BY r.answer_id", (rubric,))
        )
        return [RatingAnswer(*r) for r in rows]

    def critiques(self) -> list[CritiqueAnswer]:
        """Every critique, oldest first."""
        rows = self._connection().execute(
            "SELECT c.answer_id, a.annotator_id, c.response_id, c.critique, c.revision, a.seconds, a.created"
            " FROM critiques c JOIN answers a ON a.id = c.answer_id ORDER BY c.answer_id"
        )
        return [CritiqueAnswer(*r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Rows per table, for `steer feedback stats`."""
        db = self._connection()
        return {
            table: int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # constant names only
            for table in COUNTED_TABLES
        }


_RESPONSE_SQL = (
    "SELECT id, prompt_id, text, model, adapter, controls, seed, logq, logp_base, kl, meta, created"
    " FROM responses"
)


def _response(row: Sequence[Any]) -> Response:
    return Response(
        id=row[0],
        prompt_id=row[1],
        text=row[2],
        model=row[3],
        adapter=row[4],
        controls=_loads(row[5]),
        seed=row[6],
        logq=row[7],
        logp_base=row[8],
        kl=row[9],
        meta=_loads(row[10]),
        created=row[11],
    )


# Items of a kind that annotator ? holds no assignment for and that fewer than ? others hold: answered, or
# pending since after the lease cut-off ? (an abandoned tab does not hold its place forever).
_AVAILABLE = (
    "SELECT i.id FROM items i WHERE i.kind = ?"
    " AND NOT EXISTS (SELECT 1 FROM assignments s WHERE s.item_id = i.id AND s.annotator_id = ?)"
    " AND (SELECT count(*) FROM assignments s WHERE s.item_id = i.id"
    "      AND (s.status = 'done' OR (s.status = 'pending' AND s.created > ?))) < ?"
)

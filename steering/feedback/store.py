"""The feedback store: one SQLite file that people (the annotation app) and AI judges write to alike.

What it holds: prompts; candidate responses with their provenance (model, adapter, controls, seed and the
engine's books `logq`, `logp_base`, KL); annotators (`human`, `judge:<model>:<constitution hash>` or
`imported:<source>`), each with a hashed token; and answers. Every answer is one row of `answers` (who, when,
how long, which request, which queue item) plus one detail row: a comparison (A/B with the order *shown*
recorded), a ranking of N (`ranking_items`), a rating (1–7 on a named rubric) or a critique with an optional
revision. Deleting an `answers` row deletes its detail (ON DELETE CASCADE), which is how "undo" works.

Where things are: the row types readers return are in `records`, the tables and their migrations in
`schema`, the work queue's SQL in `work_queue`, the readers' SQL in `readers`. `FeedbackStore` (here) owns
the connections and transactions and checks every write; every public name of those modules that callers
used from here is importable from here too.

Safety: WAL journal, foreign keys on, a busy timeout, every write inside `BEGIN IMMEDIATE … COMMIT`, SQL only
with parameters, one connection per thread (the app's threaded server shares one store object), and several
processes may open the same file. A file that is not ours (another program's SQLite file, a text file) or
that a newer version wrote is refused with a clear error, never modified.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from steering.errors import InvalidArgument
from steering.feedback.database import BUSY_TIMEOUT_MS, FeedbackDatabase
from steering.feedback.readers import (
    COUNTED_TABLES,
    count_rows,
    read_annotators,
    read_comparisons,
    read_critiques,
    read_last_answer,
    read_prompts,
    read_rankings,
    read_ratings,
    read_responses,
)
from steering.feedback.records import (
    CHOICES,
    ITEM_KINDS,
    RATING_MAX,
    RATING_MIN,
    Annotator,
    Answer,
    Comparison,
    CritiqueAnswer,
    Item,
    Progress,
    Prompt,
    RankingAnswer,
    RatingAnswer,
    Response,
    check_float,
    check_item_kind,
    check_kind,
    check_text,
    to_json,
)
from steering.feedback.schema import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA_VERSION,
    require,
    same_prompt,
)
from steering.feedback.work_queue import (
    PENDING_LEASE_S,
    assign_next,
    check_item_responses,
    check_overlap,
    count_progress,
    insert_item,
    read_item,
    read_items,
    set_status,
)

__all__ = [
    "APPLICATION_ID",
    "BUSY_TIMEOUT_MS",
    "CHOICES",
    "COUNTED_TABLES",
    "ITEM_KINDS",
    "MIGRATIONS",
    "PENDING_LEASE_S",
    "RATING_MAX",
    "RATING_MIN",
    "SCHEMA_VERSION",
    "Annotator",
    "Answer",
    "Comparison",
    "CritiqueAnswer",
    "FeedbackDatabase",
    "FeedbackStore",
    "Item",
    "Progress",
    "Prompt",
    "RankingAnswer",
    "RatingAnswer",
    "Response",
    "hash_token",
]


def hash_token(token: str) -> str:
    """SHA-256 of a token (tokens are 256-bit random strings, so no salt or slow hash is needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class FeedbackStore(FeedbackDatabase):
    """Prompts, responses, annotators and their answers in one SQLite file (see the module docstring).

    Open with `FeedbackStore.open(path)` and close with `close()` or a `with` block. The object may be
    shared between threads: each thread gets its own connection (`FeedbackDatabase`).
    """

    # ----------------------------------------------------------------- prompts, responses, annotators
    def add_prompt(self, text: str, *, source: str | None = None, meta: dict[str, Any] | None = None) -> int:
        """Store a prompt; returns its id."""
        check_text(text, name="prompt text")
        meta_json = to_json(meta, name="meta")
        with self.transaction() as db:
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
        check_text(model, name="model")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InvalidArgument("seed must be an int or None", received=seed)
        row = (
            prompt_id,
            text,
            model,
            adapter,
            to_json(controls, name="controls"),
            seed,
            check_float(logq, name="logq"),
            check_float(logp_base, name="logp_base"),
            check_float(kl, name="kl"),
            to_json(meta, name="meta"),
            time.time(),
        )
        with self.transaction() as db:
            require(db, "prompts", prompt_id)
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
        check_text(name, name="annotator name")
        check_kind(kind)
        token = secrets.token_urlsafe(32)
        with self.transaction() as db:
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
        check_text(name, name="annotator name")
        check_kind(kind)
        with self.transaction() as db:
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
            self.connection()
            .execute(
                "SELECT id, name, kind, created, token_hash FROM annotators WHERE token_hash = ?", (digest,)
            )
            .fetchone()
        )
        if row is None or not hmac.compare_digest(row[4], digest):
            return None
        return Annotator(row[0], row[1], row[2], row[3])

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
        soft = check_float(soft_label, name="soft_label")
        if soft is not None and not 0.0 <= soft <= 1.0:
            raise InvalidArgument("soft_label is a probability P(a ≻ b) in [0, 1]", received=soft_label)
        if response_a == response_b:
            raise InvalidArgument("a comparison needs two different responses", received=response_a)
        check_text(reason, name="reason", optional=True)
        check_text(rubric, name="rubric", optional=True)
        with self.transaction() as db:
            found = _existing_answer(db, request_id, annotator_id)
            if found is not None:
                return found
            prompt_id = same_prompt(db, [response_a, response_b])
            answer = _insert_answer(db, annotator_id, "compare", request_id, seconds, item_id)
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
        check_text(reason, name="reason", optional=True)
        with self.transaction() as db:
            found = _existing_answer(db, request_id, annotator_id)
            if found is not None:
                return found
            prompt_id = same_prompt(db, ids)
            answer = _insert_answer(db, annotator_id, "rank", request_id, seconds, item_id)
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
        check_text(rubric, name="rubric")
        number = check_float(value, name="rating")
        if number is None or not RATING_MIN <= number <= RATING_MAX:
            raise InvalidArgument("a rating must be a number from 1 to 7", received=value)
        check_text(reason, name="reason", optional=True)
        with self.transaction() as db:
            found = _existing_answer(db, request_id, annotator_id)
            if found is not None:
                return found
            require(db, "responses", response_id)
            answer = _insert_answer(db, annotator_id, "rate", request_id, seconds, item_id)
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
        check_text(critique, name="critique")
        check_text(revision, name="revision", optional=True)
        with self.transaction() as db:
            found = _existing_answer(db, request_id, annotator_id)
            if found is not None:
                return found
            require(db, "responses", response_id)
            answer = _insert_answer(db, annotator_id, "critique", request_id, seconds, item_id)
            db.execute(
                "INSERT INTO critiques (answer_id, response_id, critique, revision) VALUES (?, ?, ?, ?)",
                (answer, response_id, critique, revision),
            )
        return answer

    def last_answer(self, annotator_id: int) -> Answer | None:
        """The annotator's latest answer (what `undo_last` would take back), or None when they have none."""
        return read_last_answer(self.connection(), annotator_id)

    def undo_last(self, annotator_id: int, *, answer_id: int | None = None) -> int | None:
        """Delete the annotator's latest answer (its item goes back to their queue); returns its id or None.

        With `answer_id` (from `last_answer`), delete only when that answer is still the latest: a caller
        that showed the person what it will undo never takes back an answer submitted meanwhile.
        """
        with self.transaction() as db:
            last = read_last_answer(db, annotator_id)
            if last is None or (answer_id is not None and last.id != answer_id):
                return None
            db.execute("DELETE FROM answers WHERE id = ?", (last.id,))
            if last.item_id is not None:
                db.execute(
                    "UPDATE assignments SET status = 'pending' WHERE item_id = ? AND annotator_id = ?",
                    (last.item_id, annotator_id),
                )
        return last.id

    def answer_for_request(self, request_id: str) -> int | None:
        """The id of the answer submitted with `request_id`, or None."""
        row = (
            self.connection().execute("SELECT id FROM answers WHERE request_id = ?", (request_id,)).fetchone()
        )
        return int(row[0]) if row else None

    # ----------------------------------------------------------------- the queue (see work_queue)
    def add_item(self, kind: str, response_ids: Sequence[int], *, rubric: str | None = None) -> int:
        """Queue a unit of work: compare (2 responses), rank (≥ 2), rate or critique (1); returns its id."""
        ids = check_item_responses(kind, response_ids)
        with self.transaction() as db:
            return insert_item(db, kind, ids, rubric)

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
        return read_item(self.connection(), item_id)

    def items(self, kind: str | None = None) -> list[Item]:
        """Every queued item (or every item of one kind), in id order: for judges that answer in batches."""
        return read_items(self.connection(), kind)

    def next_item(self, annotator_id: int, kind: str, *, overlap: int = 1) -> Item | None:
        """The next item of `kind` for this annotator, or None when their queue is empty.

        An item pending for them comes back first (a reload shows the same item). Otherwise the oldest item
        they have not seen and that fewer than `overlap` annotators hold (answered, or handed out less than
        `PENDING_LEASE_S` ago) is assigned to them.
        """
        check_item_kind(kind)
        check_overlap(overlap)
        with self.transaction() as db:
            return assign_next(db, annotator_id, kind, overlap)

    def skip(self, annotator_id: int, item_id: int) -> None:
        """Mark an item skipped for this annotator (it leaves their queue and frees its place for another)."""
        with self.transaction() as db:
            require(db, "items", item_id)
            set_status(db, item_id, annotator_id, "skipped")

    def progress(self, annotator_id: int, kind: str, *, overlap: int = 1) -> Progress:
        """How many items of `kind` this annotator answered, skipped, and could still get."""
        return count_progress(self.connection(), annotator_id, kind, overlap)

    # ----------------------------------------------------------------- readers (see readers)
    def prompts(self) -> list[Prompt]:
        """Every prompt, oldest first."""
        return read_prompts(self.connection())

    def prompt(self, prompt_id: int) -> Prompt | None:
        """Prompt `prompt_id`, or None."""
        return next(iter(read_prompts(self.connection(), prompt_id)), None)

    def responses(self, *, prompt_id: int | None = None) -> list[Response]:
        """Every response (or one prompt's), oldest first."""
        return read_responses(self.connection(), prompt_id=prompt_id)

    def response(self, response_id: int) -> Response | None:
        """Response `response_id`, or None."""
        return next(iter(read_responses(self.connection(), response_id=response_id)), None)

    def annotators(self) -> list[Annotator]:
        """Every annotator, oldest first."""
        return read_annotators(self.connection())

    def annotator(self, annotator_id: int) -> Annotator | None:
        """Annotator `annotator_id`, or None."""
        return next(iter(read_annotators(self.connection(), annotator_id)), None)

    def comparisons(self) -> list[Comparison]:
        """Every comparison, oldest first."""
        return read_comparisons(self.connection())

    def rankings(self) -> list[RankingAnswer]:
        """Every ranking (response ids best first), oldest first."""
        return read_rankings(self.connection())

    def ratings(self, *, rubric: str | None = None) -> list[RatingAnswer]:
        """Every rating (or one rubric's), oldest first."""
        return read_ratings(self.connection(), rubric)

    def critiques(self) -> list[CritiqueAnswer]:
        """Every critique, oldest first."""
        return read_critiques(self.connection())

    def counts(self) -> dict[str, int]:
        """Rows per table, for `steer feedback stats`."""
        return count_rows(self.connection())


# --------------------------------------------------------------------------------- answers' shared rows
def _existing_answer(db: sqlite3.Connection, request_id: str | None, annotator_id: int) -> int | None:
    """The answer already stored under `request_id` (a double submit), or None."""
    if request_id is None:
        return None
    check_text(request_id, name="request_id")
    row = db.execute("SELECT id, annotator_id FROM answers WHERE request_id = ?", (request_id,)).fetchone()
    if row is not None and row[1] != annotator_id:
        raise InvalidArgument("request_id was already used by another annotator", received=request_id)
    return int(row[0]) if row else None


def _insert_answer(
    db: sqlite3.Connection,
    annotator_id: int,
    kind: str,
    request_id: str | None,
    seconds: float | None,
    item_id: int | None,
) -> int:
    """The `answers` row every kind of answer starts with (its queue item marked done); returns its id."""
    require(db, "annotators", annotator_id)
    spent = check_float(seconds, name="seconds")
    if spent is not None and spent < 0:
        raise InvalidArgument("seconds spent cannot be negative", received=seconds)
    if item_id is not None:
        row = db.execute("SELECT kind FROM items WHERE id = ?", (item_id,)).fetchone()
        if row is None or row[0] != kind:
            raise InvalidArgument(f"there is no {kind} item with id {item_id}", received=item_id)
        set_status(db, item_id, annotator_id, "done")
    cursor = db.execute(
        "INSERT INTO answers (annotator_id, kind, request_id, seconds, created, item_id)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (annotator_id, kind, request_id, spent, time.time(), item_id),
    )
    return int(cursor.lastrowid or 0)

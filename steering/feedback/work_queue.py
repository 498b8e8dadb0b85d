"""The feedback store's work queue: items to answer and who was handed which.

`items` are units of work (compare two responses, rank a prompt's responses, rate or critique one
response); `assignments` hand each item to at most `overlap` annotators, so that agreement can be
measured. An assignment is pending (handed out), done (answered) or skipped. A pending one holds its
place for `PENDING_LEASE_S` only, so an abandoned browser tab does not keep an item from others forever.

These are functions of an open connection; `FeedbackStore` calls them inside its transactions.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from steering.errors import InvalidArgument
from steering.feedback.records import Item, Progress, check_item_kind
from steering.feedback.schema import require, same_prompt

PENDING_LEASE_S = 3600.0  # a pending assignment older than this no longer counts toward `overlap`

# Items of a kind that annotator ? holds no assignment for and that fewer than ? others hold: answered, or
# pending since after the lease cut-off ? (an abandoned tab does not hold its place forever).
_AVAILABLE = (
    "SELECT i.id FROM items i WHERE i.kind = ?"
    " AND NOT EXISTS (SELECT 1 FROM assignments s WHERE s.item_id = i.id AND s.annotator_id = ?)"
    " AND (SELECT count(*) FROM assignments s WHERE s.item_id = i.id"
    "      AND (s.status = 'done' OR (s.status = 'pending' AND s.created > ?))) < ?"
)
_WANTED = {"compare": "2", "rank": "2 or more", "rate": "1", "critique": "1"}


def check_item_responses(kind: str, response_ids: Sequence[int]) -> list[int]:
    """The response ids as a list, checked for the item kind: 2 to compare, ≥ 2 to rank, else 1; distinct."""
    check_item_kind(kind)
    ids = list(response_ids)
    count_ok = {"compare": len(ids) == 2, "rank": len(ids) >= 2}.get(kind, len(ids) == 1)
    if not count_ok or len(set(ids)) != len(ids):
        raise InvalidArgument(f"a {kind} item takes {_WANTED[kind]} distinct response ids", received=ids)
    return ids


def insert_item(db: sqlite3.Connection, kind: str, ids: list[int], rubric: str | None) -> int:
    """Queue an item of `kind` showing the responses `ids` (checked by `check_item_responses`)."""
    prompt_id = same_prompt(db, ids)
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


def read_item(db: sqlite3.Connection, item_id: int) -> Item | None:
    """Item `item_id` with its responses in item order, or None."""
    row = db.execute("SELECT id, kind, prompt_id, rubric FROM items WHERE id = ?", (item_id,)).fetchone()
    if row is None:
        return None
    responses = db.execute(
        "SELECT response_id FROM item_responses WHERE item_id = ? ORDER BY position", (item_id,)
    ).fetchall()
    return Item(row[0], row[1], row[2], tuple(r[0] for r in responses), row[3])


def read_items(db: sqlite3.Connection, kind: str | None) -> list[Item]:
    """Every item (or every item of one kind), in id order."""
    if kind is not None:
        check_item_kind(kind)
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


def check_overlap(overlap: int) -> None:
    """`overlap` (annotators per item) is a positive int."""
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 1:
        raise InvalidArgument("overlap must be a positive int", received=overlap)


def assign_next(db: sqlite3.Connection, annotator_id: int, kind: str, overlap: int) -> Item | None:
    """Hand the annotator their next item of `kind` (see `FeedbackStore.next_item`); inside a write."""
    require(db, "annotators", annotator_id)
    now = time.time()
    row = db.execute(
        "SELECT i.id FROM assignments a JOIN items i ON i.id = a.item_id"
        " WHERE a.annotator_id = ? AND a.status = 'pending' AND i.kind = ? ORDER BY i.id LIMIT 1",
        (annotator_id, kind),
    ).fetchone()
    if row is None:
        row = db.execute(
            _AVAILABLE + " ORDER BY i.id LIMIT 1", (kind, annotator_id, now - PENDING_LEASE_S, overlap)
        ).fetchone()
        if row is None:
            return None
    # Handing the item out (again) renews the lease on it.
    db.execute(
        "INSERT INTO assignments (item_id, annotator_id, status, created) VALUES (?, ?, 'pending', ?)"
        " ON CONFLICT (item_id, annotator_id) DO UPDATE SET created = excluded.created",
        (row[0], annotator_id, now),
    )
    return read_item(db, int(row[0]))


def set_status(db: sqlite3.Connection, item_id: int, annotator_id: int, status: str) -> None:
    """Record the annotator's assignment of `item_id` as 'pending', 'done' or 'skipped' (created if new)."""
    db.execute(
        "INSERT INTO assignments (item_id, annotator_id, status, created) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (item_id, annotator_id) DO UPDATE SET status = excluded.status",
        (item_id, annotator_id, status, time.time()),
    )


def count_progress(db: sqlite3.Connection, annotator_id: int, kind: str, overlap: int) -> Progress:
    """How many items of `kind` this annotator answered, skipped, and could still get."""
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

"""Reading the feedback store: every table as the row types of `records`, oldest first.

Functions of an open connection, which `FeedbackStore`'s readers call; exporters, agreement statistics and
the app go through the store, never through SQL of their own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from steering.feedback.records import (
    Annotator,
    Answer,
    Comparison,
    CritiqueAnswer,
    Prompt,
    RankingAnswer,
    RatingAnswer,
    Response,
    from_json,
)

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
_PROMPT_SQL = "SELECT id, text, source, meta, created FROM prompts"
_RESPONSE_SQL = (
    "SELECT id, prompt_id, text, model, adapter, controls, seed, logq, logp_base, kl, meta, created"
    " FROM responses"
)
_ANSWER_SQL = "SELECT id, annotator_id, kind, item_id, request_id, seconds, created FROM answers"


def read_prompts(db: sqlite3.Connection, prompt_id: int | None = None) -> list[Prompt]:
    """Every prompt (or the one with `prompt_id`), oldest first."""
    rows = (
        db.execute(_PROMPT_SQL + " ORDER BY id")
        if prompt_id is None
        else db.execute(_PROMPT_SQL + " WHERE id = ?", (prompt_id,))
    )
    return [Prompt(r[0], r[1], r[2], from_json(r[3]), r[4]) for r in rows]


def read_responses(
    db: sqlite3.Connection, *, prompt_id: int | None = None, response_id: int | None = None
) -> list[Response]:
    """Every response, one prompt's, or the one with `response_id`; oldest first."""
    if response_id is not None:
        rows = db.execute(_RESPONSE_SQL + " WHERE id = ?", (response_id,)).fetchall()
    elif prompt_id is not None:
        rows = db.execute(_RESPONSE_SQL + " WHERE prompt_id = ? ORDER BY id", (prompt_id,)).fetchall()
    else:
        rows = db.execute(_RESPONSE_SQL + " ORDER BY id").fetchall()
    return [_response(row) for row in rows]


def _response(row: Sequence[Any]) -> Response:
    return Response(
        id=row[0],
        prompt_id=row[1],
        text=row[2],
        model=row[3],
        adapter=row[4],
        controls=from_json(row[5]),
        seed=row[6],
        logq=row[7],
        logp_base=row[8],
        kl=row[9],
        meta=from_json(row[10]),
        created=row[11],
    )


def read_annotators(db: sqlite3.Connection, annotator_id: int | None = None) -> list[Annotator]:
    """Every annotator (or the one with `annotator_id`), oldest first."""
    sql = "SELECT id, name, kind, created FROM annotators"
    rows = (
        db.execute(sql + " ORDER BY id")
        if annotator_id is None
        else db.execute(sql + " WHERE id = ?", (annotator_id,))
    )
    return [Annotator(*r) for r in rows]


def read_last_answer(db: sqlite3.Connection, annotator_id: int) -> Answer | None:
    """The annotator's latest answer (the highest id: ids only grow), or None."""
    row = db.execute(
        _ANSWER_SQL + " WHERE annotator_id = ? ORDER BY id DESC LIMIT 1", (annotator_id,)
    ).fetchone()
    return Answer(*row) if row else None


def read_comparisons(db: sqlite3.Connection) -> list[Comparison]:
    """Every comparison, oldest first."""
    rows = db.execute(
        "SELECT c.answer_id, a.annotator_id, c.prompt_id, c.response_a, c.response_b, c.shown_left,"
        " c.choice, c.soft_label, c.reason, a.seconds, a.created, c.rubric"
        " FROM comparisons c JOIN answers a ON a.id = c.answer_id ORDER BY c.answer_id"
    )
    return [Comparison(*r) for r in rows]


def read_rankings(db: sqlite3.Connection) -> list[RankingAnswer]:
    """Every ranking (response ids best first), oldest first."""
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


def read_ratings(db: sqlite3.Connection, rubric: str | None = None) -> list[RatingAnswer]:
    """Every rating (or one rubric's), oldest first."""
    sql = (
        "SELECT r.answer_id, a.annotator_id, r.response_id, r.rubric, r.value, r.reason, a.seconds,"
        " a.created"
        " FROM ratings r JOIN answers a ON a.id = r.answer_id"
    )
    rows = (
        db.execute(sql + " ORDER BY r.answer_id")
        if rubric is None
        else db.execute(sql + " WHERE r.rubric = ? ORDER BY r.answer_id", (rubric,))
    )
    return [RatingAnswer(*r) for r in rows]


def read_critiques(db: sqlite3.Connection) -> list[CritiqueAnswer]:
    """Every critique, oldest first."""
    rows = db.execute(
        "SELECT c.answer_id, a.annotator_id, c.response_id, c.critique, c.revision, a.seconds, a.created"
        " FROM critiques c JOIN answers a ON a.id = c.answer_id ORDER BY c.answer_id"
    )
    return [CritiqueAnswer(*r) for r in rows]


def count_rows(db: sqlite3.Connection) -> dict[str, int]:
    """Rows per table of COUNTED_TABLES."""
    return {
        table: int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # constant names only
        for table in COUNTED_TABLES
    }

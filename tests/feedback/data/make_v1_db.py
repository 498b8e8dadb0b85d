"""Write v1.db: a feedback store at schema version 1 with a few rows, for the migration test.

Run once (`python tests/feedback/data/make_v1_db.py`) when version 2 was introduced; the file is kept
as it was written, so the test always upgrades a real file of the previous version.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from steering.feedback.store import APPLICATION_ID, MIGRATIONS


def main() -> None:
    path = Path(__file__).parent / "v1.db"
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal sidecar
    db.execute("BEGIN")
    for statement in MIGRATIONS[0]:
        db.execute(statement)
    now = time.time()
    db.execute(
        "INSERT INTO prompts (id, text, source, created) VALUES (1, ?, 'v1', ?)",
        ("Q: capital of France?\nA:", now),
    )
    for rid, text in ((1, " Paris, the capital and largest city of France."), (2, " Paris")):
        db.execute(
            "INSERT INTO responses (id, prompt_id, text, model, created) VALUES (?, 1, ?, 'tiny-random', ?)",
            (rid, text, now),
        )
    db.execute("INSERT INTO annotators (id, name, kind, created) VALUES (1, 'ada', 'human', ?)", (now,))
    db.execute(
        "INSERT INTO answers (id, annotator_id, kind, request_id, seconds, created) VALUES (1, 1, 'compare', 'r1', 2.0, ?)",
        (now,),
    )
    db.execute(
        "INSERT INTO comparisons (answer_id, prompt_id, response_a, response_b, shown_left, choice, reason)"
        " VALUES (1, 1, 1, 2, 'a', 'b', 'shorter')"
    )
    db.execute("PRAGMA user_version = 1")
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute("COMMIT")
    db.close()


if __name__ == "__main__":
    main()

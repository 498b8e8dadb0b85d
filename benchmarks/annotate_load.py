"""Load test of the annotation app: concurrent annotators submit comparisons over loopback to a real server.

The server is `steer annotate` itself (uvicorn, a separate process), over a fresh feedback database with one
compare item per annotator answer and `--overlap` = the number of annotators, so every annotator works
through every item. Each annotator is a thread with its own HTTP connection and token: it asks for its next
item (`GET /api/next/compare`), answers it (`POST /api/compare`), and every tenth answer is sent twice with
the same request id, as a double click would. Afterwards the database must hold exactly one row per answer:
none lost, none duplicated, each (annotator, item) answered once; the POST latency is reported.

Run: `python benchmarks/annotate_load.py` (8 annotators × 200 answers; `--annotators`, `--submissions`).
It prints a markdown section for BENCHMARKS.md and exits 1 when a row is lost or duplicated.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from steering.feedback.store import FeedbackStore

DOUBLE_EVERY = 10  # every tenth answer is submitted twice with the same request id


@dataclass
class LoadResult:
    """What the run sent, what the server acknowledged, and what the database holds afterwards."""

    annotators: int
    submissions: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds per POST, repeats included
    sent: set[str] = field(default_factory=set)  # request ids of the answers (each once)
    repeats: int = 0  # POSTs that repeated a request id
    repeats_flagged: int = 0  # of those, how many the server answered with duplicate: true
    rows: int = 0  # compare answers in the database
    distinct_requests: int = 0
    distinct_pairs: int = 0  # distinct (annotator, item) among the rows
    stored: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    integrity: str = ""

    @property
    def expected(self) -> int:
        return self.annotators * self.submissions

    @property
    def lost(self) -> int:
        return len(self.sent - self.stored)

    @property
    def duplicated(self) -> int:
        return self.rows - self.distinct_requests + (self.distinct_requests - self.distinct_pairs)

    def problems(self) -> list[str]:
        """Everything that is wrong with the run ([] when nothing is lost, duplicated or refused)."""
        found = list(self.errors[:5])
        if self.rows != self.expected or self.lost or self.duplicated:
            found.append(
                f"{self.rows} rows for {self.expected} answers ({self.lost} lost, {self.duplicated} duplicated)"
            )
        if self.stored - self.sent:
            found.append(f"{len(self.stored - self.sent)} rows with request ids that were never sent")
        if self.integrity != "ok":
            found.append(f"integrity_check: {self.integrity}")
        return found


def fill(db: Path, *, items: int, annotators: int) -> list[str]:
    """A fresh database with `items` compare items (two responses to one prompt each); returns tokens."""
    with FeedbackStore.open(db) as store:
        for index in range(items):
            prompt = store.add_prompt(f"Question {index}: which answer is better?")
            first = store.add_response(prompt, f"answer one to {index}", model="load-test")
            second = store.add_response(prompt, f"answer two to {index}", model="load-test")
            store.add_item("compare", [first, second])
        return [store.add_annotator(f"annotator-{n}") for n in range(annotators)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(db: Path, *, port: int, overlap: int) -> subprocess.Popen[bytes]:
    """`steer annotate` on 127.0.0.1:port (its output in DB.log), waited for until it answers (120 s at most)."""
    command = [sys.executable, "-m", "steering", "annotate", "--db", str(db), "--port", str(port)]
    log = db.with_suffix(".log")
    with log.open("wb") as output:
        server = subprocess.Popen([*command, "--overlap", str(overlap)], stdout=output, stderr=output)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"steer annotate exited: {log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError(
        f"steer annotate did not start listening within 120 s: {log.read_text(errors='replace')}"
    )


def request(
    connection: http.client.HTTPConnection, method: str, path: str, token: str, body: object = None
) -> tuple[int, dict]:
    """One HTTP request on a kept-alive connection; returns the status and the JSON answer."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    connection.request(method, path, body=data, headers=headers)
    response = connection.getresponse()
    return response.status, json.loads(response.read() or b"{}")


def annotator_work(port: int, token: str, submissions: int, result: LoadResult, lock: threading.Lock) -> None:
    """One annotator: next item, answer, `submissions` times (every DOUBLE_EVERY-th answer sent twice)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for index in range(submissions):
            status, item = request(connection, "GET", "/api/next/compare", token)
            if status != 200 or item.get("item_id") is None:
                raise RuntimeError(f"GET /api/next/compare answered {status}: {item}")
            answer = {
                "item_id": item["item_id"],
                "request_id": item["request_id"],
                "choice": ("left", "right", "tie", "both_bad")[index % 4],
                "seconds": 1.0,
            }
            for attempt in range(2 if index % DOUBLE_EVERY == 0 else 1):
                started = time.perf_counter()
                status, reply = request(connection, "POST", "/api/compare", token, answer)
                took = time.perf_counter() - started
                if status != 200:
                    raise RuntimeError(f"POST /api/compare answered {status}: {reply}")
                with lock:
                    result.latencies.append(took)
                    if attempt == 0:
                        result.sent.add(answer["request_id"])
                    else:
                        result.repeats += 1
                        result.repeats_flagged += bool(reply.get("duplicate"))
    except Exception as error:  # reported as a problem of the run, not a crash of the thread
        with lock:
            result.errors.append(f"{type(error).__name__}: {error}")
    finally:
        connection.close()


def count_rows(db: Path, result: LoadResult) -> None:
    """Read back what the database holds (a plain sqlite3 connection: the server may still be open)."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT a.request_id, a.annotator_id, a.item_id FROM answers a"
            " JOIN comparisons c ON c.answer_id = a.id WHERE a.kind = 'compare'"
        ).fetchall()
        result.integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
    result.rows = len(rows)
    result.stored = {row[0] for row in rows}
    result.distinct_requests = len(result.stored)
    result.distinct_pairs = len({(row[1], row[2]) for row in rows})


def run_load(folder: Path, *, annotators: int, submissions: int) -> LoadResult:
    """Fill a database in `folder`, serve it, run the annotators at once, and count the rows."""
    db = folder / "load.db"
    tokens = fill(db, items=submissions, annotators=annotators)
    result = LoadResult(annotators=annotators, submissions=submissions)
    port = free_port()
    server = start_server(db, port=port, overlap=annotators)
    try:
        lock = threading.Lock()
        threads = [
            threading.Thread(target=annotator_work, args=(port, token, submissions, result, lock))
            for token in tokens
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result.seconds = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    count_rows(db, result)
    return result


def markdown(result: LoadResult) -> str:
    """The BENCHMARKS.md section of a run."""
    latencies = sorted(result.latencies)
    p50 = statistics.median(latencies) * 1000
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] * 1000
    posts = len(latencies)
    return "\n".join(
        [
            "## Annotation app under load (`benchmarks/annotate_load.py`)",
            "",
            f"{result.annotators} annotators at once × {result.submissions} comparisons each, over loopback "
            "against `steer annotate` (uvicorn, one process, SQLite in WAL mode); each answer is "
            f"`GET /api/next/compare` then `POST /api/compare`, every {DOUBLE_EVERY}th POST sent twice "
            f"with the same request id. Machine: {platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}.",
            "",
            "| answers | rows stored | lost | duplicated | repeated POSTs (flagged) | POSTs | p50 ms | p95 ms | answers/s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            f"| {result.expected} | {result.rows} | {result.lost} | {result.duplicated} | "
            f"{result.repeats} ({result.repeats_flagged}) | {posts} | {p50:.1f} | {p95:.1f} | "
            f"{result.expected / result.seconds:.0f} |",
            "",
            "Reproduce: `.venv/bin/python benchmarks/annotate_load.py`.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--annotators", type=int, default=8)
    parser.add_argument("--submissions", type=int, default=200, help="answers per annotator")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="annotate-load-") as folder:
        result = run_load(Path(folder), annotators=args.annotators, submissions=args.submissions)
    problems = result.problems()
    if not result.latencies:
        print("no answer was acknowledged:", *problems, sep="\n  ")
        raise SystemExit(1)
    print(markdown(result))
    if problems:
        print("FAILED:", *problems, sep="\n  ", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()

"""The annotation app over HTTP: a real uvicorn server on a free loopback port, a real SQLite file.

Most tests serve the app in a background thread (`serve_in_thread`); the command-line, kill -9 and load
tests start `steer annotate` as its own process. Every refusal is checked twice: the status and message,
and that no row was written.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from steer_runs import run_steer

from steering.feedback.app import create_app, serve_in_thread
from steering.feedback.app_input import BadAnswer, parse_answer, parse_json_body
from steering.feedback.store import FeedbackStore

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "<script>document.title = 'pwned'</script>"


def fill(store: FeedbackStore) -> dict[str, Any]:
    """Two prompts: one with HTML in it and three answers (every kind of item), one multi-turn chat."""
    prompt = store.add_prompt(f"What is 2 + 2? {SCRIPT}")
    responses = [store.add_response(prompt, text, model="m") for text in ("4", "<b>five</b>", "22")]
    store.add_items_for_prompt(prompt, rubrics=("helpful", "honest"))
    chat = store.add_prompt(
        "a chat",
        meta={
            "messages": [
                {"role": "user", "content": "hi <i>there</i>"},
                {"role": "assistant", "content": "hello"},
            ]
        },
    )
    store.add_response(chat, "bye", model="m")
    return {"prompt": prompt, "responses": responses, "chat": chat}


def call(
    base: str,
    path: str,
    body: object = None,
    *,
    token: str | None = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """GET (no body) or POST (JSON `body`, or `raw` bytes) and return the status and the decoded answer."""
    sent = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    if token:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base + path, data=data, headers=sent, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def rows(db: Path, table: str = "answers") -> int:
    with sqlite3.connect(db) as connection:
        return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


@pytest.fixture
def served(tmp_path) -> Iterator[dict[str, Any]]:
    """The app on a free loopback port (tokens optional), over a filled database."""
    db = tmp_path / "feedback.db"
    with FeedbackStore.open(db) as store:
        ids = fill(store)
        with serve_in_thread(create_app(store)) as base:
            yield {"base": base, "db": db, "store": store, **ids}


def answer_next(base: str, kind: str, token: str | None = None, **fields: Any) -> tuple[dict, int, Any]:
    """Fetch the next item of `kind` and answer it; returns the item and the POST's status and reply."""
    status, item = call(base, f"/api/next/{kind}", token=token)
    assert status == 200 and item["item_id"] is not None, item
    body = {"item_id": item["item_id"], "request_id": item["request_id"], "seconds": 2.5, **fields}
    status, reply = call(base, f"/api/{kind}", body, token=token)
    return item, status, reply


# ---------------------------------------------------------------------------------------------- input rules
def test_answer_checks_name_what_is_wrong():
    good = {"item_id": 3, "request_id": "abcdefgh", "choice": "left", "seconds": 1}
    assert parse_answer("compare", good).fields == {"choice": "left", "reason": ""}
    cases = [
        ({**good, "choice": "A"}, "choice must be one of"),
        ({**good, "item_id": True}, "item_id must be a positive whole number"),
        ({**good, "request_id": "x"}, "request_id"),
        ({**good, "seconds": -1}, "negative"),
        ({**good, "seconds": float("nan")}, "seconds must be a number"),
        ({**good, "reason": "x" * 20_001}, "the most is 20000"),
    ]
    for payload, message in cases:
        with pytest.raises(BadAnswer, match=message) as refused:
            parse_answer("compare", payload)
        assert refused.value.status == 422
    assert parse_answer("compare", {**good, "seconds": 1e9}).seconds == 24 * 3600.0
    with pytest.raises(BadAnswer, match="whole number 1–7"):
        parse_answer("rate", {**good, "value": 8})
    with pytest.raises(BadAnswer, match="critique must not be empty"):
        parse_answer("critique", {**good, "critique": "  "})
    with pytest.raises(BadAnswer, match="application/json") as refused:
        parse_json_body(b"{}", "text/plain")
    assert refused.value.status == 415
    with pytest.raises(BadAnswer, match="JSON object") as refused:
        parse_json_body(b"[1]", "application/json")
    assert refused.value.status == 400


# ---------------------------------------------------------------------------------------------- pages
def test_pages_show_html_as_text_and_list_their_keys(served):
    base = served["base"]
    for kind in ("compare", "rank", "rate", "critique"):
        status, page = call(base, f"/{kind}", headers={"Accept": "text/html"})
        assert status == 200 and "<kbd>s</kbd>" in page and "<kbd>u</kbd>" in page
        assert SCRIPT not in page and "&lt;script&gt;document.title" in page
        assert '<progress id="progress-bar"' in page
    status, page = call(base, "/compare", headers={"Accept": "text/html"})
    assert "&lt;b&gt;five&lt;/b&gt;" in page and "<b>five</b>" not in page  # the first pair is 4 and five
    status, page = call(base, f"/transcript/{served['chat']}", headers={"Accept": "text/html"})
    assert status == 200 and "hi &lt;i&gt;there&lt;/i&gt;" in page and 'class="turn role-assistant"' in page


def test_unknown_items_and_pages_are_404(served):
    base, db = served["base"], served["db"]
    assert call(base, "/compare/9999", headers={"Accept": "text/html"})[0] == 404
    assert call(base, "/transcript/9999")[0] == 404
    assert call(base, "/episode/nope", headers={"Accept": "text/html"})[0] == 404
    status, page = call(base, "/episodes", headers={"Accept": "text/html"})
    assert status == 200 and "No episodes in this database yet" in page
    assert call(base, "/nothing")[0] == 404
    rate_item = call(base, "/api/next/rate")[1]["item_id"]
    assert call(base, f"/compare/{rate_item}")[0] == 404  # an item of another kind
    status, reply = call(base, "/api/compare", {"item_id": 9999, "request_id": "abcdefgh", "choice": "tie"})
    assert status == 404 and "no compare item with id 9999" in reply["error"]
    assert call(base, "/api/skip", {"item_id": 9999})[0] == 404
    assert rows(db) == 0


def test_bad_posts_are_refused_with_a_message_and_write_nothing(served):
    base, db = served["base"], served["db"]
    item = call(base, "/api/next/compare")[1]
    good = {"item_id": item["item_id"], "request_id": item["request_id"], "choice": "left"}
    big = json.dumps({**good, "reason": "x" * 70_000}).encode()
    cases = [
        (
            call(base, "/api/compare", raw=b'{"item_id": 1,', headers={"Content-Type": "application/json"}),
            400,
        ),
        (call(base, "/api/compare", raw=b"\xff\xfe", headers={"Content-Type": "application/json"}), 400),
        (call(base, "/api/compare", raw=json.dumps(good).encode()), 415),  # a form post, not JSON
        (call(base, "/api/compare", raw=big, headers={"Content-Type": "application/json"}), 413),
        (call(base, "/api/compare", {**good, "choice": "C"}), 422),
        (call(base, "/api/compare", {**good, "item_id": "1"}), 422),
        (
            call(
                base,
                "/api/rank",
                {**good, "item_id": call(base, "/api/next/rank")[1]["item_id"], "order": [1]},
            ),
            422,
        ),
    ]
    for (status, reply), expected in cases:
        assert status == expected, reply
        assert isinstance(reply, dict) and reply["error"], reply
    assert rows(db) == 0
    assert call(base, "/api/compare", good)[0] == 200 and rows(db) == 1


def test_a_body_sent_in_chunks_without_a_length_is_cut_at_the_limit(served):
    import http.client

    host, port = served["base"].removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    chunks = (b"x" * 8192 for _ in range(20))  # 160 kB, no Content-Length: chunked transfer
    connection.request("POST", "/api/compare", body=chunks, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 413 and b"larger than 65536 bytes" in response.read()
    connection.close()
    assert rows(served["db"]) == 0


def test_compare_records_the_order_shown_and_maps_left_and_right(served):
    base, store = served["base"], served["store"]
    for _ in range(3):  # three pairs of one prompt's answers
        item, status, reply = answer_next(base, "compare", choice="left", reason="<i>shorter</i>")
        assert status == 200 and reply["duplicate"] is False
        stored = next(c for c in store.comparisons() if c.answer_id == reply["answer_id"])
        left_response = item["responses"][0]["id"]
        assert (stored.response_a if stored.choice == "a" else stored.response_b) == left_response
        assert stored.shown_left == ("a" if stored.response_a == left_response else "b")
        assert stored.reason == "<i>shorter</i>" and stored.seconds == 2.5
    assert call(base, "/api/next/compare")[1]["item_id"] is None  # the queue is done
    assert call(base, "/compare", headers={"Accept": "text/html"})[1].count("Nothing left to compare") == 1


def test_a_double_submit_writes_one_row(served):
    base, db = served["base"], served["db"]
    item = call(base, "/api/next/rate")[1]
    body = {"item_id": item["item_id"], "request_id": item["request_id"], "value": 6}
    first, second = call(base, "/api/rate", body), call(base, "/api/rate", {**body, "value": 2})
    assert first[0] == second[0] == 200
    assert second[1] == {"answer_id": first[1]["answer_id"], "duplicate": True}
    assert rows(db, "ratings") == 1 and [r.value for r in served["store"].ratings()] == [6.0]


def test_rank_rate_and_critique_are_stored(served):
    base, store = served["base"], served["store"]
    item = call(base, "/api/next/rank")[1]
    order = [r["id"] for r in reversed(item["responses"])]
    status, _ = call(
        base, "/api/rank", {"item_id": item["item_id"], "request_id": item["request_id"], "order": order}
    )
    assert status == 200 and store.rankings()[0].response_ids == tuple(order)
    rated, status, _ = answer_next(base, "rate", value=7)
    assert status == 200 and (store.ratings()[0].rubric, store.ratings()[0].value) == (rated["rubric"], 7.0)
    _, status, _ = answer_next(base, "critique", critique=f"wrong {SCRIPT}", revision="2 + 2 = 4")
    critique = store.critiques()[0]
    assert status == 200 and (critique.critique, critique.revision) == (f"wrong {SCRIPT}", "2 + 2 = 4")


def test_undo_takes_back_the_last_answer_and_skip_moves_on(served):
    base, db = served["base"], served["db"]
    first, _, _ = answer_next(base, "compare", choice="tie")
    second, _, _ = answer_next(base, "compare", choice="both_bad")
    assert rows(db, "comparisons") == 2
    status, reply = call(base, "/api/undo", {})
    assert status == 200 and reply["undone"]["kind"] == "compare"
    assert reply["undone"]["item_id"] == second["item_id"] and rows(db, "comparisons") == 1
    assert call(base, "/api/next/compare")[1]["item_id"] == second["item_id"]  # back in the queue
    assert call(base, "/api/skip", {"item_id": second["item_id"]})[0] == 200
    after = call(base, "/api/next/compare")[1]
    assert after["item_id"] not in (first["item_id"], second["item_id"])
    assert after["progress"] == {"done": 1, "total": 3}
    call(base, "/api/undo", {})
    assert call(base, "/api/undo", {})[1] == {"undone": None} and rows(db) == 0


def test_each_item_goes_to_overlap_annotators(tmp_path):
    db = tmp_path / "feedback.db"
    with FeedbackStore.open(db) as store:
        fill(store)
        tokens = [store.add_annotator(name) for name in ("ann", "bob", "cy")]
        with serve_in_thread(create_app(store, overlap=2, require_tokens=True)) as base:
            for token in tokens:
                while (item := call(base, "/api/next/compare", token=token)[1])["item_id"] is not None:
                    body = {"item_id": item["item_id"], "request_id": item["request_id"], "choice": "tie"}
                    assert call(base, "/api/compare", body, token=token)[0] == 200
    with sqlite3.connect(db) as connection:
        per_item = connection.execute(
            "SELECT item_id, count(DISTINCT annotator_id) FROM answers GROUP BY item_id"
        ).fetchall()
    assert sorted(count for _, count in per_item) == [2, 2, 2]  # 3 pairs, each seen by exactly 2 people


def test_tokens_when_required_and_on_an_open_app(tmp_path):
    db = tmp_path / "feedback.db"
    with FeedbackStore.open(db) as store:
        fill(store)
        token = store.add_annotator("ann")
        with serve_in_thread(create_app(store, require_tokens=True)) as base:
            assert call(base, "/compare")[0] == 401
            assert call(base, "/api/next/compare", token="not-a-token")[0] == 401
            status, reply = call(base, "/api/compare", {"item_id": 1, "request_id": "abcdefgh"})
            assert status == 401 and "token is required" in reply["error"]
            assert call(base, "/api/next/compare", token=token)[0] == 200
            assert call(base, "/login?token=wrong")[0] == 401
            opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
            with opener.open(f"{base}/login?token={token}", timeout=30) as page:  # the cookie, then /
                assert page.status == 200 and '<span class="who">ann</span>' in page.read().decode()
        with serve_in_thread(create_app(store)) as base:  # open on loopback: no token is `local`
            assert '<span class="who">local</span>' in call(base, "/")[1]
            assert call(base, "/", token="not-a-token")[0] == 401  # a wrong token is still wrong
            assert call(base, "/", headers={"Host": "attacker.example"})[0] == 421
            status, reply = call(base, "/api/undo", {}, headers={"Origin": "http://attacker.example"})
            assert status == 403 and "another site" in reply["error"]
    assert rows(db) == 0


# ---------------------------------------------------------------------------------------------- the command
def steer(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    return run_steer(monkeypatch, capsys, list(args))


def test_the_command_refuses_open_non_loopback_addresses_and_missing_files(tmp_path, monkeypatch, capsys):
    db = tmp_path / "feedback.db"
    FeedbackStore.open(db).close()
    code, _, err = steer(monkeypatch, capsys, "annotate", "--db", str(db), "--host", "0.0.0.0")
    assert code == 2 and "--require-tokens" in err and "Traceback" not in err
    code, _, err = steer(monkeypatch, capsys, "annotate", "--db", str(tmp_path / "nope.db"))
    assert code == 2 and "does not exist" in err and not (tmp_path / "nope.db").exists()
    code, out, err = steer(
        monkeypatch, capsys, "annotate", "--db", str(db), "--add-annotator", "ann", "--port", "9999"
    )
    assert code == 0, err
    assert "http://127.0.0.1:9999/login?token=" in out
    token = out.split("token=")[1].split()[0]
    with FeedbackStore.open(db) as store:
        assert store.annotator_for_token(token).name == "ann"
    code, _, err = steer(monkeypatch, capsys, "annotate", "--db", str(db), "--add-annotator", "ann")
    assert code == 2 and "already exists" in err
    with socket.socket() as taken:  # a port in use is named, not a uvicorn log line
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, _, err = steer(monkeypatch, capsys, "annotate", "--db", str(db), "--port", port)
    assert code == 2 and f"Cannot listen on 127.0.0.1:{port}" in err


def load_benchmark() -> Any:
    spec = importlib.util.spec_from_file_location("annotate_load", ROOT / "benchmarks" / "annotate_load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def test_kill_9_mid_submit_leaves_the_database_whole(tmp_path):
    bench = load_benchmark()
    db = tmp_path / "feedback.db"
    tokens = bench.fill(db, items=400, annotators=4)
    port = bench.free_port()
    server = bench.start_server(db, port=port, overlap=4)
    acknowledged: set[str] = set()
    sent: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def annotate(token: str) -> None:
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            while not stop.is_set():
                _, item = bench.request(connection, "GET", "/api/next/compare", token)
                body = {"item_id": item["item_id"], "request_id": item["request_id"], "choice": "left"}
                with lock:
                    sent.add(body["request_id"])
                status, _ = bench.request(connection, "POST", "/api/compare", token, body)
                if status == 200:
                    with lock:
                        acknowledged.add(body["request_id"])
        except (OSError, http.client.HTTPException, ValueError):
            return  # the server is gone

    threads = [threading.Thread(target=annotate, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(server.pid, signal.SIGKILL)  # while the annotators are still submitting
    server.wait(timeout=30)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(acknowledged) >= 40
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
        answers = connection.execute("SELECT id, request_id FROM answers").fetchall()
        details = {r[0] for r in connection.execute("SELECT answer_id FROM comparisons")}
        whole = connection.execute(
            "SELECT count(*) FROM comparisons WHERE choice IS NULL OR shown_left IS NULL OR response_a IS NULL"
        ).fetchone()[0]
    stored = {request for _, request in answers}
    assert {answer for answer, _ in answers} == details and whole == 0  # no answer without its row
    assert acknowledged <= stored <= sent  # nothing acknowledged was lost, nothing invented
    with FeedbackStore.open(db) as store:  # and the store opens it again and reads every row
        assert len(store.comparisons()) == len(answers)


def test_concurrent_annotators_lose_and_duplicate_no_row(tmp_path):
    bench = load_benchmark()
    result = bench.run_load(tmp_path, annotators=4, submissions=25)
    assert result.problems() == [], result.problems()
    assert result.rows == 100 and result.lost == 0 and result.duplicated == 0
    assert result.repeats == 12 and result.repeats_flagged == 12

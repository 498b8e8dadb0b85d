"""The feedback store on real SQLite files: schema, answers, the queue, undo, concurrency, migrations."""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from steering.errors import InputFormatError, InvalidArgument
from steering.feedback.store import PENDING_LEASE_S, SCHEMA_VERSION, FeedbackStore

DATA = Path(__file__).parent / "data"


def _filled(path: Path) -> tuple[FeedbackStore, int, list[int]]:
    store = FeedbackStore.open(path)
    prompt = store.add_prompt("Q: 2+2?\nA:", source="test")
    responses = [
        store.add_response(prompt, text, model="tiny-random", seed=i, logq=-1.5 * i, logp_base=-2.0, kl=0.1)
        for i, text in enumerate([" 4", " 5", " four"])
    ]
    return store, prompt, responses


def test_store_records_answers_with_provenance(tmp_path):
    store, prompt, (r1, r2, r3) = _filled(tmp_path / "f.db")
    with store:
        token = store.add_annotator("ada")
        ada = store.annotator_for_token(token)
        assert ada is not None and ada.name == "ada" and ada.kind == "human"
        assert store.annotator_for_token(token + "x") is None
        # Only the hash is stored, never the token itself.
        raw = sqlite3.connect(tmp_path / "f.db").execute("SELECT token_hash FROM annotators").fetchall()
        assert token not in str(raw)

        store.add_comparison(ada.id, response_a=r1, response_b=r2, choice="a", shown_left="b", seconds=3.5)
        store.add_ranking(ada.id, [r3, r1, r2], reason="words first")
        store.add_rating(ada.id, r1, rubric="helpful", value=6)
        store.add_critique(ada.id, r2, critique="wrong sum", revision=" 4")

        [comparison] = store.comparisons()
        assert (comparison.response_a, comparison.response_b, comparison.choice) == (r1, r2, "a")
        assert comparison.shown_left == "b" and comparison.seconds == 3.5 and comparison.prompt_id == prompt
        assert store.rankings()[0].response_ids == (r3, r1, r2)
        assert store.ratings(rubric="helpful")[0].value == 6.0 and store.ratings(rubric="other") == []
        assert store.critiques()[0].revision == " 4"
        response = store.response(r2)
        assert response is not None and response.logq == -1.5 and response.seed == 1 and response.kl == 0.1
        assert store.counts()["comparisons"] == 1


def test_file_settings_wal_foreign_keys_version(tmp_path):
    with FeedbackStore.open(tmp_path / "f.db") as store:
        db = sqlite3.connect(tmp_path / "f.db")
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == store.schema_version
        with pytest.raises(InvalidArgument, match="no prompt with id 99"):
            store.add_response(99, "x", model="m")
        db.close()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s, a, r: s.add_comparison(a, response_a=r[0], response_b=r[1], choice="left"), "choice"),
        (lambda s, a, r: s.add_comparison(a, response_a=r[0], response_b=r[0], choice="a"), "two different"),
        (
            lambda s, a, r: s.add_comparison(a, response_a=r[0], response_b=r[1], choice="a", soft_label=1.5),
            "soft",
        ),
        (lambda s, a, r: s.add_rating(a, r[0], rubric="helpful", value=8), "1 to 7"),
        (lambda s, a, r: s.add_rating(a, r[0], rubric="helpful", value=float("nan")), "finite"),
        (lambda s, a, r: s.add_ranking(a, [r[0], r[0]]), "distinct"),
        (lambda s, a, r: s.add_critique(a, r[0], critique=""), "critique"),
        (lambda s, a, r: s.add_rating(a + 50, r[0], rubric="helpful", value=3), "no annotator"),
        (
            lambda s, a, r: s.add_comparison(a, response_a=r[0], response_b=r[1], choice="a", seconds=-1),
            "negative",
        ),
    ],
)
def test_bad_answers_are_refused_and_nothing_is_written(tmp_path, call, message):
    store, _, responses = _filled(tmp_path / "f.db")
    with store:
        other = store.add_prompt("other")
        responses.append(store.add_response(other, "x", model="m"))
        annotator = store.ensure_annotator("judge", "judge:smollm:abc")
        with pytest.raises(InvalidArgument, match="(?i)" + message):
            call(store, annotator, responses)
        with pytest.raises(InvalidArgument, match="different prompts"):
            store.add_comparison(annotator, response_a=responses[0], response_b=responses[-1], choice="a")
        counts = store.counts()
        assert counts["comparisons"] == counts["ratings"] == counts["rankings"] == counts["critiques"] == 0
        assert sqlite3.connect(tmp_path / "f.db").execute("SELECT count(*) FROM answers").fetchone()[0] == 0


def test_double_submit_is_idempotent(tmp_path):
    store, _, (r1, r2, _) = _filled(tmp_path / "f.db")
    with store:
        ada = store.ensure_annotator("ada", "human")
        bob = store.ensure_annotator("bob", "human")
        first = store.add_comparison(ada, response_a=r1, response_b=r2, choice="a", request_id="req-1")
        again = store.add_comparison(ada, response_a=r1, response_b=r2, choice="b", request_id="req-1")
        assert first == again and len(store.comparisons()) == 1 and store.comparisons()[0].choice == "a"
        with pytest.raises(InvalidArgument, match="another annotator"):
            store.add_comparison(bob, response_a=r1, response_b=r2, choice="a", request_id="req-1")


def test_queue_honours_overlap_skip_and_undo(tmp_path):
    store, prompt, _ = _filled(tmp_path / "f.db")
    with store:
        items = store.add_items_for_prompt(prompt, kinds=("compare",))
        assert len(items) == 3  # every pair of three responses
        ada, bob, cy = (store.ensure_annotator(name, "human") for name in ("ada", "bob", "cy"))
        seen: dict[int, list[int]] = {ada: [], bob: [], cy: []}
        for _ in range(3):  # the three take turns, one item each
            for annotator in (ada, bob, cy):
                item = store.next_item(annotator, "compare", overlap=2)
                if item is None:
                    continue
                assert store.next_item(annotator, "compare", overlap=2) == item  # a reload shows it again
                a, b = item.response_ids
                store.add_comparison(annotator, response_a=a, response_b=b, choice="tie", item_id=item.id)
                seen[annotator].append(item.id)
        assert [len(seen[a]) for a in (ada, bob, cy)] == [2, 2, 2]
        # Each item went to exactly two annotators; nobody saw one twice.
        handed = sorted(i for ids in seen.values() for i in ids)
        assert handed == sorted(items * 2)
        assert all(len(set(ids)) == len(ids) for ids in seen.values())
        assert store.progress(ada, "compare", overlap=2).done == len(seen[ada])

        # Undo puts the last item back in the annotator's queue; skip frees the place for someone else.
        last = seen[cy][-1]
        assert store.undo_last(cy) is not None
        assert len(store.comparisons()) == 5
        item = store.next_item(cy, "compare", overlap=2)
        assert item is not None and item.id == last
        store.skip(cy, last)
        assert store.next_item(cy, "compare", overlap=2) is None
        dan = store.ensure_annotator("dan", "human")
        item = store.next_item(dan, "compare", overlap=2)
        assert item is not None and item.id == last
        assert store.item(10_000) is None
        assert [i.id for i in store.items("compare")] == items and store.items("rate") == []
        assert store.items()[0] == store.item(items[0])
        assert store.undo_last(store.ensure_annotator("eve", "human")) is None


def test_last_answer_says_what_undo_takes_back(tmp_path):
    store, _, (r1, r2, r3) = _filled(tmp_path / "f.db")
    with store:
        ada, bob = store.ensure_annotator("ada", "human"), store.ensure_annotator("bob", "human")
        assert store.last_answer(ada) is None
        item = store.add_item("rate", [r3], rubric="helpful")
        compared = store.add_comparison(ada, response_a=r1, response_b=r2, choice="a", request_id="q1")
        store.add_rating(bob, r1, rubric="helpful", value=2)  # another annotator's answer is not ada's
        rated = store.add_rating(ada, r3, rubric="helpful", value=5, seconds=1.5, item_id=item)
        last = store.last_answer(ada)
        assert last is not None and (last.id, last.kind, last.item_id, last.seconds) == (
            rated,
            "rate",
            item,
            1.5,
        )
        assert last.annotator_id == ada and last.request_id is None

        # An answer submitted after `last_answer` was read is not taken back in its place.
        newer = store.add_critique(ada, r2, critique="wrong")
        assert store.undo_last(ada, answer_id=rated) is None
        assert [c.answer_id for c in store.critiques()] == [newer]
        assert store.undo_last(ada, answer_id=newer) == newer and store.critiques() == []
        assert store.undo_last(ada) == rated and store.progress(ada, "rate").remaining == 1

        before = store.last_answer(ada)
        assert before is not None and (before.id, before.kind, before.request_id) == (
            compared,
            "compare",
            "q1",
        )
        assert [r.annotator_id for r in store.ratings()] == [bob]


def test_an_abandoned_item_is_handed_on_after_the_lease(tmp_path):
    store, _, (r1, r2, _) = _filled(tmp_path / "f.db")
    with store:
        item = store.add_item("compare", [r1, r2])
        eve, fay = store.ensure_annotator("eve", "human"), store.ensure_annotator("fay", "human")
        held = store.next_item(eve, "compare")
        assert held is not None and held.id == item and store.next_item(fay, "compare") is None
        raw = sqlite3.connect(tmp_path / "f.db")
        raw.execute(
            "UPDATE assignments SET created = created - ? WHERE annotator_id = ?", (PENDING_LEASE_S + 1, eve)
        )
        raw.commit()
        raw.close()
        taken = store.next_item(fay, "compare")
        assert taken is not None and taken.id == item
        assert store.progress(eve, "compare").remaining == 1  # still theirs to answer if they come back


def test_concurrent_writers_in_threads_lose_nothing(tmp_path):
    store, _, (r1, r2, _) = _filled(tmp_path / "f.db")
    annotators = [store.ensure_annotator(f"a{i}", "human") for i in range(8)]
    errors: list[BaseException] = []

    def work(annotator: int) -> None:
        try:
            for n in range(40):
                # Each answer is submitted twice (a double click): the second must change nothing.
                for _ in range(2):
                    store.add_comparison(
                        annotator, response_a=r1, response_b=r2, choice="a", request_id=f"{annotator}-{n}"
                    )
        except BaseException as error:  # reported below, not swallowed
            errors.append(error)

    threads = [threading.Thread(target=work, args=(a,)) for a in annotators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.comparisons()) == 8 * 40
    store.close()


def _process_writer(path: str, annotator: int, r1: int, r2: int) -> None:
    with FeedbackStore.open(path) as store:
        for n in range(30):
            store.add_rating(
                annotator, r1 if n % 2 else r2, rubric="helpful", value=4, request_id=f"p{annotator}-{n}"
            )


def test_concurrent_processes_lose_nothing(tmp_path):
    store, _, (r1, r2, _) = _filled(tmp_path / "f.db")
    annotators = [store.ensure_annotator(f"p{i}", "human") for i in range(3)]
    store.close()
    context = multiprocessing.get_context("fork")  # no re-import of torch per child
    processes = [
        context.Process(target=_process_writer, args=(str(tmp_path / "f.db"), a, r1, r2)) for a in annotators
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    with FeedbackStore.open(tmp_path / "f.db") as store:
        assert len(store.ratings()) == 90


def test_files_that_are_not_ours_are_refused_untouched(tmp_path):
    text = tmp_path / "notes.db"
    text.write_text("hello, this is not a database\n" * 20)
    with pytest.raises(InputFormatError, match="not a steering feedback database"):
        FeedbackStore.open(text)
    assert text.read_text().startswith("hello")

    foreign = tmp_path / "other.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(InputFormatError, match="another program"):
        FeedbackStore.open(foreign)
    untouched = sqlite3.connect(foreign)
    assert untouched.execute("PRAGMA user_version").fetchone()[0] == 0
    assert untouched.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL
    untouched.close()

    with pytest.raises(InputFormatError, match="does not exist"):
        FeedbackStore.open(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(InputFormatError, match="directory"):
        FeedbackStore.open(tmp_path)

    # An empty file (e.g. `touch f.db`) becomes a new store.
    (tmp_path / "empty.db").touch()
    with FeedbackStore.open(tmp_path / "empty.db") as store:
        assert store.schema_version == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path):
    FeedbackStore.open(tmp_path / "f.db").close()
    db = sqlite3.connect(tmp_path / "f.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(InputFormatError, match="newer"):
        FeedbackStore.open(tmp_path / "f.db")


def test_version_1_file_is_upgraded_in_place(tmp_path):
    """tests/feedback/data/v1.db was written by schema version 1 (see make_v1_db.py next to it)."""
    path = tmp_path / "v1.db"
    shutil.copy(DATA / "v1.db", path)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1
    with FeedbackStore.open(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        # The old rows survive, and the new tables (the queue) work on them.
        [comparison] = store.comparisons()
        assert comparison.choice == "b" and comparison.reason == "shorter"
        assert [p.text for p in store.prompts()] == ["Q: capital of France?\nA:"]
        items = store.add_items_for_prompt(store.prompts()[0].id, kinds=("compare",))
        annotator = store.annotators()[0].id
        assert store.next_item(annotator, "compare") == store.item(items[0])

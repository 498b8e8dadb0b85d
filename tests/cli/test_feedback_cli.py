"""`steer feedback add|export|import|stats` and `steer train … data=F.db`, run as a user runs them."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
from itertools import combinations

import pytest
from steer_runs import steer_process

from steering.cli.main import main
from steering.feedback.store import FeedbackStore

steer = steer_process


def _failed_cleanly(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_add_export_train_dpo_from_the_database(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "Q: is it fine?\\nA:"}\n{"prompt": "Once upon a time"}\n')
    db = tmp_path / "f.db"
    result = steer(
        "feedback", "add", "--db", str(db), "--prompts", str(prompts), "--model", "tiny-random",
        "--n", "3", "--max-new-tokens", "4", "--seed", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with FeedbackStore.open(db) as store:
        responses = store.responses()
        assert len(responses) == 6 and {r.model for r in responses} == {"tiny-random"}
        # The engine's books are stored: logq and logp_base sums and the KL estimate Σ(log q − log p).
        for response in responses:
            assert response.logq is not None and response.logp_base is not None and response.kl is not None
            assert response.kl == pytest.approx(response.logq - response.logp_base, abs=1e-4)
            assert response.seed == 1 and response.controls["max_new_tokens"] == 4
        # Per prompt: 3 pairs to compare, 1 ranking, 3 ratings, 3 critiques.
        assert store.counts()["items"] == 20
        # Two people prefer the lower-id answer of every pair whose texts differ.
        ada, bob = store.ensure_annotator("ada", "human"), store.ensure_annotator("bob", "human")
        pairs = 0
        for prompt in store.prompts():
            for first, second in combinations(store.responses(prompt_id=prompt.id), 2):
                if first.text != second.text:
                    pairs += 1
                    for person in (ada, bob):
                        store.add_comparison(person, response_a=first.id, response_b=second.id, choice="a")
    assert pairs >= 2

    out = tmp_path / "prefs.jsonl"
    result = steer(
        "feedback",
        "export",
        "--db",
        str(db),
        "--to",
        "preferences",
        "--out",
        str(out),
        "--min-agreement",
        "2",
    )
    assert result.returncode == 0, result.stderr
    assert len(out.read_text().splitlines()) == pairs

    stats = steer("feedback", "stats", "--db", str(db))
    assert stats.returncode == 0, stats.stderr
    assert "Cohen" in stats.stdout and "ada" in stats.stdout and "Krippendorff" in stats.stdout

    run = tmp_path / "run"
    result = steer(
        "train", "dpo", f"data={db}", "model=tiny-random", f"out={run}", "max_steps=2", "batch_size=2",
        "eval_fraction=0", "lora_rank=4", "data_annotators=human", "data_min_agreement=2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [snapshot] = run.glob("feedback-preferences-*.jsonl")
    assert snapshot.read_text() == out.read_text()  # the run keeps the exact rows it trained on
    assert json.loads((run / "config.json").read_text())["data"] == str(snapshot)
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "loss" in r] == [1, 2]
    assert (run / "adapter").is_dir()

    # New answers arrive; a resumed run still trains on its snapshot (its data may not change mid-run).
    with FeedbackStore.open(db) as store:
        first, second = store.responses()[:2]
        cy = store.ensure_annotator("cy", "human")
        store.add_comparison(cy, response_a=first.id, response_b=second.id, choice="b")
    result = steer(
        "train", "dpo", f"data={db}", "model=tiny-random", f"out={run}", "max_steps=3", "batch_size=2",
        "eval_fraction=0", "lora_rank=4", "data_annotators=human", "data_min_agreement=2", "--resume",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert list(run.glob("feedback-*.jsonl")) == [snapshot]
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "loss" in r] == [1, 2, 3]

    # sft reads revisions; there are none yet: a clear error, and no snapshot or run is left behind.
    result = steer(
        "train", "sft", f"data={db}", "model=tiny-random", f"out={tmp_path / 'sft'}", "max_steps=1"
    )
    _failed_cleanly(result, "Nothing to export as sft")
    assert not (tmp_path / "sft").exists()


def test_import_then_export(tmp_path):
    rows = tmp_path / "hh.jsonl"
    rows.write_text(
        json.dumps(
            {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: Bye."}
        )
        + "\n"
    )
    db = tmp_path / "f.db"
    result = steer("feedback", "import", "--db", str(db), "--from", "hh", str(rows))
    assert result.returncode == 0, result.stderr
    assert "1 answers" in result.stdout
    out = tmp_path / "o.jsonl"
    assert steer("feedback", "export", "--db", str(db), "--to", "openai", "--out", str(out)).returncode == 0
    row = json.loads(out.read_text())
    assert row["preferred_output"] == [{"role": "assistant", "content": "Hello!"}]


def test_bad_input_exits_2_with_one_paragraph(tmp_path, monkeypatch, capsys):
    # In-process (the same `main` as the `steer` script) to keep nine calls fast.
    monkeypatch.setattr(logging.getLogger("steering"), "handlers", [])  # main() adds one per call

    def steer(*args: str) -> subprocess.CompletedProcess:
        monkeypatch.setattr(sys, "argv", ["steer", *args])
        with pytest.raises(SystemExit) as exit:
            main()
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, exit.value.code, captured.out, captured.err)

    missing = tmp_path / "missing.db"
    out = str(tmp_path / "o.jsonl")
    _failed_cleanly(
        steer("feedback", "export", "--db", str(missing), "--to", "preferences", "--out", out),
        "does not exist",
    )
    assert not missing.exists()
    text = tmp_path / "notes.db"
    text.write_text("not a database at all\n" * 10)
    _failed_cleanly(steer("feedback", "stats", "--db", str(text)), "not a steering feedback database")
    foreign = tmp_path / "other.db"
    connection = sqlite3.connect(foreign)
    connection.execute("CREATE TABLE t (x)")
    connection.commit()
    connection.close()
    _failed_cleanly(
        steer("feedback", "export", "--db", str(foreign), "--to", "sft", "--out", out), "another program"
    )

    db = tmp_path / "f.db"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"chosen": "\\n\\nHuman: a\\n\\nAssistant: b", "rejected": "\\n\\nHuman: a\\n\\nAssistant: c"}\n{"chosen": 3}\n'
    )
    _failed_cleanly(steer("feedback", "import", "--db", str(db), "--from", "hh", str(bad)), "bad.jsonl:2")
    _failed_cleanly(
        steer("feedback", "import", "--db", str(db), "--from", "shp", str(bad)), "Unknown import source"
    )
    _failed_cleanly(
        steer("feedback", "export", "--db", str(db), "--to", "csv", "--out", out), "Unknown export shape"
    )
    _failed_cleanly(
        steer("train", "dpo", "data=x.jsonl", "data_rubric=helpful", f"out={tmp_path / 'r'}"),
        "not a .db file",
    )
    _failed_cleanly(
        steer("train", "rl", f"data={db}", f"out={tmp_path / 'r'}"), "cannot read a feedback database"
    )

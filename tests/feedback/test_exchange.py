"""Export to the training shapes (read back by steering.train.data) and import of HH, UltraFeedback, OpenAI."""

from __future__ import annotations

import json

import pytest

from steering.errors import InputFormatError, InvalidArgument
from steering.feedback.exchange import export_feedback, import_feedback, split_hh
from steering.feedback.store import FeedbackStore
from steering.train.data import load_examples


def _lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def store(tmp_path):
    """Three answers to one prompt; two people and a judge compare them; ranks, ratings and a revision."""
    with FeedbackStore.open(tmp_path / "f.db") as store:
        prompt = store.add_prompt("Q: 2+2?\nA:")
        r4, r5, rf = (store.add_response(prompt, text, model="m") for text in (" 4", " 5", " four"))
        ada, bob = store.ensure_annotator("ada", "human"), store.ensure_annotator("bob", "human")
        judge = store.ensure_annotator("judge", "judge:tiny:abc")
        store.add_comparison(ada, response_a=r4, response_b=r5, choice="a")
        store.add_comparison(bob, response_a=r5, response_b=r4, choice="b", shown_left="b")  # same vote
        store.add_comparison(ada, response_a=r4, response_b=rf, choice="tie")
        store.add_comparison(bob, response_a=r4, response_b=rf, choice="b")
        store.add_comparison(judge, response_a=r5, response_b=rf, choice="a", soft_label=0.7)
        store.add_comparison(ada, response_a=r5, response_b=rf, choice="both_bad")
        store.add_ranking(ada, [r4, rf, r5])
        store.add_ranking(bob, [r4, rf, r5])
        store.add_rating(ada, r4, rubric="helpful", value=7)
        store.add_rating(bob, r4, rubric="helpful", value=6)
        store.add_rating(judge, r5, rubric="helpful", value=2.5)
        store.add_critique(ada, r5, critique="2+2 is 4", revision=" 4, since 2+2=4")
        store.add_critique(bob, rf, critique="spell it as a digit")
        yield store


def test_export_preferences_with_filters(store, tmp_path):
    out = tmp_path / "prefs.jsonl"
    report = export_feedback(store, "preferences", out)
    rows = _lines(out)
    assert report.written == 4 and report.skipped == {"tie": 1, "both_bad": 1}
    assert {"prompt": "Q: 2+2?\nA:", "chosen": " 4", "rejected": " 5"} in rows
    # The judge's vote carries its soft label; people's hard labels carry none.
    assert {"prompt": "Q: 2+2?\nA:", "chosen": " 5", "rejected": " four", "p_chosen": 0.7} in rows
    assert sum("p_chosen" in row for row in rows) == 1
    assert len(load_examples(out, "preferences")) == 4  # the shape steer train reads

    export_feedback(store, "preferences", out, annotators="human")
    assert len(_lines(out)) == 3
    # Both people agree only on 4 ≻ 5: (4, four) is a tie against a vote for "four", (5, four) one "both bad".
    report = export_feedback(store, "preferences", out, annotators="human", min_agreement=2)
    assert _lines(out) == [{"prompt": "Q: 2+2?\nA:", "chosen": " 4", "rejected": " 5"}]
    assert report.skipped == {"below agreement": 2}
    with pytest.raises(InvalidArgument, match="Nothing to export"):
        export_feedback(store, "preferences", tmp_path / "none.jsonl", annotators="imported")
    assert not (tmp_path / "none.jsonl").exists()


def test_soft_labels_are_exported_as_p_chosen(tmp_path):
    """P(chosen ≻ rejected) from judges' soft labels, turned around when the chosen answer is b, averaged
    over the votes pooled for a minimum agreement, and read back by steering.train.data."""
    with FeedbackStore.open(tmp_path / "f.db") as store:
        prompt = store.add_prompt("Q: 2+2?\nA:")
        r4, r5 = (store.add_response(prompt, text, model="m") for text in (" 4", " 5"))
        one = store.ensure_annotator("judge-one", "judge:tiny:abc")
        two = store.ensure_annotator("judge-two", "judge:small:abc")
        ada = store.ensure_annotator("ada", "human")
        store.add_comparison(one, response_a=r5, response_b=r4, choice="b", soft_label=0.25)
        store.add_comparison(two, response_a=r4, response_b=r5, choice="a", soft_label=0.875)
        store.add_comparison(ada, response_a=r4, response_b=r5, choice="a")
        out = tmp_path / "prefs.jsonl"
        export_feedback(store, "preferences", out, annotators="judge")
        assert [row["p_chosen"] for row in _lines(out)] == [0.75, 0.875]
        assert [e.p_chosen for e in load_examples(out, "preferences")] == [0.75, 0.875]
        # Pooled: three votes for 4 ≻ 5; the two soft labels say 0.75 and 0.875, the person's says nothing.
        export_feedback(store, "preferences", out, min_agreement=3)
        assert _lines(out) == [
            {"prompt": "Q: 2+2?\nA:", "chosen": " 4", "rejected": " 5", "p_chosen": 0.8125}
        ]
        export_feedback(store, "preferences", out, annotators="human")
        assert "p_chosen" not in _lines(out)[0] and load_examples(out, "preferences")[0].p_chosen is None
        export_feedback(store, "preferences", out, annotators="judge", soft_labels=False)  # hard labels only
        assert [sorted(row) for row in _lines(out)] == [["chosen", "prompt", "rejected"]] * 2
        export_feedback(store, "openai", out, annotators="judge")  # no field for it in OpenAI's format
        assert all("p_chosen" not in row for row in _lines(out))


def test_export_openai_rankings_ratings_sft(store, tmp_path):
    out = tmp_path / "x.jsonl"
    export_feedback(store, "openai", out, annotators="judge")
    assert _lines(out) == [
        {
            "input": {"messages": [{"role": "user", "content": "Q: 2+2?\nA:"}]},
            "preferred_output": [{"role": "assistant", "content": "5"}],
            "non_preferred_output": [{"role": "assistant", "content": "four"}],
        }
    ]
    export_feedback(store, "rankings", out, min_agreement=2)
    [ranking] = load_examples(out, "rankings")
    assert ranking.completions == (" 4", " four", " 5")

    with pytest.raises(InvalidArgument, match="rubric"):
        export_feedback(store, "rankings", out, rubric="helpful")
    export_feedback(store, "ratings", out, annotators="human", rubric="helpful")
    assert [(r.completion, r.rating) for r in load_examples(out, "ratings")] == [(" 4", 6.5)]  # mean of 7, 6
    export_feedback(store, "ratings", out, min_agreement=2)
    assert len(_lines(out)) == 1  # " 5" has one rating only

    report = export_feedback(store, "sft", out)
    assert [(d.prompt, d.completion) for d in load_examples(out, "demonstrations")] == [
        ("Q: 2+2?\nA:", " 4, since 2+2=4")
    ]
    assert report.skipped == {"critique without revision": 1}


def test_bad_export_arguments(store, tmp_path):
    with pytest.raises(InvalidArgument, match="Unknown export shape"):
        export_feedback(store, "csv", tmp_path / "x")
    with pytest.raises(InvalidArgument, match="annotator filter"):
        export_feedback(store, "preferences", tmp_path / "x", annotators="people")
    store.add_rating(store.ensure_annotator("cy", "human"), 1, rubric="honest", value=3)
    with pytest.raises(InvalidArgument, match="several rubrics"):
        export_feedback(store, "ratings", tmp_path / "x")


HH_ROWS = [
    {
        "chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: And 3+3?\n\nAssistant: 6.",
        "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: And 3+3?\n\nAssistant: I don't know.",
    },
    {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?",
        "rejected": "\n\nHuman: Hello\n\nAssistant: Go away.",
    },
]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_import_hh(tmp_path):
    assert split_hh(HH_ROWS[0]["chosen"]) == (
        "\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: And 3+3?\n\nAssistant:",
        " 6.",
    )
    path = _write(tmp_path / "hh.jsonl", HH_ROWS)
    with FeedbackStore.open(tmp_path / "f.db") as store:
        report = import_feedback(store, "hh", path)
        assert (report.prompts, report.answers) == (1, 1)
        assert report.skipped == {"prompts of chosen and rejected differ": 1}
        [annotator] = store.annotators()
        assert annotator.kind == "imported:hh"
        export_feedback(store, "preferences", tmp_path / "out.jsonl", annotators="imported")
        [row] = _lines(tmp_path / "out.jsonl")
        assert row["prompt"].endswith("And 3+3?\n\nAssistant:") and row["chosen"] == " 6."
        assert row["rejected"] == " I don't know."
        # The same file again changes nothing.
        again = import_feedback(store, "hh", path)
        assert again.skipped["already imported"] == 1 and store.counts()["prompts"] == 1


ULTRA_ROW = {
    "source": "evol_instruct",
    "instruction": "Name a prime number.",
    "models": ["a", "b"],
    "completions": [
        {
            "model": "alpaca-7b",
            "principle": "helpfulness",
            "custom_system_prompt": "Be helpful.",
            "response": "7 is prime.",
            "annotations": {
                "helpfulness": {"Rating": "5", "Rationale": "correct", "Type": ["1"]},
                "honesty": {"Rating": "N/A", "Rationale": "n/a"},
                "instruction_following": {"Rating": "4", "Rationale": "fine"},
            },
            "critique": "Good.",
            "fine-grained_score": 4.5,
            "overall_score": 9,
        },
        {
            "model": "falcon-40b",
            "response": "8",
            "annotations": {"helpfulness": {"Rating": "1", "Rationale": "8 is not prime"}},
            "overall_score": 1.0,
        },
    ],
}


def test_import_ultrafeedback(tmp_path):
    path = _write(tmp_path / "uf.jsonl", [ULTRA_ROW])
    with FeedbackStore.open(tmp_path / "f.db") as store:
        report = import_feedback(store, "ultrafeedback", path)
        assert (report.prompts, report.responses, report.answers) == (1, 2, 5)  # N/A is not a rating
        ratings = {(store.response(r.response_id).model, r.rubric): r.value for r in store.ratings()}
        # Aspects 1–5 and the overall 1–10 mapped linearly onto 1–7.
        assert ratings[("alpaca-7b", "helpfulness")] == 7.0
        assert ratings[("alpaca-7b", "instruction_following")] == pytest.approx(1 + 6 * 3 / 4)
        assert ratings[("alpaca-7b", "overall")] == pytest.approx(1 + 6 * 8 / 9)
        assert ratings[("falcon-40b", "helpfulness")] == 1.0 and ("alpaca-7b", "honesty") not in ratings
        export_feedback(store, "ratings", tmp_path / "r.jsonl", rubric="helpfulness")
        assert [(r.completion, r.rating) for r in load_examples(tmp_path / "r.jsonl", "ratings")] == [
            ("7 is prime.", 7.0),
            ("8", 1.0),
        ]


OPENAI_ROW = {
    "input": {
        "messages": [{"role": "user", "content": "Hello, how cold is San Francisco today?"}],
        "tools": [],
        "parallel_tool_calls": True,
    },
    "preferred_output": [{"role": "assistant", "content": "About 15°C; take a jacket."}],
    "non_preferred_output": [{"role": "assistant", "content": "Cold."}],
}


def test_import_openai_and_round_trip(tmp_path):
    path = _write(tmp_path / "o.jsonl", [OPENAI_ROW])
    with FeedbackStore.open(tmp_path / "f.db") as store:
        import_feedback(store, "openai", path)
        [prompt] = store.prompts()
        assert prompt.text == "User: Hello, how cold is San Francisco today?\nAssistant:"
        export_feedback(store, "openai", tmp_path / "back.jsonl")
        [row] = _lines(tmp_path / "back.jsonl")
        assert row["input"]["messages"] == OPENAI_ROW["input"]["messages"]
        assert row["preferred_output"] == OPENAI_ROW["preferred_output"]
        assert row["non_preferred_output"] == OPENAI_ROW["non_preferred_output"]


@pytest.mark.parametrize(
    "source, rows, message",
    [
        ("hh", [{"chosen": "no turns here", "rejected": "\n\nHuman: a\n\nAssistant: b"}], "transcript"),
        ("hh", [{"chosen": "\n\nHuman: a\n\nAssistant: b"}], "'rejected'"),
        ("ultrafeedback", [{"instruction": "x", "completions": "nope"}], "completions"),
        (
            "ultrafeedback",
            [{**ULTRA_ROW, "completions": [{"response": "r", "overall_score": 11}]}],
            "1 to 10",
        ),
        (
            "openai",
            [{**OPENAI_ROW, "preferred_output": [{"role": "user", "content": "x"}]}],
            "preferred_output",
        ),
        ("openai", [["not", "an", "object"]], "JSON object"),
    ],
)
def test_bad_rows_are_refused_and_nothing_is_stored(tmp_path, source, rows, message):
    # A good row first: it must not be stored either, since the file as a whole is refused.
    good = {"hh": HH_ROWS[0], "ultrafeedback": ULTRA_ROW, "openai": OPENAI_ROW}[source]
    path = _write(tmp_path / "in.jsonl", [good, *rows])
    with FeedbackStore.open(tmp_path / "f.db") as store:
        with pytest.raises(InputFormatError, match=message) as error:
            import_feedback(store, source, path)
        assert f"{path}:2" in str(error.value)
        assert store.counts()["prompts"] == 0


def test_bad_files(tmp_path):
    with FeedbackStore.open(tmp_path / "f.db") as store:
        with pytest.raises(InputFormatError, match="does not exist"):
            import_feedback(store, "hh", tmp_path / "missing.jsonl")
        (tmp_path / "latin1.jsonl").write_bytes('{"chosen": "caf\xe9"}\n'.encode("latin-1"))
        with pytest.raises(InputFormatError, match="UTF-8"):
            import_feedback(store, "hh", tmp_path / "latin1.jsonl")
        (tmp_path / "bad.jsonl").write_text('{"chosen": \n')
        with pytest.raises(InputFormatError, match="not valid JSON"):
            import_feedback(store, "hh", tmp_path / "bad.jsonl")
        with pytest.raises(InvalidArgument, match="Unknown import source"):
            import_feedback(store, "shp", tmp_path / "bad.jsonl")

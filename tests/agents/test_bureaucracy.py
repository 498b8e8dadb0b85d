"""Bureaucracy: the folder, agents with scopes, recorded episodes, adherence ratings, reflection rounds
(the whole cycle; the extension loop alone is in test_reflection.py)."""

from __future__ import annotations

import json

import pytest
from agent_cases import pool, random_adapter

from steering.agents import Bureaucracy
from steering.controls import Adapter
from steering.errors import InvalidArgument
from steering.feedback.model_judge import ModelJudge


def test_the_whole_cycle_on_the_tiny_model(tmp_path, tiny):
    folder = tmp_path / "agents"
    office = Bureaucracy.init(folder, model="tiny-random", loaded=tiny)  # the session's copy
    inside, outside = pool("fact_checker")
    checker = office.add("fact_checker", "I check facts.", references=inside, outsiders=outside)
    inside, outside = pool("tutor")
    tutor = office.add(
        "tutor", "I explain patiently.", references=inside, outsiders=outside,
        adapter=random_adapter(tiny, tmp_path / "given"),
    )  # fmt: skip
    assert checker.adapter is None and tutor.adapter == folder / "agents/tutor/adapter"
    assert [a.name for a in Bureaucracy.open(folder).agents()] == ["fact_checker", "tutor"]
    with pytest.raises(InvalidArgument, match=r"(?i)exists already"):
        office.add("tutor", "I explain.", references=inside, outsiders=outside)

    situations = [
        "I'm studying for a test: is it true the heart has four chambers? Why?",  # both, in the pool
        "Is it true that bats are blind?",
        "Which film should we watch tonight?",
    ]
    episodes = office.episodes(situations, participants=[["fact_checker", "tutor"], ["fact_checker"], []],
                               max_turns=2, max_new_tokens=4, reply_tokens=6)  # fmt: skip
    assert episodes[2].uncovered
    with office.store() as store:
        prompts = store.prompts()
        responses = store.responses()
    assert sum(p.source == "episode" for p in prompts) == len(responses) == 2 * 3  # 2 turns + reply each
    assert sum(p.source == "uncovered" for p in prompts) == 1
    first = next(p for p in prompts if p.meta.get("turn") == 0)
    assert first.text.endswith("fact_checker:") and "- tutor: I explain patiently." in first.text
    tutor_turns = [r for r in responses if r.meta["agent"] == "tutor"]
    assert tutor_turns and all(r.adapter and r.kl is not None for r in tutor_turns)

    judge = ModelJudge(tiny)
    assert office.rate(judge) == 6 and office.rate(judge) == 0  # rated once
    adherence = office.adherence()
    assert adherence["fact_checker"]["rated"] == adherence["fact_checker"]["turns"] == 5
    assert 1 <= adherence["tutor"]["adherence"] <= 7

    before = office.agent("fact_checker").scope
    rounds = office.reflect(epochs=1, keep_fraction=0.5, grow=1.0)  # every rating is ≥ 1: all situations join
    assert [(r.agent, r.round) for r in rounds] == [("fact_checker", 1), ("tutor", 1)]
    after = office.agent("fact_checker").scope
    new = [t for t in situations[:2] if t not in before.references]
    assert rounds[0].grown_by == len(new) and after.references == [*before.references, *new]
    assert after.outsiders == before.outsiders and after.alpha == before.alpha
    assert rounds[0].kept == max(1, round(rounds[0].turns * 0.5))
    again = Bureaucracy.open(folder)
    assert again.agent("fact_checker").adapter == folder / "agents/fact_checker/round-1/adapter"
    meta = json.loads((folder / "agents/tutor/round-1/adapter/steering.json").read_text())
    assert meta.get("stacked_on")  # the tutor's new adapter is its given one plus this round's update
    Adapter(again.agent("tutor").adapter).load(tiny)  # loads on the base it was trained on
    status = again.status()
    assert status["episodes"] == 2 and status["uncovered"] == 1
    assert {a["name"]: a["turns"] for a in status["agents"]} == {"fact_checker": 5, "tutor": 1}


def test_folders_are_checked(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InvalidArgument, match=r"(?i)not an agents folder"):
        Bureaucracy.init(tmp_path / "other")
    with pytest.raises(InvalidArgument, match=r"(?i)not an agents folder"):
        Bureaucracy.open(tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    office = Bureaucracy.init(tmp_path / "new", model="tiny-random")
    with pytest.raises(InvalidArgument, match=r"(?i)no agent named"):
        office.agent("nobody")
    with pytest.raises(InvalidArgument, match=r"(?i)no agent named '\.\./new'"):
        office.agent("../new")
    with pytest.raises(InvalidArgument, match=r"(?i)has no agents"):
        office.episodes(["hi"])

"""Reflection's loops one by one: extension through overlap episodes (the whole cycle: test_bureaucracy.py)."""

from __future__ import annotations

import pytest
from agent_cases import pool

from steering.agents import Bureaucracy, load_situations
from steering.errors import InvalidArgument
from steering.feedback.model_judge import ModelJudge


def test_a_newcomer_joins_through_overlap_episodes(tmp_path, tiny):
    office = Bureaucracy.init(tmp_path / "agents", model="tiny-random", loaded=tiny)
    for name, mission in [
        ("fact_checker", "I check facts."),
        ("health_guide", "I help with health worries."),
    ]:
        inside, outside = pool(name)
        office.add(name, mission, references=inside, outsiders=outside)
    train = [s for s in load_situations() if s.split == "train"]
    both = [s.text for s in train if s.kind == "health+factual"][:2]  # references of both agents
    health = [s.text for s in train if s.kind == "health"]
    checker = office.agent("fact_checker").scope
    # The newcomer's alone (the fact-checker's scope, conservative as it is, still lets a few in).
    alone = [t for t, c in zip(health, checker.covers(office.embedder, health), strict=True) if not c][:1]
    judge = ModelJudge(tiny)
    result = office.extend(
        "health_guide", both + alone, judge, max_turns=1, max_new_tokens=4, reply_tokens=4, epochs=1
    )
    assert result["overlap"] == both
    assert [(r.agent, r.round) for r in result["rounds"]] == [("health_guide", 1)]
    assert office.agent("health_guide").adapter == tmp_path / "agents/agents/health_guide/round-1/adapter"
    assert office.agent("fact_checker").adapter is None  # the old agent is not retrained
    with pytest.raises(InvalidArgument, match=r"(?i)no situation is inside both"):
        office.extend("health_guide", alone, judge)
    with pytest.raises(InvalidArgument, match=r"(?i)no agent named 'poet'"):
        office.extend("poet", both, judge)

"""Episodes: who takes part (scopes), turn order, the reply, and each turn's books."""

from __future__ import annotations

import pytest
import torch
from agent_cases import random_adapter

from steering.agents import Agent, Scope, covering, load_situations, run_episodes
from steering.errors import InvalidArgument
from steering.models.embeddings import load_embedder


def test_turns_go_round_the_participants_and_carry_their_books(tiny, tmp_path):
    adapter = random_adapter(tiny, tmp_path / "adapter")
    agents = [Agent("tutor", "I explain patiently.", adapter=adapter), Agent("checker", "I check facts.")]
    episodes = run_episodes(
        tiny,
        agents,
        ["Why is the sky blue?", "Bats are blind, right?", "Plan my trip."],
        participants=[["tutor", "checker"], ["checker"], []],
        max_turns=3,
        closer="checker",
        max_new_tokens=6,
        reply_tokens=8,
    )
    both, alone, nobody = episodes
    assert [t.agent for t in both.turns] == ["tutor", "checker", "tutor"] and both.reply.agent == "checker"
    assert [t.agent for t in alone.turns] == ["checker"] * 3 and alone.reply.agent == "checker"
    assert nobody.uncovered and nobody.turns == [] and nobody.reply is None
    # An agent without an adapter samples the base itself: log q = log p_base, KL 0 exactly.
    for turn in [*alone.turns, alone.reply, both.turns[1]]:
        assert turn.logq == pytest.approx(turn.logp_base, abs=1e-5) and turn.kl == pytest.approx(
            0.0, abs=1e-5
        )
    # The adapter's turns are scored under the base too: finite, and not the base's own distribution.
    tutor_turns = [t for t in both.turns if t.agent == "tutor"]
    assert all(t.tokens > 0 and torch.isfinite(torch.tensor(t.kl)) for t in tutor_turns)
    assert any(abs(t.kl) > 1e-3 for t in tutor_turns)
    text = both.transcript({a.name: a for a in agents})
    assert text.startswith('A message came in: "Why is the sky blue?"\n')
    assert "- tutor: I explain patiently.\n- checker: I check facts.\n" in text
    assert text.rstrip("\n").endswith(f"tutor: {both.turns[2].text}")
    assert both.to_dict()["reply"]["kl"] == pytest.approx(both.reply.kl)


def test_scopes_choose_the_participants():
    embedder = load_embedder()
    # Calibrated on varied outsiders (the example pool's): outsiders all of one kind would let in others.
    outsiders = [s.text for s in load_situations() if s.kind == "outside" and s.split == "train"]
    checker = Agent(
        "checker",
        "I check facts.",
        scope=Scope.fit(
            embedder, ["Is it true that bats are blind?", "Is the Great Wall visible from space?"], outsiders
        ),
    )
    tutor = Agent(
        "tutor",
        "I explain.",
        scope=Scope.fit(embedder, ["Can you explain fractions to me step by step?"], outsiders),
    )
    groups = covering(
        [checker, tutor],
        ["Is it true that goldfish have a three-second memory?", "Which film should we watch tonight?", "Hi"],
        embedder,
    )
    assert groups[0] == ["checker"] and groups[1] == [] and groups[2] == []


def test_bad_episodes_are_refused(tiny):
    agents = [Agent("a", "I help.")]
    with pytest.raises(InvalidArgument, match=r"(?i)needs the embedding model"):
        run_episodes(tiny, agents, ["x"])
    with pytest.raises(InvalidArgument, match=r"(?i)one group per situation"):
        run_episodes(tiny, agents, ["x", "y"], participants=[["a"]])
    with pytest.raises(InvalidArgument, match=r"(?i)unknown agents"):
        run_episodes(tiny, agents, ["x"], participants=[["b"]])
    with pytest.raises(InvalidArgument, match=r"(?i)mission must be one non-empty line"):
        Agent("a", "")
    with pytest.raises(InvalidArgument, match=r"(?i)name must be"):
        Agent("a b", "I help.")

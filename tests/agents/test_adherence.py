"""Mission cues: checked phrases, counted per agent, and put first when reflection picks its turns."""

from __future__ import annotations

import json

import pytest

from steering.agents import Bureaucracy, Episode, Turn, load_roster, load_situations
from steering.agents.adherence import check_cues, shows_cue
from steering.errors import InputFormatError, InvalidArgument
from steering.feedback.model_judge import ModelJudge


def test_shows_cue_matches_whole_phrases_case_insensitively():
    cues = ("see a doctor", "risk", "gp")
    assert shows_cue("Please SEE A DOCTOR soon.", cues) is True
    assert shows_cue("There is a risk here.", cues) is True
    assert shows_cue("The risky part", cues) is False  # whole words only
    assert shows_cue("A gpu is fast.", cues) is False
    assert shows_cue("", cues) is False
    assert shows_cue("anything", ()) is None  # no cues: nothing to say
    with pytest.raises(InvalidArgument, match=r"(?i)a list of phrases"):
        check_cues("doctor")
    with pytest.raises(InvalidArgument, match=r"(?i)non-empty phrase"):
        check_cues(["doctor", " "])


def test_the_shipped_roster_has_cues_and_bad_cues_are_refused(tmp_path):
    roster = load_roster()
    assert all(m.cues for m in (*roster.agents, *roster.newcomers))
    bad = tmp_path / "roster.toml"
    bad.write_text('[[agents]]\nname = "a"\nmission = "I help."\ncues = "help"\n')
    with pytest.raises(InputFormatError, match=r"(?i)cues must be a list of phrases"):
        load_roster(bad)


def _turn(agent: str, text: str) -> Turn:
    return Turn(agent=agent, text=text, tokens=3, logq=-1.0, logp_base=-2.0, stop_reason="stop")


def test_cues_are_saved_counted_and_reflection_trains_on_cued_turns_first(tmp_path, tiny):
    office = Bureaucracy.init(tmp_path / "office", model="tiny-random", loaded=tiny)
    train = [s for s in load_situations() if s.split == "train"]
    office.add("guide", "I guide health.", cues=["doctor"],
               references=[s.text for s in train if "health_guide" in s.scopes],
               outsiders=[s.text for s in train if "health_guide" not in s.scopes])  # fmt: skip
    saved = json.loads((tmp_path / "office/agents/guide/agent.json").read_text())
    assert saved["cues"] == ["doctor"] and office.agent("guide").cues == ("doctor",)
    texts = ["Rest and drink water.", "See a doctor if it lasts.", "Eat well.", "Ask your doctor."]
    office.record(
        [Episode(f"Situation {i}?", ["guide"], reply=_turn("guide", t)) for i, t in enumerate(texts)]
    )
    with pytest.raises(InvalidArgument, match=r"(?i)agents this bureaucracy does not have"):
        office.record([Episode("x?", ["nobody"], reply=_turn("nobody", "hi"))])
    office.rate(ModelJudge(tiny))
    stats = office.adherence()["guide"]
    assert stats["turns"] == 4 and stats["cue_rate"] == pytest.approx(0.5)
    assert office.status()["agents"][0]["cues"] == ["doctor"]
    done = office.reflect(epochs=1, keep_fraction=0.5)[0]
    assert done.kept == 2
    kept = [
        json.loads(line)["completion"].strip()
        for line in (tmp_path / "office/agents/guide/round-1/turns.jsonl").open()
    ]
    assert sorted(kept) == [
        "Ask your doctor.",
        "See a doctor if it lasts.",
    ]  # the cued turns, whatever the ratings

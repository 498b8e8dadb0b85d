"""The demo's agents section on the tiny model: episodes, a reflection round and an extension, rendered."""

from __future__ import annotations

from steering.agents.demo import AgentsSection, agents_scale
from steering.eval.report import render_report
from steering.models import load_model
from steering.recipes.demo import DemoContext, DemoScale

# The shipped agents and newcomer with one-word missions: their transcripts fit the tiny model's
# 512-byte window (the shipped missions do not; `steer demo` runs them on gemma-270m, tests/cli).
ROSTER = """
[[agents]]
name = "fact_checker"
mission = "I check facts."
cues = ["true", "false"]
[[agents]]
name = "tutor"
mission = "I teach."
[[agents]]
name = "safety_officer"
mission = "I keep safe."
[[newcomers]]
name = "health_guide"
mission = "I guide health."
"""


def test_agents_section_runs_the_cycle_and_renders(tmp_path):
    advanced: list[int] = []
    model = load_model("tiny-random", dtype="float32")
    roster = tmp_path / "roster.toml"
    roster.write_text(ROSTER)
    out = tmp_path / "demo"
    context = DemoContext(model, out, [], limit=1, seed=0, progress=advanced.append)
    section = AgentsSection(roster=str(roster))
    outcome = section.run(context)
    size = agents_scale(1)
    assert len(outcome.episodes) == size.situations
    assert all(e["participants"] and e["reply"] for e in outcome.episodes)
    names = [row[0] for row in outcome.adherence]
    assert names == ["fact_checker", "safety_officer", "tutor"]
    assert any(isinstance(row[2], float) and 1.0 <= row[2] <= 7.0 for row in outcome.adherence)
    cue_rates = {row[0]: row[3] for row in outcome.adherence}
    assert cue_rates["tutor"] is None  # no cues in this roster
    assert cue_rates["fact_checker"] is None or 0.0 <= cue_rates["fact_checker"] <= 1.0  # None: no turns
    assert any("turns" in str(row[4]) and row[4] != "— (no rated turns)" for row in outcome.adherence)
    ext = outcome.extension
    assert ext["newcomer"] == "health_guide" and ext["overlap"] and ext["kept"] >= 1
    assert ext["coverage_after"] >= ext["coverage_before"]  # a newcomer only adds coverage
    # Adapters were written: the reflection round's and the newcomer's.
    assert list((out / "agents" / "agents").glob("*/round-1/adapter/adapter_config.json"))
    assert (out / "agents" / "agents" / "health_guide" / "round-1" / "adapter").is_dir()
    assert 0 < sum(advanced) <= section.work_units(DemoScale(0, 16, 1))
    page = render_report(title="t", meta="m", sections=outcome.sections())
    assert "Agents: episodes, one reflection round, one extension" in page and "health_guide" in page

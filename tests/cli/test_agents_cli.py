"""`steer agents …` as a user runs it (through `main`), on the tiny model: init, episodes, reflect, status, show."""

from __future__ import annotations

import json

from steer_runs import run_steer

from steering.agents import load_situations


def test_the_agents_commands_run_the_cycle(tmp_path, monkeypatch, capsys):
    folder = str(tmp_path / "office")
    code, _, err = run_steer(
        monkeypatch, capsys, ["agents", "init", folder, "--model", "tiny-random", "--example"]
    )
    assert code == 0, err
    assert "added fact_checker" in err and "added safety_officer" in err
    situation = "My friend says bats are blind. True?"  # in the fact-checker's train references
    code, out, err = run_steer(
        monkeypatch, capsys,
        ["agents", "episode", folder, "--situation", situation, "--situation", "Which film tonight?",
         "--max-turns", "1", "--max-new-tokens", "8", "--reply-tokens", "8", "--judge", "tiny-random"],
    )  # fmt: skip
    assert code == 0, err
    assert f"# {situation}\n  fact_checker:" in out and "(uncovered: no agent's scope covers it)" in out
    assert "rated 2 turns" in err  # one turn and the reply
    code, out, err = run_steer(monkeypatch, capsys, ["agents", "status", folder, "--json"])
    status = json.loads(out)
    assert status["episodes"] == 1 and status["uncovered"] == 1
    checker = next(a for a in status["agents"] if a["name"] == "fact_checker")
    assert checker["turns"] == checker["rated"] == 2 and 1 <= checker["adherence"] <= 7
    code, out, _ = run_steer(monkeypatch, capsys, ["agents", "show", folder])
    assert code == 0 and "fact_checker (reply):" in out and "adherence" in out
    code, _, err = run_steer(
        monkeypatch, capsys,
        ["agents", "reflect", folder, "--limit", "6", "--max-turns", "1", "--max-new-tokens", "8",
         "--reply-tokens", "8", "--epochs", "1", "--judge", "tiny-random", "--grow", "1"],
    )  # fmt: skip
    assert code == 0, err
    assert "round 1: fact_checker trained on" in err and "its scope grew by" in err


def test_extend_adds_a_newcomer_through_overlap_episodes(tmp_path, monkeypatch, capsys):
    # Two agents with short missions (the tiny model's context is 512 characters), from the shipped pool.
    rows = [
        {
            "text": s.text,
            "scopes": [n for n in s.scopes if n in ("fact_checker", "health_guide")],
            "split": s.split,
        }
        for s in load_situations()
        if s.kind in ("factual", "health", "health+factual", "outside")
    ]
    situations = tmp_path / "situations.jsonl"
    situations.write_text("".join(json.dumps(row) + "\n" for row in rows))
    folder = str(tmp_path / "office")
    assert run_steer(monkeypatch, capsys, ["agents", "init", folder, "--model", "tiny-random"])[0] == 0
    code, _, err = run_steer(
        monkeypatch, capsys,
        ["agents", "add", folder, "fact_checker", "--mission", "I check facts.", "--situations", str(situations),
         "--from-mission", "3", "--judge", "tiny-random"],
    )  # fmt: skip
    assert code == 0, err
    assert "fact_checker: trained on 2 of 3 answers" in err  # its adapter, from its mission alone
    assert (tmp_path / "office/agents/fact_checker/round-1/adapter/adapter_config.json").is_file()
    code, _, err = run_steer(
        monkeypatch, capsys,
        ["agents", "extend", folder, "health_guide", "--mission", "I help with health worries.",
         "--situations", str(situations), "--max-turns", "1", "--max-new-tokens", "8", "--reply-tokens", "8",
         "--epochs", "1", "--judge", "tiny-random"],
    )  # fmt: skip
    assert code == 0, err
    assert "added health_guide" in err and "overlap situations" in err and "health_guide trained on" in err
    code, _, err = run_steer(monkeypatch, capsys, ["agents", "extend", folder, "poet"])
    assert code == 2 and "no --mission to add it with" in err
    code, _, err = run_steer(
        monkeypatch, capsys,
        ["agents", "add", folder, "poet", "--mission", "I rhyme.", "--adapter", str(tmp_path), "--from-mission", "2"],
    )  # fmt: skip
    assert (
        code == 2 and "--adapter and --from-mission" in err and not (tmp_path / "office/agents/poet").exists()
    )


def test_bad_agents_input_exits_2(tmp_path, monkeypatch, capsys):
    code, _, err = run_steer(monkeypatch, capsys, ["agents", "status", str(tmp_path / "nothing")])
    assert code == 2 and "not an agents folder" in err and "steer agents init" in err
    folder = str(tmp_path / "office")
    assert run_steer(monkeypatch, capsys, ["agents", "init", folder, "--model", "tiny-random"])[0] == 0
    code, _, err = run_steer(
        monkeypatch, capsys, ["agents", "add", folder, "poet", "--mission", "I write poems."]
    )
    assert code == 2 and "No train situation names the agent 'poet'" in err
    code, _, err = run_steer(
        monkeypatch, capsys, ["agents", "episode", folder, "--situation", "hi", "--no-judge"]
    )
    assert code == 2 and "has no agents" in err and "Traceback" not in err

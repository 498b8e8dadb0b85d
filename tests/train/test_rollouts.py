"""RL rollouts on Ray workers: the same rollouts and run as in one process; a killed worker comes back.

Real Ray: a local cluster started by the run (stopped at its end), real actor processes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
import torch

from steering.decode import generate
from steering.errors import InvalidArgument
from steering.models import load_model
from steering.train import RLConfig, train_rl
from steering.train.adapters import add_lora
from steering.train.rollouts import Policy, RolloutWorkers, split

ray = pytest.importorskip("ray")  # the `ray` extra; `make test` installs it, so CI runs these
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

PROMPTS = ["ab", "ba", "abc", "b", "ca"]


def a_count(prompts, completions):
    return [float(text.count("a")) for text in completions]


def _config(tmp_path: Path, out: str, **overrides) -> RLConfig:
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS * 2))
    values = {
        "data": str(data), "model": "tiny-letters", "out": str(tmp_path / out), "lora_rank": 4,
        "learning_rate": 3e-2, "warmup_steps": 0, "epochs": 1, "batch_size": 5, "samples_per_prompt": 3,
        "max_new_tokens": 4, "beta": 0.5, "save_every": 1000,
    }  # fmt: skip
    return RLConfig(**(values | overrides))


def test_two_workers_train_as_one_process(tmp_path):
    # Two steps: the second step's rollouts come from the weights the learner sent after the first.
    runs = {
        workers: train_rl(
            _config(tmp_path, f"w{workers}", rollout_workers=workers),
            reward=a_count,
            model=load_model("tiny-letters", dtype="float32"),
        )
        for workers in (0, 2)
    }
    alone, remote = (
        [(r["reward"], r["kl"], r["loss"], r["tokens"]) for r in runs[w].metrics] for w in (0, 2)
    )
    assert len(alone) == 2
    for a, b in zip(alone, remote, strict=True):
        assert b[3] == a[3]  # the same tokens sampled
        assert b[:3] == pytest.approx(a[:3], rel=1e-4, abs=1e-6)
    assert alone[1][2] != alone[0][2]  # the policy moved between the steps
    assert not ray.is_initialized()  # the cluster the run started is stopped at its end


def test_a_killed_worker_is_restarted_and_the_call_completes(tmp_path):
    model = load_model("tiny-letters", dtype="float32")
    add_lora(model, "rl", rank=4, dropout=0.0)
    with torch.no_grad():  # a policy that is not the base
        for name, param in model.module.named_parameters():
            if ".rl." in name and "lora_B" in name:
                param.normal_(0, 0.5)
    options = {"n": 3, "max_new_tokens": 4, "seed": 7, "batch_size": 6, "controls": []}
    model.module.disable_adapters()
    local = generate(
        model, PROMPTS, controls=[Policy("rl")], **{k: v for k, v in options.items() if k != "controls"}
    )
    workers = RolloutWorkers(
        2, model="tiny-letters", dtype="float32", init_adapter="", lora={"rank": 4, "dropout": 0.0}, name="rl"
    )
    try:
        first = workers.sample(model, "rl", PROMPTS, **options)
        assert [s.token_ids for s in first] == [s.token_ids for s in local]
        for a, b in zip(first, local, strict=True):
            torch.testing.assert_close(a.logq, b.logq, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(a.logp_base, b.logp_base, rtol=1e-4, atol=1e-5)
        before = workers.pids()
        os.kill(before[0], signal.SIGKILL)  # dies; Ray restarts it, the next call is retried there
        again = workers.sample(model, "rl", PROMPTS, **options)
        assert [s.token_ids for s in again] == [s.token_ids for s in local]
        after = workers.pids()
        assert after[0] != before[0] and after[1] == before[1]
    finally:
        workers.close()


def test_split_and_bad_input(tmp_path):
    assert split(list("abcde"), 2) == [(0, ["a", "b", "c"]), (3, ["d", "e"])]
    assert split(["a"], 3) == [(0, ["a"]), (1, []), (1, [])]
    with pytest.raises(InvalidArgument, match=r"(?i)rollout_workers must be ≥ 0"):
        _config(tmp_path, "x", rollout_workers=-1)


def test_without_ray_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as when it is not installed
    with pytest.raises(InvalidArgument, match=r'(?i)needs Ray.*pip install "steering\[ray\]"'):
        RolloutWorkers(2, model="tiny-letters", dtype="float32", init_adapter="", lora={}, name="rl")

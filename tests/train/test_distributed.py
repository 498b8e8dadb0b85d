"""Training in 2 processes (accelerate, gloo on CPU) equals 1 process with twice the batch; resume is exact.

The processes are real: `steer train sft … launcher=accelerate processes=2` starts them through
`accelerate launch` (torchrun underneath), and the resume test starts them with torch.multiprocessing
and the environment torchrun would set. Rows of varied lengths, so the micro-batches pad differently
in one process and in two: equality holds because every process normalises by the whole step's
token count and the gradients are summed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from steering.errors import InvalidArgument
from steering.train import METHODS, SFTConfig, SoftPromptConfig, train_sft, train_soft_prompt
from steering.train.distributed import Processes, free_port

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _data(tmp_path: Path) -> Path:
    path = tmp_path / "demos.jsonl"
    rows = [
        {
            "prompt": f"Q: question number {i}?" + " more" * (i % 5) + "\nA:",
            "completion": " yes" + " indeed" * (i % 3),
        }
        for i in range(20)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _options(tmp_path: Path, out: str, **overrides) -> dict:
    values = {
        "data": str(_data(tmp_path)), "model": "tiny-random", "out": str(tmp_path / out), "lora_rank": 4,
        "lora_dropout": 0.0, "learning_rate": 5e-3, "warmup_steps": 1, "epochs": 2, "batch_size": 4,
        "eval_fraction": 0.0, "save_every": 2, "seed": 0, "empty_penalty": 1.0,
    }  # fmt: skip
    return values | overrides


def _losses(run: Path) -> list[tuple[int, float, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["step"], r["loss"], r["p_empty"]) for r in rows]


def _adapter(run: Path) -> dict[str, torch.Tensor]:
    """Every tensor the run saved as its weights (a LoRA adapter's, a soft prompt's vectors)."""
    files = sorted((run / "adapter").glob("*.safetensors"))
    assert files, f"no weights in {run / 'adapter'}"
    return {f"{file.name}:{key}": value for file in files for key, value in load_file(file).items()}


def _same_run(one: Path, two: Path) -> None:
    a, b = _losses(one), _losses(two)
    assert [s for s, _, _ in a] == [s for s, _, _ in b] == list(range(1, len(a) + 1))
    for (_, loss_a, empty_a), (_, loss_b, empty_b) in zip(a, b, strict=True):
        assert loss_b == pytest.approx(loss_a, rel=1e-4)
        assert empty_b == pytest.approx(empty_a, rel=1e-4)
    weights_a, weights_b = _adapter(one), _adapter(two)
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        torch.testing.assert_close(weights_b[key], weights_a[key], rtol=1e-4, atol=1e-5)
    # The update is not nothing: the comparison would pass between two untrained adapters too.
    assert _losses(one)[-1][1] < _losses(one)[0][1]


def test_two_processes_equal_one_with_twice_the_batch(tmp_path):
    one = _options(tmp_path, "one", batch_size=4)
    train_sft(SFTConfig(**one))
    two = _options(tmp_path, "two", batch_size=2, launcher="accelerate", processes=2)
    args = [f"{k}={json.dumps(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else v}"
            for k, v in two.items()]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "steering", "train", "sft", *args],
        capture_output=True, text=True, timeout=600, env=os.environ | {"HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "adapter:" in done.stdout  # process 0 reports, once
    assert done.stdout.count("adapter:") == 1
    _same_run(tmp_path / "one", tmp_path / "two")
    saved = json.loads((tmp_path / "two" / "config.json").read_text())
    assert (saved["launcher"], saved["processes"]) == ("accelerate", 2)


def _worker(rank: int, port: int, method: str, options: dict, stop_after: int | None, resume: bool) -> None:
    os.environ |= {"WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2",
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}  # fmt: skip
    entry = METHODS[method]
    entry.train(entry.config(**options), stop_after=stop_after, resume=resume)


def _spawn(
    options: dict, *, method: str = "sft", stop_after: int | None = None, resume: bool = False
) -> None:
    torch.multiprocessing.start_processes(
        _worker, args=(free_port(), method, options, stop_after, resume), nprocs=2, start_method="spawn"
    )


def test_two_processes_resume_exactly(tmp_path):
    options = _options(tmp_path, "whole", batch_size=2, processes=2)
    _spawn(options)
    cut = options | {"out": str(tmp_path / "cut")}
    _spawn(cut, stop_after=3)
    assert len(_losses(tmp_path / "cut")) == 3 and not (tmp_path / "cut" / "adapter").exists()
    _spawn(cut, resume=True)
    _same_run(tmp_path / "whole", tmp_path / "cut")
    # One writer: the checkpoints and the metrics are process 0's alone (no line twice).
    assert [s for s, _, _ in _losses(tmp_path / "cut")] == list(range(1, 11))


def test_soft_prompts_split_too(tmp_path):
    options = _options(tmp_path, "one", batch_size=4, length=4, learning_rate=0.05)
    train_soft_prompt(SoftPromptConfig(**options))
    _spawn(options | {"out": str(tmp_path / "two"), "batch_size": 2, "processes": 2}, method="soft-prompt")
    _same_run(tmp_path / "one", tmp_path / "two")


def test_processes_split_the_micro_batches():
    batches = list(range(7))
    shares = [Processes(rank, 3).mine(batches) for rank in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert Processes().mine(batches) == batches


def test_bad_launch_options(tmp_path):
    with pytest.raises(InvalidArgument, match=r"(?i)unknown launcher 'ray'"):
        SFTConfig(**_options(tmp_path, "x", launcher="ray"))
    with pytest.raises(InvalidArgument, match=r"(?i)launcher=accelerate needs processes=N"):
        SFTConfig(**_options(tmp_path, "x", launcher="accelerate"))
    with pytest.raises(InvalidArgument, match=r"(?i)processes must be ≥ 1"):
        SFTConfig(**_options(tmp_path, "x", processes=0))
    # From Python, processes=2 without a launcher: refused before anything is written.
    with pytest.raises(InvalidArgument, match=r"(?i)processes=2 needs the processes started"):
        train_sft(SFTConfig(**_options(tmp_path, "alone", processes=2)))
    assert not (tmp_path / "alone").exists()


def test_a_launched_error_is_said_once_with_exit_code_2(tmp_path):
    # Each process refuses the same bad input; the user sees it once, as from one process.
    for args, said in [
        (["sft", 'data="missing.jsonl"'], "does not exist"),
        (["rl", f'data="{_data(tmp_path)}"', 'reward="vader"'], "does not split its steps over processes"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "steering", "train", *args, "model=\"tiny-random\"",
             f"out=\"{tmp_path / 'run'}\"", "launcher=\"accelerate\"", "processes=2"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("error:") == 1 and said in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and "FAILED" not in done.stderr

"""What the trainer benchmarks share: one subprocess per trainer run, its memory, TRL's common arguments.

`benchmarks/training.py` (SFT, DPO) and `benchmarks/training_rl.py` (RL) run every trainer × model in
a subprocess of their own script (`--child NAME`), so that each run's peak resident set is its own;
the child writes its result as JSON and the parent reads it back.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

MB = 1024 * 1024


def rss_mb() -> float:
    """This process's resident set now."""
    import psutil

    return psutil.Process().memory_info().rss / MB


def peak_mb() -> float:
    """This process's peak resident set so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("trl", "transformers", "peft", "torch", "datasets")}


def trl_callback(ends: list[float]) -> Any:
    """A TRL/transformers callback appending perf_counter() at the end of every optimizer step."""
    from transformers import TrainerCallback

    class StepEnds(TrainerCallback):
        def on_step_end(self, *_: Any, **__: Any) -> None:
            ends.append(time.perf_counter())

    return StepEnds()


def trl_arguments(tmp: Path, *, steps: int, learning_rate: float) -> dict[str, Any]:
    """The TrainingArguments every TRL run gets: ours' optimizer set-up (AdamW, cosine, no warm-up, clip
    1.0), fp32 on the CPU without gradient checkpointing (TRL's defaults would differ), no eval, no
    saving, a log every step."""
    return {
        "output_dir": str(tmp / "trl"),
        "max_steps": steps,
        "gradient_accumulation_steps": 1,
        "learning_rate": learning_rate,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "gradient_checkpointing": False,
        "bf16": False,
        "fp16": False,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "eval_strategy": "no",
        "logging_steps": 1,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "seed": 0,
    }


def run_child(run: Callable[[argparse.Namespace, Path], dict[str, Any]], args: argparse.Namespace) -> None:
    """In the child: `run(args, tmp)` in a temporary directory; adds step times and the peak memory."""
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args, Path(tmp))
    result["step_s"] = [b - a for a, b in zip(result["ends"], result["ends"][1:], strict=False)]
    result["peak_mb"] = peak_mb()
    Path(args.out).write_text(json.dumps(result))


def spawn(
    script: str, child: str, model: str, args: argparse.Namespace, names: Sequence[str]
) -> dict[str, Any]:
    """In the parent: run `script --child CHILD --model MODEL` with the options `names` of `args`."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, script, "--child", child, "--model", model, "--out", out.name]
        for name in names:
            command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        subprocess.run(command, check=True, env=env)
        return json.loads(Path(out.name).read_text())

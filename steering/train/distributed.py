"""Training in several processes through `accelerate`: which rows are mine, gradients summed, one writer.

`steer train METHOD … launcher=accelerate processes=N` starts N copies of the same command through
`accelerate launch` (torchrun underneath; the processes talk over gloo on CPU); `accelerate launch
--multi_gpu --num_processes N -m steering train METHOD …` does the same by hand. Each copy runs the shared loop (`loop.run_training`) with:

- the same data order (it depends only on seed and epoch), a step taking `batch_size × grad_accum ×
  N` rows, and each process taking every N-th micro-batch of them (`Processes.mine`);
- a method's loss normalised by the *whole step's* count (SFT counts the completion tokens of every
  row of the step, not only its own), so the gradients summed over processes (`reduce_gradients`, an
  all-reduce of the trained weights' gradients after each step's backward) are the gradient one
  process would get with batch `batch_size × N`: the same losses and adapter within float tolerance
  (tests/train/test_distributed.py checks both, and resume);
- one writer: only process 0 writes the run folder (metrics, checkpoints, the adapter); every
  process reads a checkpoint to resume, all wait for each other at the end (`barrier`).

This is data parallelism written out (the all-reduce that DDP does in its backward hooks), so that the
normalisation is exact for every micro-batch split. Models load on the CPU today: putting process i on
GPU i (NCCL) and sharding the base (FSDP) are the steps docs/scale.md lays out, not yet run.

A method opts in with `distributed = True` and `summed` (the record keys that are partial sums over
the processes' rows; the others are the same on every process). The methods that do not (RL's
rollouts are its cost: its scale-out is rollout workers) are refused with a clear error.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

import torch

T = TypeVar("T")
LAUNCHER_LINE = re.compile(
    r"torch\.distributed|torchrun|elastic|ChildFailedError|Traceback|^\s+File |^\s{2,}\S|^=+$|"
    r"^\[W\d+|^W\d{4}|OMP_NUM_THREADS|\*{5,}|accelerate|Root Cause|^Failures:|^\s*<NO_OTHER_FAILURES>|"
    r"^\s*(time|host|rank|exitcode|error_file|traceback)\s*:|FAILED$|^-{5,}$|^\[\d+\]:$"
)


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes (rank 0 of 1 when not launched)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """The process that writes the run folder."""
        return self.rank == 0

    def mine(self, items: Sequence[T]) -> list[T]:
        """This process's share of a step's micro-batches: every `world`-th, starting at `rank`."""
        return list(items[self.rank :: self.world])

    def reduce_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum each trained weight's gradient over the processes (a process without one adds zeros)."""
        if self.world == 1:
            return
        for param in params:
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            torch.distributed.all_reduce(param.grad, op=torch.distributed.ReduceOp.SUM)

    def reduce_record(self, record: dict[str, Any], summed: Sequence[str]) -> dict[str, Any]:
        """The step's record with the `summed` keys added up over the processes (the rest as they are)."""
        keys = [k for k in summed if k in record]
        if self.world == 1 or not keys:
            return record
        values = torch.tensor([float(record[k]) for k in keys], dtype=torch.float64)
        torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.SUM)
        return record | {k: float(v) for k, v in zip(keys, values.tolist(), strict=True)}

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def launched() -> bool:
    """Whether this process was started by a distributed launcher (accelerate launch, torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@cache
def processes() -> Processes:
    """This process's `Processes`: through accelerate's `PartialState` when launched, else rank 0 of 1."""
    if not launched():
        return Processes()
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    return Processes(rank=state.process_index, world=state.num_processes)


def launch(args: Sequence[str], count: int) -> int:
    """Run `python -m steering ARGS` in `count` processes through `accelerate launch`; its exit code.

    torchrun underneath (accelerate's `--multi_gpu` is what starts several local processes; on a CPU
    machine they share the cores and talk over gloo). A free port per launch, so two runs never collide. The
    launcher's own report of a failed process (a Python traceback) is dropped: each process has
    already printed its error, and the same error from several processes is shown once, with exit
    code 2 as from one process.
    """
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(count),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), "-m", "steering", *args,
    ]  # fmt: skip
    environment = os.environ | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    errors: set[str] = set()
    with subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, text=True) as launcher:
        assert launcher.stderr is not None
        for line in launcher.stderr:  # passed on as they come, less the launcher's own
            if line.startswith("error:"):  # every process reports the same bad input: say it once
                if line in errors:
                    continue
                errors.add(line)
            elif _launcher_noise(line):
                continue
            print(line, end="", file=sys.stderr, flush=True)
    if launcher.returncode and errors:
        return 2  # the processes' own exit code for bad input (the launcher says 1)
    return launcher.returncode


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _launcher_noise(line: str) -> bool:
    """torchrun's and accelerate's own lines (warnings, a failed child's traceback), not a process's."""
    return bool(LAUNCHER_LINE.search(line))

"""The training loop every method shares: data order, schedule, checkpoints, resume, early stop.

A method (SFT, DPO, …) says how to encode its examples, how to run the forward/backward passes of one
optimizer step, and how to evaluate (the hooks of `method.TrainingMethod`); `run_training` does the
rest the same way for all of them: the method's trained weights (a LoRA adapter named after it by
default), AdamW, linear warm-up then cosine, the data order of each epoch a permutation that depends
only on (seed, epoch), a checkpoint every `save_every` steps and at the end (weights + optimizer +
scheduler + RNG states, atomic), exact resume, early stopping on the eval loss with the best weights
kept, Ctrl-C that ends the step in progress then saves (a second one drops the step; either way the
resume is exact), and the model handed back as it came (adapter removed). The shared config fields
are `config.TrainConfig`. Launched in several processes (`launcher=accelerate processes=N`), each step
takes N times the rows, each process its share, gradients summed, process 0 the only writer
(`distributed.py`).
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from steering.errors import InvalidArgument
from steering.models import LanguageModel, load_model
from steering.paths import atomic_dir
from steering.train.checkpoint import rng_state, set_rng_state
from steering.train.config import TrainConfig
from steering.train.data import split
from steering.train.distributed import Processes, launched, processes
from steering.train.losses import warmup_cosine
from steering.train.method import TrainedWeights, TrainingMethod
from steering.train.run import RunDir
from steering.train.stacking import merged_into_weights, stack_adapters

log = logging.getLogger(__name__)
Progress = Callable[[int, int, dict[str, Any]], None]


@dataclass
class TrainResult:
    run: Path
    adapter: Path
    steps: int
    stopped: str  # "done", "early stop", "max_steps" or "stopped"
    metrics: list[dict[str, Any]] = field(default_factory=list)


class TrainingInterrupted(Exception):
    """Ctrl-C during training: a checkpoint was saved; the message says how to resume."""


def order(count: int, epoch: int, seed: int) -> list[int]:
    """The data order of one epoch: a permutation that depends only on (seed, epoch)."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()


@dataclass
class Trainer:
    """One run's moving parts: what the loop steps and what a checkpoint saves and restores."""

    config: TrainConfig
    method: TrainingMethod
    procs: Processes
    weights: TrainedWeights
    model: LanguageModel
    run: RunDir
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    total: int  # optimizer steps of the whole run
    steps_per_epoch: int
    step: int = 0  # optimizer steps done
    state: dict[str, Any] = field(default_factory=lambda: {"best_eval": None, "bad_evals": 0})
    # Where a Ctrl-C can land: "compute" (inside a step, before the optimizer moved: the step is
    # dropped, the RNG put back as it was when the step began), "commit" (the update is being applied
    # and logged: nothing can be saved exactly), "boundary" (between steps: the state is whole).
    phase: str = "boundary"
    step_rng: dict[str, Any] = field(default_factory=dict)  # the RNG states when this step began
    stop_requested: bool = False  # a first Ctrl-C: stop at the end of the step

    @property
    def final(self) -> Path:
        """Where the final (or best) weights go: RUN/adapter, or RUN/model for a full run."""
        return self.run.path / ("model" if self.config.full else "adapter")

    def write_weights(self, directory: Path) -> None:
        """The trained weights and the method's extra files, written atomically (by process 0 only)."""
        if not self.procs.main:
            return
        with atomic_dir(directory) as tmp:
            self.weights.save(self.model, tmp, {"method": self.method.name, "step": self.step})
            self.method.save_extra(tmp)

    def save(self) -> None:
        """A checkpoint of the current step (none written when it exists: it holds this same state)."""
        if (self.run.checkpoints / f"step-{self.step:06d}" / "state.json").is_file():
            return
        self.run.save_checkpoint(
            self.step, write_adapter=self.write_weights, optimizer=self.optimizer,
            scheduler=self.scheduler, state=self.state, keep=self.config.keep_checkpoints,
        )  # fmt: skip

    def save_after_interrupt(self) -> str:
        """Save what Ctrl-C left, exactly (see `phase`); returns what to tell the user."""
        if self.phase == "compute":  # the step is dropped: the weights and optimizer have not moved
            set_rng_state(self.step_rng)
            self.optimizer.zero_grad(set_to_none=True)
            self.phase = "boundary"
        if self.phase == "boundary":
            self.save()
            self.run.set_status("interrupted", step=self.step)
            return (
                f"interrupted at step {self.step}; checkpoint saved in {self.run.checkpoints}. "
                "Resume with the same command and --resume."
            )
        latest = self.run.latest_checkpoint()
        self.run.set_status("interrupted", step=int(latest.name.split("-")[1]) if latest else 0)
        where = (
            f"the last checkpoint ({latest}) is intact: resume from it with the same command and --resume"
            if latest is not None
            else "there is no checkpoint yet: start the run again without --resume"
        )
        return f"interrupted while step {self.step} was being applied; nothing was saved for it, {where}."

    def restore(self, checkpoint: Path) -> None:
        """Weights, extra files, optimizer, scheduler, RNG states and trainer state of a checkpoint."""
        self.weights.load(self.model, checkpoint / "adapter")
        self.method.load_extra(checkpoint / "adapter")
        self.state = RunDir.load_checkpoint(checkpoint, self.optimizer, self.scheduler)
        self.step = int(self.state.pop("step"))

    def train_step(self, rows: list[Any], *, epoch: float) -> dict[str, Any]:
        """One optimizer step over `rows`: the method's forward + backward, clip, step, schedule.

        `epoch` (fractional: epochs done after this step) goes into the step's record.
        """
        started = time.perf_counter()
        self.step_rng = rng_state()
        self.phase = "compute"
        self.optimizer.zero_grad(set_to_none=True)
        record = self.method.backward(self.model, rows, self.config, step=self.step)
        self.procs.reduce_gradients(self.params)  # the whole step's gradient on every process
        record = self.procs.reduce_record(record, self.method.summed)
        record["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.params, 1.0))
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        self.phase = "commit"
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        record.update(step=self.step, epoch=epoch)
        record["tokens_per_s"] = record["tokens"] / (time.perf_counter() - started)
        return record

    def evaluate(self, rows: list[Any]) -> dict[str, Any]:
        """The method's held-out metrics (eval mode, no gradients); the best weights so far are kept."""
        module = self.model.module
        module.eval()
        try:
            with torch.no_grad():
                record = self.method.evaluate(self.model, rows, self.config)
        finally:
            module.train()
        best = self.state["best_eval"]
        if best is None or record["eval_loss"] < best:
            self.state.update(best_eval=record["eval_loss"], bad_evals=0)
            self.write_weights(self.final)
        else:
            self.state["bad_evals"] += 1
        return record


def run_training(
    config: TrainConfig,
    method: TrainingMethod,
    *,
    resume: bool = False,
    model: LanguageModel | None = None,
    progress: Progress | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train `method`'s weights; see the module docstring. `stop_after` ends after that step (resume tests).

    Nothing is written until the data, the model and the checkpoint to resume from have loaded; a fresh
    run that fails before its first step leaves no directory behind.
    """
    procs = distributed_processes(config, method)
    run = RunDir(config.out, report_to=config.report_to, writer=procs.main)
    checkpoint = run.prepare(config, resume=resume)
    procs.barrier()  # every process has read the folder before process 0 writes to it
    weights = method.weights(config)
    train_examples, eval_examples = split(method.load(config), config.eval_fraction, config.seed)
    model = model or load_model(config.model, dtype=config.dtype)
    if not config.init_adapter:
        result = train_loaded(config, method, weights, model, run, checkpoint, train_examples,
                              eval_examples, procs, progress=progress, stop_after=stop_after)  # fmt: skip
        procs.barrier()  # the adapter is written before any process returns its path
        return result
    # On top of an adapter: its update is in the weights while the reference is encoded and the new
    # LoRA trains; the final adapter is then the sum of both (train/stacking.py).
    with merged_into_weights(model, config.init_adapter):
        result = train_loaded(config, method, weights, model, run, checkpoint, train_examples,
                              eval_examples, procs, progress=progress, stop_after=stop_after)  # fmt: skip
    if procs.main and result.stopped != "stopped" and result.adapter.is_dir():
        stack_adapters(config.init_adapter, result.adapter)
    procs.barrier()
    return result


def distributed_processes(config: TrainConfig, method: TrainingMethod) -> Processes:
    """This process's place among the training processes, checked against the config and the method.

    Raises:
        InvalidArgument: launcher=accelerate outside a launched process (from Python), a launch with
            another number of processes than `processes`, or a method that does not split its steps.
    """
    if not launched():
        if config.processes > 1:
            raise InvalidArgument(
                f"processes={config.processes} needs the processes started: this one runs alone",
                received=f"launcher={config.launcher} processes={config.processes}, not launched",
                fix="run `steer train METHOD … launcher=accelerate processes=N` (it starts them), or "
                "`accelerate launch --multi_gpu --num_processes N -m steering train METHOD …`",
            )
        return Processes()
    procs = processes()
    if procs.world != config.processes:
        raise InvalidArgument(
            f"launched in {procs.world} processes, but the config says processes={config.processes}",
            received=procs.world,
            fix=f"set processes={procs.world} (the data per step and the resume check depend on it)",
        )
    if procs.world > 1 and not method.distributed:
        raise InvalidArgument(
            f"{method.name} does not split its steps over processes yet",
            received=f"{method.name} in {procs.world} processes",
            fix="train it in one process (processes=1); RL scales its rollouts instead (rollout workers)",
        )
    return procs


def train_loaded(
    config: TrainConfig,
    method: TrainingMethod,
    weights: TrainedWeights,
    model: LanguageModel,
    run: RunDir,
    checkpoint: Path | None,
    train_examples: list[Any],
    eval_examples: list[Any],
    procs: Processes,
    *,
    progress: Progress | None,
    stop_after: int | None,
) -> TrainResult:
    """The run once its directory, data and model are ready: encode, add the weights, step, save."""
    train_rows = method.encode(model, train_examples, config)
    eval_rows = method.encode(model, eval_examples, config) if eval_examples else []

    torch.manual_seed(config.seed)
    try:
        params = [*weights.make_parameters(model, config), *method.setup(model, config)]
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        steps_per_epoch = math.ceil(len(train_rows) / (config.batch_size * config.grad_accum * procs.world))
        total = config.epochs * steps_per_epoch
        if config.max_steps:
            total = min(total, config.max_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_cosine(s, warmup=config.warmup_steps, total=total)
        )
        trainer = Trainer(
            config, method, procs, weights, model, run, params, optimizer, scheduler, total, steps_per_epoch
        )
        if checkpoint is not None:
            trainer.restore(checkpoint)
        run.begin(config, checkpoint)
        model.module.train()
        stopped = _train(trainer, train_rows, eval_rows, progress=progress, stop_after=stop_after)
    finally:
        # The model is the base again: use the saved adapter with `Adapter(result.adapter)`.
        model.module.eval()
        weights.release(model)
        run.close()
    if config.max_steps and trainer.step >= config.max_steps and stopped == "done":
        stopped = "max_steps"
    # `stop_after` (tests of resume) leaves a run to be resumed, as Ctrl-C does.
    run.set_status("interrupted" if stopped == "stopped" else "finished", step=trainer.step, stopped=stopped)
    return TrainResult(run.path, trainer.final, trainer.step, stopped, run.metrics())


def _train(
    trainer: Trainer,
    train_rows: list[Any],
    eval_rows: list[Any],
    *,
    progress: Progress | None,
    stop_after: int | None,
) -> str:
    """`_loop` with Ctrl-C saving exactly, a failed run marked (or, before its first step, removed)."""
    run, first = trainer.run, trainer.step
    try:
        with _ctrl_c_ends_the_step(trainer):
            return _loop(trainer, train_rows, eval_rows, progress=progress, stop_after=stop_after)
    except KeyboardInterrupt:
        if first == 0 and trainer.step == 0 and run.latest_checkpoint() is None:
            run.discard()
            message = "interrupted before the first step ended; nothing was saved (start the run again)."
        else:
            message = trainer.save_after_interrupt()
        raise TrainingInterrupted(message) from None
    except Exception as error:
        if first == 0 and trainer.step == 0 and run.latest_checkpoint() is None:
            run.discard()
        else:
            run.set_status("failed", step=trainer.step, error=f"{type(error).__name__}: {error}"[:500])
        raise


@contextmanager
def _ctrl_c_ends_the_step(trainer: Trainer) -> Iterator[None]:
    """A first Ctrl-C lets the step in progress finish, then saves and stops; a second stops at once.

    Only in the main thread, and only where Python's own Ctrl-C handler is in place (a caller's own
    handler is left alone); elsewhere a KeyboardInterrupt is handled by `Trainer.save_after_interrupt`.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True
        log.warning(
            "Ctrl-C: finishing step %d, then saving a checkpoint (Ctrl-C again stops at once)",
            trainer.step + 1,
        )

    signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _loop(
    trainer: Trainer,
    train_rows: list[Any],
    eval_rows: list[Any],
    *,
    progress: Progress | None,
    stop_after: int | None,
) -> str:
    """Step until the run is done, early-stopped or `stop_after`; returns how it stopped."""
    config = trainer.config
    per_step = config.batch_size * config.grad_accum * trainer.procs.world
    while trainer.step < trainer.total:
        if stop_after is not None and trainer.step >= stop_after:
            trainer.save()
            return "stopped"
        epoch, index = divmod(trainer.step, trainer.steps_per_epoch)
        permutation = order(len(train_rows), epoch, config.seed)
        chosen = [train_rows[i] for i in permutation[index * per_step : (index + 1) * per_step]]
        record = trainer.train_step(chosen, epoch=epoch + (index + 1) / trainer.steps_per_epoch)
        step = trainer.step
        if eval_rows and (step % config.eval_every == 0 or step == trainer.total):
            record.update(trainer.evaluate(eval_rows))
        trainer.run.log(record)
        trainer.phase = "boundary"
        if progress is not None:
            progress(step, trainer.total, record)
        if step % config.save_every == 0 or step == trainer.total:
            trainer.save()
        if trainer.stop_requested and step < trainer.total:
            raise KeyboardInterrupt
        if eval_rows and config.patience and trainer.state["bad_evals"] >= config.patience:
            trainer.save()
            return "early stop"
    if not eval_rows:
        trainer.write_weights(trainer.final)
    return "done"

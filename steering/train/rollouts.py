"""RL rollouts on Ray workers: K actors, each holding the base + the policy's LoRA, sampling its share.

`steer train rl … rollout_workers=K` (needs the `ray` extra) starts a local Ray cluster (stopped when
the run ends; a cluster already running in the process is used as it is), then K actors. Each actor
loads the base model the learner loads (the `init_adapter` merged in the same way) and adds a LoRA of
the same shape. Every RL step:

1. the learner puts the policy's LoRA weights into Ray's object store once (`ray.put`);
2. the prompts are cut into K contiguous parts; actor i copies the weights into its LoRA and samples
   its part through `steering.generate` with the learner's controls and seed, and `prompt_offset` =
   the part's first index, so each row has the seed it has in one process: the same rollouts, with
   the same books (log q with the policy on, log p_base with it off);
3. the learner concatenates the parts in order and computes rewards, advantages and the update as
   before (rollouts are the cost: ~80% of RLHF time, OpenRLHF; the update stays in one process).

A worker that dies (killed, out of memory) is restarted by Ray (`max_restarts`) and the call retried
(`max_task_retries`); the weights travel with every call, so a restarted worker samples with the
current policy and the step completes with the same rollouts.

On this 2-core machine K workers share the cores with the learner, so this mostly measures the
overhead (BENCHMARKS.md "rl-rollout-workers"); docs/scale.md says what changes on a cluster.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from steering.decode import Samples, generate
from steering.errors import InvalidArgument
from steering.models import LanguageModel, load_model
from steering.train.adapters import add_lora
from steering.train.stacking import merged_into_weights

RESTARTS = 3  # how often Ray restarts a dead worker (and retries its call) before the step fails


@dataclass
class Policy:
    """A model control: the adapter being trained, on while sampling, off for the base books."""

    name: str

    @contextmanager
    def attached(self, model: LanguageModel) -> Iterator[None]:
        model.module.set_adapter(self.name)
        model.module.enable_adapters()
        try:
            yield
        finally:
            model.module.disable_adapters()

    def __repr__(self) -> str:
        return f"policy adapter {self.name!r}"


def ray_module() -> Any:
    """`ray`, or a clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InvalidArgument(
            "rollout_workers needs Ray, which is not installed",
            received="import ray failed",
            fix='pip install "steering[ray]" (or pip install ray), or set rollout_workers=0',
        ) from None
    return ray


def lora_weights(model: LanguageModel, name: str) -> dict[str, torch.Tensor]:
    """The trained adapter `name`'s LoRA tensors by parameter name (what a worker copies in)."""
    return {
        key: param.detach().clone()
        for key, param in model.module.named_parameters()
        if f".{name}." in key and "lora_" in key
    }


class RolloutWorker:
    """One actor's state: the base (start adapter merged in), the policy's LoRA, sampling on request."""

    def __init__(self, model: str, dtype: str, init_adapter: str, lora: dict[str, Any], name: str) -> None:
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        self.model = load_model(model, dtype=dtype)
        self.stack = ExitStack()
        if init_adapter:  # as the learner: the start adapter's update in the weights, for good
            self.stack.enter_context(merged_into_weights(self.model, init_adapter))
        add_lora(self.model, name, **lora)
        self.name = name
        self.model.module.eval()

    def pid(self) -> int:
        return os.getpid()

    def sample(
        self, weights: dict[str, torch.Tensor], prompts: list[str], offset: int, options: dict[str, Any]
    ) -> Samples:
        """The policy's rollouts of `prompts` (rows seeded as at `offset` in the whole list)."""
        params = dict(self.model.module.named_parameters())
        with torch.no_grad():
            for key, value in weights.items():
                params[key].copy_(value)
        self.model.module.disable_adapters()
        controls = [*options.pop("controls"), Policy(self.name)]
        return generate(self.model, prompts, controls=controls, prompt_offset=offset, **options)


class RolloutWorkers:
    """K Ray actors sampling the policy's rollouts; `close()` stops them (and the cluster it started)."""

    def __init__(self, count: int, *, model: str, dtype: str, init_adapter: str, lora: dict[str, Any],
                 name: str) -> None:  # fmt: skip
        ray = ray_module()
        self.ray = ray
        self.started_cluster = not ray.is_initialized()
        if self.started_cluster:
            ray.init(
                num_cpus=max(count, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False,
                configure_logging=False,
                runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                                          "TOKENIZERS_PARALLELISM": "false"}},
            )  # fmt: skip
        actor = ray.remote(num_cpus=1, max_restarts=RESTARTS, max_task_retries=RESTARTS)(RolloutWorker)
        self.actors = [actor.remote(model, dtype, init_adapter, lora, name) for _ in range(count)]

    def sample(self, model: LanguageModel, name: str, prompts: Sequence[str], **options: Any) -> Samples:
        """The rollouts of `prompts` by the policy (adapter `name` of `model`), in prompt order."""
        weights = self.ray.put(lora_weights(model, name))
        parts = split(list(prompts), len(self.actors))
        calls = [
            worker.sample.remote(weights, part, offset, dict(options))
            for worker, (offset, part) in zip(self.actors, parts, strict=False)
            if part
        ]
        done = self.ray.get(calls)
        return Samples(
            [sample for part in done for sample in part],
            model_name=done[0].model_name,
            controls=done[0].controls,
            stats=done[0].stats,  # the first part's decoder counts and timings (the parts ran at once)
        )

    def pids(self) -> list[int]:
        return list(self.ray.get([worker.pid.remote() for worker in self.actors]))

    def close(self) -> None:
        for worker in self.actors:
            self.ray.kill(worker)
        self.actors = []
        if self.started_cluster and self.ray.is_initialized():
            self.ray.shutdown()


def split(items: list[str], parts: int) -> list[tuple[int, list[str]]]:
    """`items` cut into `parts` contiguous runs of near-equal length, each with its first index."""
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for index in range(parts):
        end = start + size + (index < extra)
        out.append((start, items[start:end]))
        start = end
    return out

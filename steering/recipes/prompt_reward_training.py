"""The prompt as a reward, trained: RL with r = λ·Σ_{i∈S} δ(x_i, y_i) and β = 1 for several λ.

An experiment over `train/` (RL) and `condition/` (the targets it is measured against), hence a recipe.

KL-regularised RL with β = 1 aims at π(x)·exp(r(x))/Z, which for this reward is exactly the soft
target of `condition.prompt_as_reward`: as λ grows it approaches π(x | x_S = y_S), the prompt's
conditional. Each trained policy q is measured against that conditional:

- satisfied: q(x_S = y_S), the share of the policy's samples with the fixed tokens in place;
- KL(π(· | x_S = y_S) ‖ q), the conditional's view of the policy (0 only when q is the conditional
  on the condition's event);
- KL(q ‖ π), what the policy paid, and — exactly on tiny vocabularies — KL(q ‖ target_λ), how far RL
  got toward its own optimum.

Exact (`exact=True`): q, π and the target are enumerated. Sampled: `samples` draws of q for the share
satisfied and KL(q ‖ π) (its books), and importance samples of the conditional (`ForceTokens`
proposal, exact weights) scored under q for KL(conditional ‖ q) = E_cond[log π − log π(A) − log q].

On-policy RL learns from what it samples: a condition the base almost never meets (π(A) ≈ e^-12 for
" dragon" at token 4) gives no signal in any batch; such a condition is for the samplers of
`condition/` (SMC, a `ForceTokens` proposal), not for REINFORCE from the base.
"""

from __future__ import annotations

import json
import math
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from steering.condition import (
    Enumeration,
    FixedTokens,
    Posterior,
    Target,
    enumerate_target,
    fixed_tokens,
    importance,
    length_between,
)
from steering.controls import Adapter, ForceTokens
from steering.decode import generate
from steering.errors import InvalidArgument
from steering.models import LanguageModel, load_model
from steering.paths import atomic_write_text
from steering.train import RLConfig, train_rl


@dataclass(frozen=True)
class TrainedPoint:
    """One RL-trained policy q for one λ (λ = 0: the base itself, untrained)."""

    strength: float
    satisfied: float
    kl_to_conditional: float
    kl_to_base: float
    kl_to_target: float | None  # exact runs only
    steps: int
    method: str


def train_prompt_as_reward(
    model: LanguageModel,
    prompt: str,
    spans: dict[int, Any],
    strengths: Sequence[float] = (0.0, 1.0, 2.0, 4.0, 8.0),
    *,
    out_dir: str | Path,
    max_new_tokens: int = 8,
    exact: bool = False,
    samples: int = 64,
    rl: dict[str, Any] | None = None,
    seed: int = 0,
    workers: int = 1,
) -> list[TrainedPoint]:
    """Train one RL policy per λ in `strengths` (β = 1) and measure it against the conditional.

    Args:
        model: the base π in float32 (adapters are trained on it, then taken out).
        spans: the fixed tokens, {position: text or token ids} (0 = first generated token).
        out_dir: one run directory per λ (`lambda-<λ>`), and the prompts file.
        exact: enumerate (tiny vocabularies) instead of sampling.
        samples: policy samples and conditional importance samples per λ when not exact.
        rl: `RLConfig` fields (batch_size, samples_per_prompt, epochs, learning_rate, …).
        workers: train this many λ at once, each in its own process on one thread (a registry model
            only: each process loads it by name). A tiny model's steps are too small to split over
            threads, so on 2 cores two processes train two λ in the time of one; the policies are the
            same as trained one after another (each run is seeded by its config). The processes are
            spawned, so a script that calls this with `workers` > 1 must do so under
            `if __name__ == "__main__":` (Python's rule for spawned processes: they import the script).
    """
    values = list(strengths)
    if not values or any(not isinstance(v, (int, float)) or not 0 <= v < math.inf for v in values):
        raise InvalidArgument(
            "strengths must be finite non-negative numbers (the hard condition needs no training)",
            received=values,
            fix="use e.g. [0, 1, 2, 4, 8]",
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "batch_size": 4,
        "samples_per_prompt": 8,
        "epochs": 8,
        "learning_rate": 1e-2,
        "warmup_steps": 0,
        "save_every": 10_000,
        "seed": seed,
        **(rl or {}),
    }
    prompts = out / "prompts.jsonl"
    atomic_write_text(prompts, (json.dumps({"prompt": prompt}) + "\n") * int(settings["batch_size"]))
    hard = Target(model, prompt, [fixed_tokens(spans)], max_new_tokens=max_new_tokens)
    bound = hard.resolved[0]
    assert isinstance(bound, FixedTokens)
    # What every λ is measured against, computed once: the base enumerated, or the conditional sampled.
    everything = Target(model, prompt, [length_between(0, 10**9)], max_new_tokens=max_new_tokens)
    reference = (
        enumerate_target(everything)
        if exact
        else importance(hard, n_particles=samples, proposal=[ForceTokens(dict(bound.spans))], seed=seed + 1)
    )
    jobs = [
        _PolicyJob(str(prompts), dict(spans), float(v), str(out / f"lambda-{v:g}"), max_new_tokens, settings)
        for v in values
        if v > 0
    ]
    trained = dict(zip((job.strength for job in jobs), _train_policies(model, jobs, workers), strict=True))
    points = []
    for strength in values:
        adapter, steps = trained.get(float(strength), (None, 0))
        if isinstance(reference, Enumeration):
            point = _exact(model, everything, reference, bound, strength, adapter, steps)
        else:
            point = _sampled(
                model, prompt, reference, bound, strength, adapter, steps, max_new_tokens, samples, seed
            )
        points.append(point)
    return points


@dataclass(frozen=True)
class _PolicyJob:
    """One λ's RL run: everything a worker process needs (picklable: no model, no tensors)."""

    prompts: str
    spans: dict[int, Any]
    strength: float
    out: str
    max_new_tokens: int
    settings: dict[str, Any]

    def train(self, model: LanguageModel) -> tuple[Path, int]:
        config = RLConfig(
            data=self.prompts,
            model=model.name,
            out=self.out,
            beta=1.0,
            max_new_tokens=self.max_new_tokens,
            **self.settings,
        )
        result = train_rl(config, reward=fixed_tokens(self.spans, strength=self.strength), model=model)
        return result.adapter, result.steps


def _train_policies(model: LanguageModel, jobs: list[_PolicyJob], workers: int) -> list[tuple[Path, int]]:
    """Each job's (adapter, steps): in this process, or in `workers` processes (spawned, one thread each)."""
    if workers <= 1 or len(jobs) <= 1:
        return [job.train(model) for job in jobs]
    dtype = str(model.dtype).removeprefix("torch.")
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds torch threads
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
        return list(pool.map(_train_in_worker, [(model.name, dtype, job) for job in jobs]))


def _train_in_worker(task: tuple[str, str, _PolicyJob]) -> tuple[Path, int]:
    name, dtype, job = task
    torch.set_num_threads(1)
    return job.train(load_model(name, dtype=dtype))


def _exact(
    model: LanguageModel,
    everything: Target,
    base: Enumeration,
    bound: FixedTokens,
    strength: float,
    adapter: Path | None,
    steps: int,
) -> TrainedPoint:
    if adapter is None:
        policy = base
    else:
        with Adapter(adapter).attached(model):
            policy = enumerate_target(everything)
    prompt, max_new_tokens = everything.prompt, everything.max_new_tokens
    soft = Target(
        model, prompt, [fixed_tokens(bound.spans, strength=float(strength))], max_new_tokens=max_new_tokens
    )
    target = enumerate_target(soft)
    if not policy.completions == base.completions == target.completions:  # the same breadth-first order
        raise AssertionError("enumerations of one prompt and length listed different completions")
    log_q, log_p = policy.log_base, base.log_base
    log_target = target.log_base + target.log_potential - target.log_evidence
    inside = torch.tensor([bound.matches(c) == len(bound.ids) for c in base.completions])
    log_cond = torch.where(inside, log_p - torch.logsumexp(log_p[inside], 0), -math.inf)
    q = log_q.exp()
    return TrainedPoint(
        strength,
        satisfied=float(q[inside].sum()),
        kl_to_conditional=float((log_cond[inside].exp() * (log_cond[inside] - log_q[inside])).sum()),
        kl_to_base=float((q * (log_q - log_p)).sum()),
        kl_to_target=float((q * (log_q - log_target)).sum()),
        steps=steps,
        method="exact",
    )


def _sampled(
    model: LanguageModel,
    prompt: str,
    conditional: Posterior,
    bound: FixedTokens,
    strength: float,
    adapter: Path | None,
    steps: int,
    max_new_tokens: int,
    samples: int,
    seed: int,
) -> TrainedPoint:
    controls = [] if adapter is None else [Adapter(adapter)]
    drawn = generate(model, prompt, controls=controls, n=samples, max_new_tokens=max_new_tokens, seed=seed)
    satisfied = sum(bound.matches(s.token_ids) == len(bound.ids) for s in drawn) / samples
    prompt_ids = model.encode(prompt)
    ids = [list(s.token_ids) for s in conditional.samples]
    if adapter is None:
        log_q = torch.stack([s.logp_base.sum() for s in conditional.samples])
    else:
        with Adapter(adapter).attached(model):
            log_q = torch.stack([lp.sum() for lp in model.logprobs([prompt_ids] * len(ids), ids)])
    log_p = torch.stack([s.logp_base.sum() for s in conditional.samples]).to(log_q.dtype)
    weights = conditional.weights.to(log_q.dtype)
    kl_cond = float((weights * (log_p - conditional.log_evidence - log_q)).sum())
    return TrainedPoint(
        strength,
        satisfied=satisfied,
        kl_to_conditional=kl_cond,
        kl_to_base=float(sum(s.kl for s in drawn) / samples) if adapter is not None else 0.0,
        kl_to_target=None,
        steps=steps,
        method=f"sampled ({samples} policy samples, {samples} conditional importance samples)",
    )

"""Sequential Monte Carlo over prefixes, with a lookahead twist for "ends with S".

Particles are prefixes y grown one token at a time from a proposal q (the base by default, or base +
stateless logit controls) inside one `BatchDecoder`; weights are tracked in log space, and when the
effective sample size falls below `ess_threshold · N` the particles are resampled (systematic), which
multiplies the running evidence estimate by the mean weight.

**Suffix targets** (a hard `ends_with(S)`): every completion x that ends with S decomposes uniquely as
x = y + S (+ EOS), so instead of waiting for particles to write S themselves, at every step each
particle *proposes closing*: the candidate y + S + EOS, whose base probability is π(y) · π(S EOS | y),
read from one teacher-forced lookahead pass of S + EOS through a copy of the particles' KV cache. The
twist ψ_t(y) = π(S EOS | y) steers resampling toward prefixes that can close well; the weight of a
candidate is then the particle's twisted weight (divided by N), so Σ over candidates of their weights
is an unbiased estimate of Z = π(ends with S). Particles never sample EOS themselves (q masks it and
the weight keeps the mass 1 − π(EOS | y)), so no completion is counted twice. The target is restricted
to completions whose last tokens are S's canonical tokenisation (other spellings of the same text are
not proposed); other potentials are applied to each candidate's text. We chose this over
generate-then-filter because the suffix has probability ~0 at any fixed position under the base model,
and over a learned twist because the lookahead is exact and costs one batched pass of |S| tokens.

**Other targets**: particles grow from q until EOS or the length limit; a hard potential that can judge
prefixes kills a particle as soon as its prefix fails; the full potential weights the finished ones.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch

from steering.condition.posterior import Posterior
from steering.condition.sampler_args import check_budget, check_particles, covering_proposal
from steering.condition.target import Target
from steering.controls.base import LogitControlBase, split_controls
from steering.decode import BatchDecoder, DecodeRow, Sample, row_seed
from steering.errors import InvalidArgument, check_seed
from steering.models.language_model import LanguageModel

MEMORY_LIMIT_BYTES = 8 * 1024**3


class _NoEOS(LogitControlBase):
    """Internal logit control: particles do not end on their own (suffix SMC closes them)."""

    def __init__(self, eos: Sequence[int]) -> None:
        self.eos = list(eos)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        out = scores.clone()
        out[:, self.eos] = float("-inf")
        return out


def systematic_resample(log_weights: torch.Tensor, generator: torch.Generator) -> list[int]:
    """Indices drawn by systematic resampling: one uniform, N evenly spaced points on the weight CDF.

    Args:
        log_weights: (N,) unnormalised log weights (at least one finite).
    """
    count = log_weights.shape[0]
    cdf = log_weights.double().softmax(0).cumsum(0)
    cdf[-1] = 1.0
    points = (torch.rand((), generator=generator, dtype=torch.float64) + torch.arange(count)) / count
    return torch.searchsorted(cdf, points).clamp(max=count - 1).tolist()


def _ess(log_weights: torch.Tensor) -> float:
    if not torch.isfinite(log_weights).any():
        return 0.0
    weights = log_weights.double().softmax(0)
    return float(1.0 / (weights**2).sum())


def smc(
    target: Target,
    *,
    n_particles: int = 32,
    budget: int | None = None,
    seed: int = 0,
    proposal: Sequence[object] = (),
    ess_threshold: float = 0.5,
) -> Posterior:
    """Sample `target` with SMC; see the module docstring for the suffix lookahead.

    Args:
        target: what to sample.
        n_particles: N, decoded together in one batch.
        budget: the most model calls allowed, or None for no cap; the run is refused when its worst
            case (no particle stops early; the suffix lookahead at every step) exceeds it.
        seed: same seed, same result.
        proposal: logit controls defining q (temperature, tweaks, `ForceTokens`), stateless or able to
            follow resampled rows (`select_rows`); the weights correct them.
        ess_threshold: resample when ESS < ess_threshold · N (0 never resamples, 1 always does).

    Returns:
        A `Posterior`: for "ends with S", every particle's closing candidate at every step; otherwise
        the N finished particles.
    """
    particles = check_particles(n_particles)
    seed = check_seed(seed)
    if not 0.0 <= ess_threshold <= 1.0:
        raise InvalidArgument("ess_threshold must be in [0, 1]", received=ess_threshold, fix="use 0.5")
    context, logit_controls, model_controls = split_controls(covering_proposal(proposal))
    # Per-row state must follow the resampled rows: only controls that can re-index it (select_rows).
    stateful = [c for c in logit_controls if not c.can_select_rows]
    if context or model_controls or stateful:
        raise InvalidArgument(
            "SMC resamples rows, so its proposal may only use stateless logit controls",
            received=[type(c).__name__ for c in [*context, *model_controls, *stateful]],
            fix="use importance() for context controls, pools and steering vectors",
        )
    _check_memory(target, particles)
    suffix = next((getattr(p, "suffix", None) for p in target.resolved if getattr(p, "suffix", None)), None)
    check_budget(budget, worst_case=_worst_case_calls(target, particles, suffix), sampler="smc")
    if suffix is not None:
        return _suffix_smc(target, suffix, particles, ess_threshold, list(logit_controls), seed)
    return _plain_smc(target, particles, ess_threshold, list(logit_controls), seed)


def _worst_case_calls(target: Target, particles: int, suffix: str | None) -> int:
    """Model calls when no particle stops early: one per particle and step, plus |S| per step to close."""
    if suffix is None:
        return particles * target.max_new_tokens
    width = len(target.model.encode_continuation(suffix))
    return max(target.max_new_tokens - width + 1, 0) * particles * (width + 1)


def _check_memory(target: Target, particles: int) -> None:
    if target.model.backend != "torch":
        return  # llama.cpp's context is sized when it loads; its forward_step refuses rows it cannot hold
    config = target.model.module.config
    layers = int(getattr(config, "num_hidden_layers", 1))
    heads = int(getattr(config, "num_key_value_heads", getattr(config, "num_attention_heads", 1)))
    head_dim = int(getattr(config, "head_dim", getattr(config, "hidden_size", 64) // max(heads, 1)))
    length = len(target.model.encode(target.prompt)) + target.max_new_tokens
    element = torch.finfo(target.model.dtype).bits // 8
    cache = particles * layers * 2 * heads * head_dim * length * element
    logits = particles * target.model.vocab_size * 4 * 24  # a lookahead pass of up to ~24 tokens, float32
    estimate = cache + logits
    if estimate > MEMORY_LIMIT_BYTES:
        raise InvalidArgument(
            f"{particles} particles need about {estimate / 1024**3:.1f} GiB (KV cache and logits), above the "
            f"{MEMORY_LIMIT_BYTES / 1024**3:.0f} GiB limit",
            received=particles,
            fix="use fewer particles or a shorter max_new_tokens",
        )


def _rows(target: Target, particles: int, seed: int) -> list[DecodeRow]:
    ids = target.model.encode(target.prompt)
    return [
        DecodeRow(prompt_index=0, sample_index=k, context_ids=ids, generator=_generator(seed, 0, k))
        for k in range(particles)
    ]


def _generator(seed: int, step: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(row_seed(seed, step, index))


def _resample_if_needed(
    decoder: BatchDecoder,
    log_w: torch.Tensor,
    threshold: float,
    generator: torch.Generator,
    step: int,
    seed: int,
) -> tuple[torch.Tensor, float, list[int] | None]:
    """Resample when ESS < threshold · N.

    Returns the new log weights (all 0), the log mean weight to fold into the evidence, and the
    ancestor indices — or the weights unchanged, 0.0 and None when no resampling was needed.
    """
    count = log_w.shape[0]
    if _ess(log_w) >= threshold * count or not torch.isfinite(log_w).any():
        return log_w, 0.0, None
    log_mean = float(torch.logsumexp(log_w, 0)) - math.log(count)
    indices = systematic_resample(log_w, generator)
    decoder.select(indices, [_generator(seed, step + 1, k) for k in range(count)])
    return torch.zeros(count, dtype=torch.float64), log_mean, indices


def _suffix_smc(
    target: Target, suffix: str, particles: int, threshold: float, controls: list[Any], seed: int
) -> Posterior:
    model = target.model
    suffix_ids = model.encode_continuation(suffix)
    eos = model.eos_token_ids[0]
    budget = target.max_new_tokens
    if len(suffix_ids) > budget:
        raise InvalidArgument(
            f"the suffix takes {len(suffix_ids)} tokens, more than max_new_tokens={budget}",
            received=suffix,
            fix="raise max_new_tokens",
        )
    decoder = BatchDecoder(
        model, _rows(target, particles, seed), controls=[*controls, _NoEOS(model.eos_token_ids)]
    )
    resampler = torch.Generator().manual_seed(row_seed(seed, -1, 0))
    log_w = torch.zeros(particles, dtype=torch.float64)  # twisted weights, relative to the running evidence
    log_evidence = 0.0  # log of the mean weights folded in at each resampling
    log_psi = torch.zeros(particles, dtype=torch.float64)  # the twist at the previous step (1 at the start)
    candidates: list[tuple[Sample, float]] = []
    calls, resamplings = 0, 0
    for step in range(budget - len(suffix_ids) + 1):
        closing = decoder.lookahead([*suffix_ids, eos])  # log π(S_1, …, S_k, EOS | y) per token
        calls += particles * len(suffix_ids)  # S runs through the model; π(S_1 | y) is already pending
        with_eos = step + len(suffix_ids) + 1 <= budget  # else y + S fills the budget: no EOS after it
        tail = [*suffix_ids, eos] if with_eos else list(suffix_ids)
        psi = closing[:, : len(tail)].sum(1)
        log_w = log_w + psi - log_psi
        log_psi = psi
        for i, row in enumerate(decoder.rows):
            weight = float(log_w[i]) + log_evidence - math.log(particles)
            candidates.append((_candidate(model, target.prompt, row, tail, closing[i, : len(tail)]), weight))
        if not with_eos:
            break
        log_w, log_mean, ancestors = _resample_if_needed(decoder, log_w, threshold, resampler, step, seed)
        if ancestors is not None:
            log_evidence += log_mean
            log_psi = log_psi[torch.tensor(ancestors)]
            resamplings += 1
        decoder.step()
        calls += particles
        log_w = log_w + torch.tensor([r.logp[-1] - r.logq[-1] for r in decoder.rows], dtype=torch.float64)
    name = f"smc(particles={particles}, ends_with={suffix!r}, lookahead, {resamplings} resamplings)"
    return _posterior(target, candidates, calls, name)


def _candidate(
    model: LanguageModel, prompt: str, row: DecodeRow, tail: list[int], tail_logp: torch.Tensor
) -> Sample:
    """The completion y + tail as a Sample: tail tokens forced (log q = 0), scored under the base."""
    tokens = [*row.tokens, *tail]
    ends = tokens[-1] in model.eos_token_ids
    return Sample(
        prompt=prompt,
        prompt_index=0,
        context=prompt,
        text=model.decode(tokens[:-1] if ends else tokens),
        token_ids=tokens,
        logq=torch.tensor([*row.logq, *([0.0] * len(tail))], dtype=torch.float32),
        logp_base=torch.tensor([*row.logp, *tail_logp.tolist()], dtype=torch.float32),
        stop_reason="eos" if ends else "length",
    )


def _posterior(target: Target, candidates: list[tuple[Sample, float]], calls: int, name: str) -> Posterior:
    samples = [dataclasses.replace(s, sample_index=k) for k, (s, _) in enumerate(candidates)]
    log_phi = target.log_potential([s.text for s in samples], [s.token_ids for s in samples])
    log_w = torch.tensor([w for _, w in candidates], dtype=torch.float64) + log_phi
    log_z = float(torch.logsumexp(log_w, 0)) if len(samples) else float("-inf")
    return Posterior(samples, log_w, log_z, log_phi, calls, name)


def _plain_smc(target: Target, particles: int, threshold: float, controls: list[Any], seed: int) -> Posterior:
    model = target.model
    decoder = BatchDecoder(model, _rows(target, particles, seed), controls=controls)
    resampler = torch.Generator().manual_seed(row_seed(seed, -1, 0))
    log_w = torch.zeros(particles, dtype=torch.float64)
    log_evidence, calls, resamplings = 0.0, 0, 0
    for step in range(target.max_new_tokens):
        before = [len(r.tokens) for r in decoder.rows]
        live = decoder.step(last=step == target.max_new_tokens - 1)
        for i, row in enumerate(decoder.rows):
            if len(row.tokens) == before[i]:
                continue  # finished earlier
            calls += 1
            log_w[i] += row.logp[-1] - row.logq[-1]
            if row.stop_reason is None and not target.prefix_ok(model.decode(row.tokens), row.tokens):
                log_w[i] = float("-inf")  # no completion of this prefix can satisfy the condition
                row.stop_reason = "pruned"
        if not live:
            break
        log_w, log_mean, ancestors = _resample_if_needed(decoder, log_w, threshold, resampler, step, seed)
        if ancestors is not None:
            log_evidence += log_mean
            resamplings += 1
    decoder.finish()
    candidates = [
        (
            Sample(
                prompt=target.prompt,
                prompt_index=0,
                context=target.prompt,
                text=row.text,
                token_ids=row.tokens,
                logq=torch.tensor(row.logq, dtype=torch.float32),
                logp_base=torch.tensor(row.logp, dtype=torch.float32),
                stop_reason=row.stop_reason or "length",
            ),
            float(log_w[i]) + log_evidence - math.log(particles),
        )
        for i, row in enumerate(decoder.rows)
    ]
    return _posterior(target, candidates, calls, f"smc(particles={particles}, {resamplings} resamplings)")

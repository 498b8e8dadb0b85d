"""`steer demo`, section 4: conditioning — a story that must end with a phrase, sampled with SMC;
and the prompt as a reward: how π(x)·exp(λ·Σδ(x_i, y_i)) approaches π(x | x_S = y_S) as λ grows.

Rejection from the base model with the same budget of model calls is shown next to SMC, so the reader
sees why generate-then-filter is not enough.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from steering.condition import (
    PromptRewardPoint,
    Target,
    ends_with,
    length_between,
    prompt_as_reward,
    rejection,
    smc,
)
from steering.eval.report import Section, line_chart_svg, table_html
from steering.models import LanguageModel, load_model
from steering.recipes.demo.section import DemoContext, DemoScale
from steering.recipes.prompt_reward_training import TrainedPoint, train_prompt_as_reward

PROMPT = "Once upon a time"
PHRASE = " happily ever after."
MIN_CHARACTERS = (
    60  # without it the exact conditional is dominated by "Once upon a time, happily ever after."
)


# Prompt as reward: the λ values, and the fixed tokens on each model.
STRENGTHS = (0.0, 1.0, 2.0, 4.0, 8.0, 12.0, 16.0, math.inf)
# λ with an RL-trained policy (0: the base, untrained): where the target's curve bends, and one of the
# large λ where the adapter stalls (8 and 12 stall at the same share; BENCHMARKS.md trains them all).
TRAINED_STRENGTHS = (0.0, 1.0, 2.0, 4.0, 16.0)
LETTERS_PROMPT, LETTERS_SPANS, LETTERS_TOKENS = "ab", {1: "c", 3: "a"}, 4
GEMMA_SPANS, GEMMA_TOKENS = {4: " dragon"}, 8
# RL on the tiny model's prompt reward (β = 1): a few seconds per λ.
LETTERS_RL = {"batch_size": 4, "samples_per_prompt": 16, "learning_rate": 1e-2, "lora_rank": 8}
LETTERS_RL_EPOCHS = 150  # one step per epoch (the prompts file holds one batch)


@dataclass(frozen=True)
class ConditionOutcome:
    summary_rows: list[list[object]]
    story_rows: list[list[object]]
    particles: int
    max_new_tokens: int
    exact_curve: list[PromptRewardPoint]
    gemma_curve: list[PromptRewardPoint]
    reward_samples: int
    trained_curve: list[TrainedPoint]

    def sections(self) -> list[Section]:
        return condition_sections(self)


def condition_scale(limit: int | None) -> dict[str, int]:
    """SMC with 8 particles over 32 tokens, 16 samples per λ and 150 RL steps per λ on the tiny model, or
    2 over 8, 4 and 10 for a `--limit` run."""
    if limit is None:
        return {"particles": 8, "max_new_tokens": 32, "reward_samples": 16, "rl_epochs": LETTERS_RL_EPOCHS}
    return {"particles": 2, "max_new_tokens": 8, "reward_samples": 4, "rl_epochs": 10}


@dataclass(frozen=True)
class ConditionalsSection:
    name: str = "Conditioning and the prompt as a reward"
    trains_base: bool = False  # its RL trains the tiny model, not the demo's

    def work_units(self, scale: DemoScale) -> int:
        return condition_work_units(**condition_scale(scale.limit))

    def run(self, context: DemoContext) -> ConditionOutcome:
        outcome = run_condition_section(
            context.model,
            seed=context.seed,
            runs_dir=context.section_dir("prompt-reward-rl"),
            **condition_scale(context.limit),
        )
        if context.progress is not None:  # the samplers report no tokens: the whole section at once
            context.progress(self.work_units(context.scale))
        return outcome


def condition_work_units(
    particles: int, max_new_tokens: int, reward_samples: int = 16, rl_epochs: int = 0
) -> int:
    return 2 * particles * max_new_tokens + len(STRENGTHS) * reward_samples * GEMMA_TOKENS


def run_condition_section(
    model: LanguageModel,
    *,
    particles: int = 8,
    max_new_tokens: int = 32,
    reward_samples: int = 16,
    rl_epochs: int = LETTERS_RL_EPOCHS,
    seed: int = 0,
    runs_dir: Path,
) -> ConditionOutcome:
    rows, stories = story_rows(model, particles=particles, max_new_tokens=max_new_tokens, seed=seed)
    letters = load_model("tiny-letters", dtype="float32")
    with one_thread():
        exact_curve = prompt_as_reward(
            letters, LETTERS_PROMPT, LETTERS_SPANS, STRENGTHS, max_new_tokens=LETTERS_TOKENS, exact=True
        )
    gemma_curve = prompt_as_reward(
        model, PROMPT, GEMMA_SPANS, STRENGTHS, max_new_tokens=GEMMA_TOKENS, n=reward_samples, seed=seed
    )
    with one_thread():
        trained_curve = train_prompt_as_reward(
            letters,
            LETTERS_PROMPT,
            LETTERS_SPANS,
            TRAINED_STRENGTHS,
            out_dir=runs_dir,
            max_new_tokens=LETTERS_TOKENS,
            exact=True,
            rl={**LETTERS_RL, "epochs": rl_epochs},
            seed=seed,
            workers=2,  # two λ at a time, a process each (one thread is as fast as two for this model)
        )
    return ConditionOutcome(
        rows, stories, particles, max_new_tokens, exact_curve, gemma_curve, reward_samples, trained_curve
    )


def story_rows(
    model: LanguageModel, *, particles: int, max_new_tokens: int, seed: int
) -> tuple[list[list[object]], list[list[object]]]:
    """SMC and rejection (same budget of model calls) on the story target: a summary row per sampler,
    and the four highest-weight stories of SMC."""
    length = length_between(min(MIN_CHARACTERS, 4 * max_new_tokens), 10_000)
    target = Target(model, PROMPT, [ends_with(PHRASE), length], max_new_tokens=max_new_tokens)
    posterior = smc(target, n_particles=particles, seed=seed)
    baseline = rejection(target, n_particles=1, budget=posterior.model_calls, seed=seed, batch_size=particles)
    rows: list[list[object]] = []
    for name, result in (("SMC with lookahead closing", posterior), ("rejection from the base", baseline)):
        satisfied = sum(1 for w in result.weights.tolist() if w > 0) if result.found else 0
        rows.append(
            [
                name,
                result.model_calls,
                satisfied,
                result.ess if result.found else 0.0,
                result.log_evidence if result.found else None,
            ]
        )
    stories: list[list[object]] = []
    if posterior.found:
        order = posterior.weights.argsort(descending=True)[:4].tolist()
        stories = [[PROMPT + posterior.samples[i].text, float(posterior.weights[i])] for i in order]
    return rows, stories


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the tiny model on one intra-op thread: its tensors are too small to split. On 2 quiet cores
    one thread is as fast as two (150 RL steps: 13 s either way); with other work on the machine a
    second thread waits at every op (10 steps: 1.5 s on one thread, 18 s on two). Same numbers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _strength(value: float) -> str:
    return "∞ (the condition)" if math.isinf(value) else f"{value:g}"


def _reward_section(outcome: ConditionOutcome) -> Section:
    labels = [("∞" if math.isinf(p.strength) else f"{p.strength:g}") for p in outcome.exact_curve]
    trained = {p.strength: p for p in outcome.trained_curve}
    chart = line_chart_svg(
        labels,
        {
            "tiny-letters, exact (enumeration)": [p.satisfied for p in outcome.exact_curve],
            "tiny-letters, RL-trained policy (exact)": [
                trained[p.strength].satisfied if p.strength in trained else None for p in outcome.exact_curve
            ],
            f"gemma-270m, importance ({outcome.reward_samples} samples per λ)": [
                p.satisfied for p in outcome.gemma_curve
            ],
        },
        title="Prompt as reward: target_λ(x_S = y_S) as λ grows",
        y_label="fraction satisfying",
    )
    rows = [
        [
            _strength(e.strength),
            e.satisfied,
            e.kl_to_conditional,
            trained[e.strength].satisfied if e.strength in trained else None,
            trained[e.strength].kl_to_conditional if e.strength in trained else None,
            g.satisfied,
            g.kl_to_conditional if math.isfinite(g.kl_to_conditional) else None,
            g.ess,
        ]
        for e, g in zip(outcome.exact_curve, outcome.gemma_curve, strict=True)
    ]
    return Section(
        "Prompt as reward: a soft prompt approaches the hard one",
        "A prompt fixes tokens y_S at positions S; the reward λ·Σ_{i∈S} δ(x_i, y_i) with KL weight 1 "
        "defines the soft target π(x)·exp(λ·Σδ). On the condition x_S = y_S the reward is constant, so the "
        "conditional is the soft target restricted to it and KL(π(·|x_S = y_S) ‖ target_λ) = −log "
        "target_λ(x_S = y_S): the fraction of the soft target that already satisfies the condition says "
        f"how close it is. tiny-letters: prompt {LETTERS_PROMPT!r}, fixed {LETTERS_SPANS} within "
        f"{LETTERS_TOKENS} tokens, computed exactly by enumerating every completion. gemma-270m: prompt "
        f"{PROMPT!r}, fixed {GEMMA_SPANS} within {GEMMA_TOKENS} tokens, estimated by importance sampling "
        "with a proposal that boosts the fixed token by λ at its position (forces it at λ = ∞); the exact "
        "weights make the estimate consistent, the ESS says how much to trust it. Trained: KL-regularised RL "
        "with this reward and β = 1 (whose optimum is target_λ) on the tiny model, one LoRA policy for "
        f"each λ in {', '.join(f'{v:g}' for v in TRAINED_STRENGTHS[1:])}, measured exactly; it follows the "
        "target's curve toward the prompt's conditional (in the full demo, 150 steps per λ, the policies "
        "for λ ≥ 4 stall near 0.7 satisfying: the adapter's reach, experiments/adapter_capacity.py).",
        chart
        + table_html(
            [
                "λ",
                "tiny: target_λ(condition), exact",
                "tiny: KL(conditional ‖ target_λ)",
                "tiny: RL policy (conditional), exact",
                "tiny: KL(conditional ‖ RL policy)",
                "gemma: target_λ(condition), estimated",
                "gemma: KL estimate",
                "gemma: ESS",
            ],
            rows,
        ),
    )


def condition_sections(outcome: ConditionOutcome) -> list[Section]:
    return [
        Section(
            "Conditioning: a story that ends with a phrase",
            f"Target: gemma's own stories after {PROMPT!r}, conditioned on ending with {PHRASE!r} within "
            f"{outcome.max_new_tokens} tokens and on being at least {MIN_CHARACTERS} characters long (the "
            "unrestricted conditional is dominated by the shortest story, 'Once upon a time, happily ever "
            f"after.'). SMC with {outcome.particles} particles lets every particle propose "
            "closing with the phrase at every step (its exact base probability read by a lookahead pass), "
            "resamples toward prefixes that close well, and weights every candidate exactly; log Ẑ estimates "
            "log P(the story ends with the phrase). Rejection from the base gets the same number of model "
            "calls (token forward passes).",
            table_html(
                ["sampler", "model calls", "samples with weight > 0", "ESS", "log Ẑ"], outcome.summary_rows
            )
            + table_html(["highest-weight stories", "normalised weight"], outcome.story_rows),
        ),
        _reward_section(outcome),
    ]

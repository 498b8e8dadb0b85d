"""`steer demo`, section 3: conditioning — a story that must end with a phrase, sampled with SMC.

Rejection from the base model with the same budget of model calls is shown next to it, so the reader
sees why generate-then-filter is not enough.
"""

from __future__ import annotations

from dataclasses import dataclass

from steering.condition import Target, ends_with, length_between, rejection, smc
from steering.eval.report import Section, table_html
from steering.models import LanguageModel

PROMPT = "Once upon a time"
PHRASE = " happily ever after."
MIN_CHARACTERS = (
    60  # without it the exact conditional is dominated by "Once upon a time, happily ever after."
)


@dataclass(frozen=True)
class ConditionOutcome:
    summary_rows: list[list[object]]
    story_rows: list[list[object]]
    particles: int
    max_new_tokens: int


def condition_work_units(particles: int, max_new_tokens: int) -> int:
    return 2 * particles * max_new_tokens


def run_condition_section(
    model: LanguageModel, *, particles: int = 8, max_new_tokens: int = 32, seed: int = 0
) -> ConditionOutcome:
    length = length_between(min(MIN_CHARACTERS, 4 * max_new_tokens), 10_000)
    target = Target(model, PROMPT, [ends_with(PHRASE), length], max_new_tokens=max_new_tokens)
    posterior = smc(target, particles=particles, seed=seed)
    baseline = rejection(target, n=1, max_model_calls=posterior.model_calls, seed=seed, batch_size=particles)
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
    stories = []
    if posterior.found:
        order = posterior.weights.argsort(descending=True)[:4].tolist()
        stories = [[PROMPT + posterior.samples[i].text, float(posterior.weights[i])] for i in order]
    return ConditionOutcome(rows, stories, particles, max_new_tokens)


def condition_sections(outcome: ConditionOutcome) -> list[Section]:
    return [
        Section(
            "Conditioning: a story that ends with a phrase",
            f"Target: gemma's own stories after {PROMPT!r}, conditioned on ending with {PHRASE!r} within "
            f"{outcome.max_new_tokens} tokens and on being at least {MIN_CHARACTERS} characters long (the unrestricted "
            "conditional is dominated by the shortest story, 'Once upon a time, happily ever after.'). SMC with {outcome.particles} particles lets every particle propose "
            "closing with the phrase at every step (its exact base probability read by a lookahead pass), "
            "resamples toward prefixes that close well, and weights every candidate exactly; log Ẑ estimates "
            "log P(the story ends with the phrase). Rejection from the base gets the same number of model "
            "calls (token forward passes).",
            table_html(
                ["sampler", "model calls", "samples with weight > 0", "ESS", "log Ẑ"], outcome.summary_rows
            )
            + table_html(["highest-weight stories", "normalised weight"], outcome.story_rows),
        )
    ]

"""`steer demo`: what the raw base model does with questions, and what each technique changes.

Raw continuation vs the Q:/A: wrapper with a stop sequence vs few-shot prompting vs an SFT adapter and
a soft prompt trained on demonstrations the base model wrote itself (`demo_train`), on the built-in
questions. Each technique is decoded twice: ancestral sampling at temperature 1 (the
distribution the books describe: stop rate, invented questions, repetition, KL to base) and greedy
(accuracy as a reader would see it).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from steering.cli.demo_condition import condition_sections, condition_work_units, run_condition_section
from steering.cli.demo_controls import (
    SentimentRow,
    controls_sections,
    controls_work_units,
    run_controls_section,
)
from steering.cli.demo_train import TUNED_TECHNIQUES, run_tuning_section, tuning_scale, tuning_sections
from steering.controls import QA, FewShot, Greedy, demonstrations
from steering.decode import Samples, generate
from steering.eval import Summary, builtin_demonstrations, builtin_questions, summarise
from steering.eval.report import Section, bar_chart_svg, examples_html, table_html, write_report
from steering.models import LanguageModel, load_model

COLUMNS = (
    "technique",
    "accuracy (greedy)",
    "accuracy (sampled)",
    "stop rate",
    "new-question rate",
    "distinct-2",
    "longest repeat (words)",
    "mean tokens",
    "mean KL to base (nats)",
)

SHORT_COLUMNS = (
    "technique",
    "acc greedy",
    "acc sampled",
    "stop",
    "new Q",
    "dist-2",
    "repeat",
    "tokens",
    "KL",
)


@dataclass(frozen=True)
class TechniqueResult:
    name: str
    sampled: Samples
    greedy: Samples
    summary: Summary
    greedy_summary: Summary

    def row(self) -> list[object]:
        s = self.summary
        return [
            self.name,
            self.greedy_summary.accuracy,
            s.accuracy,
            s.stop_rate,
            s.new_question_rate,
            s.distinct_2,
            s.longest_repeat,
            s.mean_tokens,
            s.mean_kl,
        ]


@dataclass(frozen=True)
class DemoResult:
    prompting: list[TechniqueResult]
    label_rows: list[list[object]]
    sentiment: list[SentimentRow]
    report: Path


def techniques() -> list[tuple[str, list[object]]]:
    demos = demonstrations(builtin_demonstrations())
    return [
        ("raw", []),
        ("Q:/A: + stop", [QA()]),
        ("few-shot + stop", [FewShot(demos)]),
    ]


def run_demo(
    model: LanguageModel,
    *,
    out_dir: Path,
    max_new_tokens: int = 48,
    limit: int | None = None,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> DemoResult:
    """Run every technique on the built-in questions and write `out_dir/report.html`."""
    questions = builtin_questions()[:limit] if limit else builtin_questions()
    prompts = [q.question for q in questions]
    answers = [q.answers for q in questions]
    started = time.time()
    trainable = load_model(model.name, dtype="float32")  # one float32 copy for every training run
    tuning = run_tuning_section(
        model,
        prompts,
        out_dir=out_dir / "self-instruct",
        seed=seed,
        train_model=trainable,
        **tuning_scale(limit),
    )
    results = []
    for name, controls in [*techniques(), *tuning.techniques]:
        kwargs = {"max_new_tokens": max_new_tokens, "seed": seed, "progress": progress}
        sampled = generate(model, prompts, controls=controls, **kwargs)  # type: ignore[arg-type]
        greedy = generate(model, prompts, controls=[*controls, Greedy()], **kwargs)  # type: ignore[arg-type]
        results.append(
            TechniqueResult(name, sampled, greedy, summarise(sampled, answers), summarise(greedy, answers))
        )
    controls_outcome = run_controls_section(
        model,
        seed=seed,
        progress=progress,
        runs_dir=out_dir / "sentiment-rl",
        train_model=trainable,
        **controls_scale(limit),
    )
    del trainable
    condition_outcome = run_condition_section(
        model, seed=seed, runs_dir=out_dir / "prompt-reward-rl", **condition_scale(limit)
    )
    if progress is not None:
        progress(condition_work_units(**condition_scale(limit)))
    extra = (
        *tuning_sections(tuning),
        *controls_sections(controls_outcome),
        *condition_sections(condition_outcome),
    )
    elapsed = time.time() - started
    report = write_demo_report(model, results, prompts, out_dir / "report.html", elapsed=elapsed, extra=extra)
    return DemoResult(results, controls_outcome.label_rows, controls_outcome.sentiment, report)


def condition_scale(limit: int | None) -> dict[str, int]:
    """SMC with 8 particles over 32 tokens, 16 samples per λ and 150 RL steps per λ on the tiny model, or
    2 over 8, 4 and 10 for a `--limit` run."""
    if limit is None:
        return {"particles": 8, "max_new_tokens": 32, "reward_samples": 16, "rl_epochs": 150}
    return {"particles": 2, "max_new_tokens": 8, "reward_samples": 4, "rl_epochs": 10}


def controls_scale(limit: int | None) -> dict[str, int]:
    """The whole sentiment table, or a small one (2 openings × 1 sample, 1 RL step) for a `--limit` run."""
    return {} if limit is None else {"openings": 2, "samples_per_start": 1, "rl_steps": 1}


def demo_work_units(count: int, max_new_tokens: int, limit: int | None = None) -> int:
    """Token slots the demo's progress bar counts: techniques × 2 decodings × prompts × tokens."""
    extra = controls_work_units(**controls_scale(limit)) + condition_work_units(**condition_scale(limit))
    return (len(techniques()) + TUNED_TECHNIQUES) * 2 * count * max_new_tokens + extra


def write_demo_report(
    model: LanguageModel,
    results: list[TechniqueResult],
    prompts: list[str],
    path: Path,
    *,
    elapsed: float,
    extra: tuple[Section, ...] = (),
) -> Path:
    names = [r.name for r in results]
    chart = bar_chart_svg(
        names,
        {
            "accuracy (greedy)": [r.greedy_summary.accuracy or 0.0 for r in results],
            "stop rate (sampled)": [r.summary.stop_rate for r in results],
            "new-question rate (sampled)": [r.summary.new_question_rate for r in results],
        },
        title="What the prompting techniques change",
    )
    meta = (
        f"model {model.name} ({model.dtype}), {len(prompts)} built-in questions, "
        f"{platform.machine()} {platform.processor() or ''} with {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {elapsed:.0f} s"
    )
    sections = [
        Section(
            "Prompting a base model",
            "A base model continues text: asked a bare question it rambles and invents new questions. "
            "The Q:/A: wrapper frames it as an answer and stops at the next 'Q:'; few-shot demonstrations "
            "show the format. Accuracy is normalised containment of an accepted answer in the first "
            "non-empty line. KL is Σ(log q − log p_base) per sample, averaged, where p_base is the model "
            "on the raw question: the price of changing the context.",
            table_html(COLUMNS, [r.row() for r in results]) + chart,
        ),
        Section(
            "Examples (greedy)",
            "The same questions under each technique, greedy decoding, stop sequences trimmed.",
            examples_html(prompts, {r.name: r.greedy.texts for r in results}),
        ),
        Section(
            "Examples (sampled, temperature 1)",
            "Ancestral samples from the controlled distribution (seed fixed).",
            examples_html(prompts, {r.name: r.sampled.texts for r in results}),
        ),
        *extra,
    ]
    return write_report(path, title="steering demo", meta=meta, sections=sections)

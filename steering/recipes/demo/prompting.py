"""`steer demo`, section 1: what the raw base model does with questions, and what prompting changes.

Raw continuation vs the Q:/A: wrapper with a stop sequence vs few-shot prompting, on the built-in
questions. Each technique is decoded twice: ancestral sampling at temperature 1 (the distribution the
books describe: stop rate, invented questions, repetition, KL to base) and greedy (accuracy as a reader
would see it). The technique table this section starts is shared (`DemoContext.techniques`): the
tuning section adds its rows, and the table, its chart and the examples show every row present when
the page is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from steering.controls import QA, FewShot, demonstrations
from steering.eval import builtin_demonstrations
from steering.eval.report import Section, bar_chart_svg, examples_html, table_html
from steering.recipes.demo.section import (
    DemoContext,
    DemoScale,
    TechniqueResult,
    evaluate_technique,
    technique_work_units,
)

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


def techniques() -> list[tuple[str, list[object]]]:
    demos = demonstrations(builtin_demonstrations())
    return [
        ("raw", []),
        ("Q:/A: + stop", [QA()]),
        ("few-shot + stop", [FewShot(demos)]),
    ]


@dataclass(frozen=True)
class PromptingOutcome:
    """The shared technique table and the questions it was measured on."""

    results: list[TechniqueResult]
    prompts: list[str]

    def sections(self) -> list[Section]:
        return prompting_sections(self.results, self.prompts)


@dataclass(frozen=True)
class PromptingSection:
    name: str = "Prompting a base model"
    trains_base: bool = False

    def work_units(self, scale: DemoScale) -> int:
        return technique_work_units(scale, len(techniques()))

    def run(self, context: DemoContext) -> PromptingOutcome:
        for name, controls in techniques():
            context.techniques.append(evaluate_technique(context, name, controls))
        return PromptingOutcome(context.techniques, context.prompts)


def prompting_sections(results: list[TechniqueResult], prompts: list[str]) -> list[Section]:
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
    return [
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
    ]

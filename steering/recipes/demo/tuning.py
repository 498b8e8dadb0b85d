"""`steer demo`, section 2: instruction tuning from nothing but the base model (self-instruct).

The base model writes its own demonstrations (few-shot Q:/A: prompting, then filters on stopping and
repetition, none of the held-out questions), an SFT adapter and a soft prompt are trained on them,
and both join the demo's table of techniques: asked the bare held-out questions, without any wrapper,
do they answer, stop, and stop inventing new questions — and at what KL to the base?
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from steering.controls import Adapter, SoftPrompt
from steering.eval.report import Section, curve_svg, table_html
from steering.recipes.demo.section import DemoContext, DemoScale, evaluate_technique, technique_work_units
from steering.recipes.self_instruct import REASONS, SelfTuned, tune_from_base

TUNED_TECHNIQUES = 2  # the SFT adapter and the soft prompt, added to the demo's techniques


@dataclass(frozen=True)
class TuningOutcome:
    tuned: SelfTuned

    def sections(self) -> list[Section]:
        return tuning_sections(self)


def tuning_scale(limit: int | None) -> dict[str, int]:
    """64 harvested demonstrations and 2 epochs, or 8 and 1 for a `--limit` run (experiments/
    instruction_tuning.py harvests 256)."""
    return {"demonstrations": 64, "epochs": 2} if limit is None else {"demonstrations": 8, "epochs": 1}


@dataclass(frozen=True)
class TuningSection:
    name: str = "Instruction tuning from the base model itself"
    trains_base: bool = True

    def work_units(self, scale: DemoScale) -> int:
        return technique_work_units(scale, TUNED_TECHNIQUES)

    def run(self, context: DemoContext) -> TuningOutcome:
        scale = tuning_scale(context.limit)
        tuned = tune_from_base(
            context.model,
            out_dir=context.section_dir("self-instruct"),
            demonstrations=scale["demonstrations"],
            exclude=context.prompts,
            epochs=scale["epochs"],
            seed=context.seed,
            train_model=context.train_model(),
            batch_size=context.batch_size,
        )
        tuned_techniques: list[tuple[str, list[object]]] = [
            ("SFT adapter (own demos)", [Adapter(tuned.sft.adapter)]),
            ("soft prompt (own demos)", [SoftPrompt.load(tuned.soft_prompt.adapter)]),
        ]
        for name, controls in tuned_techniques:
            context.techniques.append(evaluate_technique(context, name, controls))
        return TuningOutcome(tuned)


def tuning_sections(outcome: TuningOutcome) -> list[Section]:
    harvest = outcome.tuned.harvest
    counts = [["drawn", harvest.drawn], ["kept", len(harvest.rows)]]
    counts += [[f"dropped: {reason}", harvest.dropped.get(reason, 0)] for reason in REASONS]
    examples = "".join(
        f"<li><b>{html.escape(r['prompt'])}</b> →{html.escape(r['completion'])}</li>"
        for r in harvest.rows[:12]
    )
    curves = []
    for name, run in (("SFT adapter", outcome.tuned.sft), ("soft prompt", outcome.tuned.soft_prompt)):
        records = run.metrics
        steps = [float(r.get("step", i + 1)) for i, r in enumerate(records)]
        keys = [k for k in ("loss", "eval_loss") if any(k in r for r in records)]
        curves.append(curve_svg(steps, {k: [r.get(k) for r in records] for k in keys}, title=f"{name}: loss"))
    return [
        Section(
            "Instruction tuning from the base model itself",
            "The base model wrote these demonstrations: shown three Q:/A: pairs and an open 'Q:', it "
            "writes a question and answers it. A pair is kept when the question ends with '?', the "
            "answer has 1–12 words on one line and ends there (a blank line, a new 'Q:' or the end of text "
            "follows: it stopped), repeats no 3-word phrase and asks nothing, and the question is new (not "
            "a seed, not one of the held-out questions above, not a duplicate). An SFT adapter (LoRA) and a soft prompt were "
            "trained on the kept pairs as bare question → answer + end of text; their rows in the first "
            "table are the held-out questions asked without any wrapper.",
            table_html(["harvest", "count"], counts) + f"<ul>{examples}</ul>" + "".join(curves),
        )
    ]

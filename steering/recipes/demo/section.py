"""What every section of `steer demo` shares: the run's context, the section contract, the technique table.

A section is one module of `recipes/demo/` with an object that satisfies `DemoSection`: a name (shown
while it runs and, on the report, among the sections still running), the work it will do in the
progress bar's units, and `run`, which returns an outcome that renders itself as report sections.
`runner.SECTIONS` lists them in the order they run; adding a section is one module and one line there.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from steering.controls import Greedy
from steering.decode import Samples, generate
from steering.eval import Question, Summary, summarise
from steering.eval.report import Section
from steering.models import LanguageModel, load_model

Progress = Callable[[int], None]
# Rows decoded together in every section. 16 rows cost 0.56× the time of 8 on 2 cores (gemma-270m,
# the 48 questions × 48 tokens); bf16 results depend a little on the batch's shape, so a sample can
# differ from one drawn at another batch size (same seed): the demo's numbers are those at 16.
DEMO_BATCH_SIZE = 16


@dataclass(frozen=True)
class DemoScale:
    """How big a run is: the questions asked, the token budget per answer, and `--limit` (None: all)."""

    questions: int
    max_new_tokens: int
    limit: int | None = None


@dataclass
class DemoContext:
    """The model, the questions and the settings of one demo run, and what sections hand on.

    Attributes:
        techniques: the technique table (first table of the report). The prompting section fills it
            with the prompting techniques, the tuning section adds the tuned ones; the table shows
            what it holds when the page is written.
    """

    model: LanguageModel
    out_dir: Path
    questions: list[Question]
    limit: int | None = None
    max_new_tokens: int = 48
    seed: int = 0
    progress: Progress | None = None
    batch_size: int = DEMO_BATCH_SIZE
    techniques: list[TechniqueResult] = field(default_factory=list)
    float32_copy: LanguageModel | None = None
    owns_out: bool = False  # out_dir holds an earlier demo run's files (its mark): sections may replace them

    def section_dir(self, name: str) -> Path:
        """`out_dir/name` for a section's runs; what an earlier demo run left there is removed first.

        Training refuses a run folder that already holds a run, so without this a second `steer demo`
        into the same folder would stop at the first training section. Only a folder marked by an
        earlier demo run (`owns_out`) is cleared: files of anyone else are left, and training refuses them.
        """
        path = self.out_dir / name
        if self.owns_out and path.is_dir():
            shutil.rmtree(path)
        return path

    @property
    def prompts(self) -> list[str]:
        return [q.question for q in self.questions]

    @property
    def scale(self) -> DemoScale:
        return DemoScale(len(self.questions), self.max_new_tokens, self.limit)

    def train_model(self) -> LanguageModel:
        """One float32 copy of the model for every training run of the demo, loaded on first use."""
        if self.float32_copy is None:
            self.float32_copy = load_model(self.model.name, dtype="float32")
        return self.float32_copy


class SectionOutcome(Protocol):
    """What a section computed; renders itself as report sections (called again on every page write)."""

    def sections(self) -> list[Section]: ...


class DemoSection(Protocol):
    """One part of the demo.

    Attributes:
        name: shown in the progress lines and, on the report, among the sections still running.
        trains_base: whether `run` trains the model (uses `context.train_model()`); the runner frees
            the float32 copy once no later section needs it.
    """

    @property
    def name(self) -> str: ...

    @property
    def trains_base(self) -> bool: ...

    def work_units(self, scale: DemoScale) -> int:
        """The progress bar's units (token slots) that `run` reports through `context.progress`."""
        ...

    def run(self, context: DemoContext) -> SectionOutcome: ...


@dataclass(frozen=True)
class TechniqueResult:
    """One technique on the questions: sampled at temperature 1 and greedy, with their summaries."""

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


def evaluate_technique(context: DemoContext, name: str, controls: Sequence[object]) -> TechniqueResult:
    """Decode the questions under `controls` twice (sampled, then greedy) and summarise both."""
    answers = [q.answers for q in context.questions]
    kwargs = {
        "max_new_tokens": context.max_new_tokens,
        "seed": context.seed,
        "progress": context.progress,
        "batch_size": context.batch_size,
    }
    sampled = generate(context.model, context.prompts, controls=list(controls), **kwargs)  # type: ignore[arg-type]
    greedy = generate(context.model, context.prompts, controls=[*controls, Greedy()], **kwargs)  # type: ignore[arg-type]
    return TechniqueResult(name, sampled, greedy, summarise(sampled, answers), summarise(greedy, answers))


def technique_work_units(scale: DemoScale, techniques: int) -> int:
    """Token slots of `techniques` techniques: 2 decodings × questions × max_new_tokens each."""
    return techniques * 2 * scale.questions * scale.max_new_tokens

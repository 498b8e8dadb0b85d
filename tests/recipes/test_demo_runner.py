"""The demo's runner: a report after every section that names the ones still running (no model work)."""

from __future__ import annotations

from dataclasses import dataclass, field

from steering.eval.report import Section
from steering.recipes.demo import DemoContext, DemoScale, SectionEvent, demo_work_units, run_demo


@dataclass(frozen=True)
class Shown:
    title: str

    def sections(self) -> list[Section]:
        return [Section(self.title, f"what {self.title} found", "<p>done</p>")]


@dataclass
class Fake:
    name: str
    trains_base: bool = False
    pages: list[str] = field(default_factory=list)  # the report as it was when this section started

    def work_units(self, scale: DemoScale) -> int:
        return scale.questions

    def run(self, context: DemoContext) -> Shown:
        report = context.out_dir / "report.html"
        self.pages.append(report.read_text() if report.is_file() else "")
        if context.progress is not None:
            context.progress(len(context.questions))
        return Shown(self.name)


def test_the_report_is_written_after_every_section_and_names_what_is_still_running(tiny, tmp_path):
    first, second, third = Fake("First part"), Fake("Second part"), Fake("Third part")
    events: list[SectionEvent] = []
    ticks: list[int] = []
    result = run_demo(
        tiny,
        out_dir=tmp_path,
        limit=3,
        progress=ticks.append,
        on_section=events.append,
        sections=[first, second, third],
    )
    assert first.pages == [""]  # nothing is written before the first section ends
    after_first = second.pages[0]
    assert "what First part found" in after_first and "what Second part found" not in after_first
    assert "Second part" in after_first and "Third part" in after_first  # named as still running
    after_second = third.pages[0]
    assert "what Second part found" in after_second and "Third part" in after_second
    final = result.report.read_text()
    assert all(f"what {name} found" in final for name in ("First part", "Second part", "Third part"))
    assert [(e.index, e.total, e.seconds is None) for e in events] == [
        (1, 3, True), (1, 3, False), (2, 3, True), (2, 3, False), (3, 3, True), (3, 3, False),
    ]  # fmt: skip
    assert all(e.report == tmp_path / "report.html" for e in events)
    assert sum(ticks) == demo_work_units(3, 48, 3, sections=[first, second, third]) == 9


@dataclass
class Writes:
    """A section that leaves a run in its folder, as the training sections do."""

    name: str = "Writes a run"
    trains_base: bool = False
    found: list[bool] = field(default_factory=list)  # whether the folder held a run when the section started

    def work_units(self, scale: DemoScale) -> int:
        return 0

    def run(self, context: DemoContext) -> Shown:
        folder = context.section_dir("runs")
        self.found.append((folder / "run.txt").is_file())
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "run.txt").write_text("a run")
        return Shown(self.name)


def test_a_second_demo_into_the_same_folder_replaces_its_own_runs_and_nobody_elses(tiny, tmp_path):
    section = Writes()
    run_demo(tiny, out_dir=tmp_path / "demo", limit=1, sections=[section])
    run_demo(tiny, out_dir=tmp_path / "demo", limit=1, sections=[section])
    assert section.found == [False, False]  # the first run's folder was removed before the second ran
    # A folder no demo wrote keeps what it holds (training would refuse a run there, with a message).
    theirs = tmp_path / "theirs"
    (theirs / "runs").mkdir(parents=True)
    (theirs / "runs" / "run.txt").write_text("someone's run")
    other = Writes()
    run_demo(tiny, out_dir=theirs, limit=1, sections=[other])
    assert other.found == [True]

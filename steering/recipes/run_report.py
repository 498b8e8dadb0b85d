"""`steer report RUN`: a run's training curves as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

from steering.errors import InvalidArgument
from steering.eval.report import Section, curve_svg, table_html, write_report
from steering.paths import read_run_status
from steering.train import RunDir

# Metrics drawn together on one chart, when the run logged them.
CHARTS = (
    ("loss", ("loss", "eval_loss")),
    ("reward and return", ("reward", "return")),
    ("KL to the base (nats per sequence)", ("kl", "kl_k3")),
    ("accuracy", ("accuracy", "eval_accuracy")),
    ("learning rate", ("lr",)),
    ("tokens per second", ("tokens_per_s", "rollout_tokens_per_s")),
)


def run_report(run: str | Path, out: str | Path | None = None) -> Path:
    """Write RUN/report.html (or `out`) from RUN/metrics.jsonl and RUN/config.json."""
    directory = RunDir(run)
    records = directory.metrics()
    if not records:
        raise InvalidArgument(
            f"{directory.path} has no metrics.jsonl (or it is empty)",
            received=str(directory.path),
            fix="point at a run directory written by `steer train …`",
        )
    config = directory.saved_config(fix="restore it from the run, or delete it to report the metrics alone")
    steps = [float(r.get("step", i + 1)) for i, r in enumerate(records)]
    sections = []
    unfinished = unfinished_note(directory.path, records)
    if unfinished:
        sections.append(Section("unfinished run", unfinished, ""))
    for title, keys in CHARTS:
        present = [k for k in keys if any(k in r for r in records)]
        if present:
            chart = curve_svg(steps, {k: [r.get(k) for r in records] for k in present}, title=title)
            sections.append(Section(title, f"per optimizer step: {', '.join(present)}", chart))
    last = records[-1]
    summary = [[key, value] for key, value in last.items() if isinstance(value, (int, float))]
    sections.append(
        Section("last step", "the last line of metrics.jsonl", table_html(["metric", "value"], summary))
    )
    sections.append(
        Section(
            "config", "the resolved config of the run", table_html(["key", "value"], sorted(config.items()))
        )
    )
    state = f"unfinished at step {last_step(records)}" if unfinished else "finished"
    meta = f"{directory.path} · {len(records)} steps logged · {state}"
    return write_report(
        Path(out) if out else directory.path / "report.html",
        title="training run",
        meta=meta,
        sections=sections,
    )


def last_step(records: list[dict]) -> int:
    """The last optimizer step that metrics.jsonl recorded."""
    steps = [r["step"] for r in records if isinstance(r.get("step"), int)]
    return max(steps, default=0)


def unfinished_note(run: Path, records: list[dict]) -> str | None:
    """What the page says about a run whose status.json is not "finished" (None for a finished run).

    A run without status.json (written before runs had one) counts as finished.
    """
    status = read_run_status(run)
    if status is None or status.get("status") == "finished":
        return None
    how = {
        "running": "it is still training, or it was killed",
        "interrupted": "it was interrupted (Ctrl-C)",
        "failed": f"it failed ({status.get('error', 'an error')})",
    }.get(str(status.get("status")), f"its status is {status.get('status')!r}")
    return (
        f"This run is unfinished at step {last_step(records)}: {how}. The curves stop there; "
        "finish it with the same `steer train …` command and --resume."
    )

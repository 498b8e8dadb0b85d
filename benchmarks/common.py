"""Helpers shared by the benchmark scripts: machine facts, timing, and BENCHMARKS.md sections."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers

# The prompts every throughput benchmark decodes (batch 1 takes the first).
PROMPTS = [
    "Once upon a time, in a small village by the sea,",
    "The history of the printing press begins",
    "Here is a recipe for a simple tomato soup:",
    "The best way to learn a new language is",
    "In the year 2050, cities will",
    "My favourite thing about autumn is",
    "The old lighthouse keeper looked at the storm and",
    "Scientists announced today that",
]

HEADER = "# Benchmarks\n\nMeasured, not hoped for. Each section is written by the script named in it.\n\n"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, object]:
    return {
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def machine_line(facts: dict[str, object]) -> str:
    return (
        f"{facts['threads']} CPU threads ({facts['cpu']}), torch {facts['torch']}, "
        f"transformers {facts['transformers']}, Python {facts['python']}"
    )


def timed(run: Callable[[], int]) -> tuple[float, float]:
    """(tokens/s, seconds) of one call of `run`, which returns the number of tokens it generated."""
    started = time.perf_counter()
    tokens = run()
    elapsed = time.perf_counter() - started
    return tokens / elapsed, elapsed


def median_rate(run: Callable[[], int], repeats: int) -> tuple[float, float]:
    """Median tokens/s and median seconds over `repeats` calls."""
    results = [timed(run) for _ in range(repeats)]
    return statistics.median(r for r, _ in results), statistics.median(s for _, s in results)


def write_section(path: Path, name: str, lines: list[str]) -> None:
    """Replace (or append) the `<!-- bench:NAME:begin/end -->` section of a markdown file."""
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    section = "\n".join([begin, *lines, end])
    text = path.read_text() if path.exists() else HEADER
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)

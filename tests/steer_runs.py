"""Running `steer` as a user does, for the CLI tests: in this process through `main`, or as a subprocess."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from steering.cli.main import main


def run_steer(monkeypatch, capsys, args: list[str], stdin: bytes | None = None) -> tuple[int, str, str]:
    """`steer ARGS` in-process (through `main`, as the console script runs it): exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["steer", *args])
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    code: int | str | None = 0
    try:
        main()
    except SystemExit as done:
        code = done.code
    captured = capsys.readouterr()
    return int(code or 0), captured.out, captured.err


def steer_process(*args: str) -> subprocess.CompletedProcess:
    """`python -m steering ARGS` in a subprocess (offline, empty stdin, 600 s at most)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "steering", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        input="",
    )

"""Reading JSONL files with errors that name the file and line: one helper for every reader."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from steering.errors import InputFormatError


def read_jsonl(path: str | Path, *, what: str, example: str) -> list[tuple[int, str, Any]]:
    """(line number, raw line, parsed value) for each non-blank line of a JSONL file.

    Args:
        path: the file, or "-" for standard input.
        what: what the file holds, for messages ("input file", "demonstrations file").
        example: one valid line, shown in the fix of a parse error.

    Raises:
        InputFormatError: the file is missing, or a line is not valid JSON (file:line and column).
    """
    if str(path) == "-":
        name, lines = "<stdin>", sys.stdin.read().splitlines()
    else:
        file = Path(path)
        if not file.is_file():
            raise InputFormatError(
                f"the {what} {path} does not exist", received=str(path), fix="check the path"
            )
        name, lines = str(path), file.read_text(encoding="utf-8").splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, line, json.loads(line)))
        except json.JSONDecodeError as error:
            raise InputFormatError(
                f"{name}:{number}: not valid JSON ({error.msg} at column {error.colno})",
                received=line[:120],
                fix=f"write one object per line, e.g. {example}",
            ) from error
    return rows

"""Reading prompts for the CLI: --prompt, --input JSONL (or - for stdin), or piped stdin."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from steering.errors import InputFormatError, InvalidArgument


def read_jsonl_prompts(path: str) -> list[str]:
    """Prompts from JSONL: one `{"prompt": "..."}` object per line; `-` reads stdin."""
    if path == "-":
        lines = sys.stdin.read().splitlines()
        name = "<stdin>"
    else:
        file = Path(path)
        if not file.is_file():
            raise InputFormatError(
                f"the input file {path} does not exist", received=path, fix="check the path"
            )
        lines = file.read_text(encoding="utf-8").splitlines()
        name = path
    prompts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputFormatError(
                f"{name}:{number}: not valid JSON ({error.msg} at column {error.colno})",
                received=line[:120],
                fix='write one object per line, e.g. {"prompt": "Once upon a time"}',
            ) from error
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise InputFormatError(
                f"{name}:{number}: each line needs a string field 'prompt'",
                received=line[:120],
                fix='write {"prompt": "…"}',
            )
        prompts.append(row["prompt"])
    if not prompts:
        raise InputFormatError(
            f"{name} contains no prompts", received="no non-empty lines", fix="add prompts"
        )
    return prompts


def collect_prompts(prompts: list[str] | None, input_path: str | None) -> list[str]:
    if prompts and input_path:
        raise InvalidArgument(
            "give prompts with --prompt or --input, not both",
            received=f"{len(prompts)} --prompt and --input {input_path}",
            fix="use one of them",
        )
    if prompts:
        return prompts
    if input_path:
        return read_jsonl_prompts(input_path)
    if not sys.stdin.isatty():
        text = sys.stdin.read()
        if text.strip():
            return [text.rstrip("\n")]
    raise InvalidArgument(
        "no prompt given",
        received="no --prompt, no --input, nothing on stdin",
        fix='use --prompt "…", --input prompts.jsonl, or pipe text into steer generate',
    )

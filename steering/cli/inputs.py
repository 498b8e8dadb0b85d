"""Reading prompts for the CLI: --prompt, --input JSONL (or - for stdin), or piped stdin."""

from __future__ import annotations

import sys

from steering.errors import InputFormatError, InvalidArgument
from steering.jsonl import check_text, read_jsonl, read_stdin


def read_jsonl_prompts(path: str) -> list[str]:
    """Prompts from JSONL: one `{"prompt": "..."}` object per line; `-` reads stdin."""
    name = "<stdin>" if path == "-" else path
    prompts = []
    for number, line, row in read_jsonl(path, what="input file", example='{"prompt": "Once upon a time"}'):
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
        # Undecodable bytes on the command line arrive as lone surrogates: refuse them here, not in the tokenizer.
        return [check_text(text, name=repr(text), what="--prompt") for text in prompts]
    if input_path:
        return read_jsonl_prompts(input_path)
    if not sys.stdin.isatty():
        text = read_stdin(what="prompt piped on stdin")
        if text.strip():
            return [text.rstrip("\n")]
    raise InvalidArgument(
        "no prompt given",
        received="no --prompt, no --input, nothing on stdin",
        fix='use --prompt "…", --input prompts.jsonl, or pipe text into steer generate',
    )

"""Reading user files (text, JSONL, stdin) with errors that name the file, line and byte: one helper
for every reader.

User text is decoded as strict UTF-8 (a leading byte-order mark is dropped, as editors on Windows
write one); a file in another encoding is refused with the line and byte offset of the first bad byte,
never decoded into mojibake.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from steering.errors import InputFormatError

STDIN = "<stdin>"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def decode_utf8(data: bytes, *, name: str, what: str) -> str:
    """`data` as UTF-8 text (a UTF-8 byte-order mark dropped).

    Raises:
        InputFormatError: the bytes are not UTF-8: names the file, the line and the byte offset.
    """
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as error:
        start, end = error.start + bom, error.end + bom  # offsets in the file, BOM included
        line = data.count(b"\n", 0, start) + 1
        hint = " (it starts with a UTF-16 byte-order mark)" if data.startswith(_UTF16_BOMS) else ""
        raise InputFormatError(
            f"{name}:{line}: the {what} is not valid UTF-8{hint}: byte {start} ({error.reason})",
            received=repr(data[max(0, start - 16) : end + 16]),
            fix=f"save {name} as UTF-8 (e.g. `iconv -f latin1 -t utf-8 OLD > NEW`)",
        ) from None


def check_text(text: str, *, name: str, what: str) -> str:
    """Refuse text that cannot be encoded as UTF-8 (lone surrogates, e.g. undecodable command-line bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InputFormatError(
            f"the {what} {name} holds characters that are not valid Unicode text "
            f"(an undecodable byte or a lone surrogate at character {error.start})",
            received=repr(text[max(0, error.start - 16) : error.end + 16]),
            fix="pass UTF-8 text (a \\ud800-style escape in JSON must be part of a surrogate pair)",
        ) from None
    return text


def read_stdin(*, what: str) -> str:
    """All of standard input as UTF-8 text (read as bytes, so a bad byte is reported, not replaced)."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return decode_utf8(buffer.read(), name=STDIN, what=what)
    return check_text(sys.stdin.read(), name=STDIN, what=what)


def read_text(path: str | Path, *, what: str) -> str:
    """A user's text file as UTF-8 (`-` reads standard input).

    Args:
        path: the file.
        what: what the file holds, for messages ("word list", "--quote-from file").

    Raises:
        InputFormatError: the file is missing, is a directory, cannot be read or is not UTF-8.
    """
    if str(path) == "-":
        return read_stdin(what=what)
    file = Path(path)
    if not file.is_file():
        problem = "is a directory" if file.is_dir() else "does not exist"
        raise InputFormatError(
            f"the {what} {path} {problem}",
            received=str(path),
            fix="check the path" if not file.is_dir() else "pass a file, not a directory",
        )
    try:
        data = file.read_bytes()
    except OSError as error:
        raise InputFormatError(
            f"cannot read the {what} {path} ({error.strerror or error})",
            received=str(path),
            fix="check the file's permissions",
        ) from None
    return decode_utf8(data, name=str(path), what=what)


def read_jsonl(path: str | Path, *, what: str, example: str) -> list[tuple[int, str, Any]]:
    """(line number, raw line, parsed value) for each non-blank line of a JSONL file.

    Args:
        path: the file, or "-" for standard input.
        what: what the file holds, for messages ("input file", "demonstrations file").
        example: one valid line, shown in the fix of a parse error.

    Raises:
        InputFormatError: the file is missing or not UTF-8, or a line is not valid JSON (file:line and
            column) or holds a string that is not valid Unicode (a lone surrogate escape).
    """
    name = STDIN if str(path) == "-" else str(path)
    lines = read_text(path, what=what).splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            whole_array = (number == 1 and line.strip() in ("[", "{")) or line.lstrip().startswith("[{")
            fix = (
                f"this looks like one JSON document; JSONL needs one object per line, e.g. {example}"
                if whole_array
                else f"write one object per line, e.g. {example}"
            )
            raise InputFormatError(
                f"{name}:{number}: not valid JSON ({error.msg} at column {error.colno})",
                received=line[:120],
                fix=fix,
            ) from error
        check_text(json.dumps(value, ensure_ascii=False), name=f"{name}:{number}", what=what)
        rows.append((number, line, value))
    return rows

"""Turning `steer generate` options into controls: pools, tweaks, grammars, vectors, PPLM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steering.callables import load_callable
from steering.errors import InputFormatError, InvalidArgument, SteeringError
from steering.jsonl import read_text


def tweak_and_pool_controls(*, choices: str | None, bias: list[str] | None, bow: str | None) -> list[object]:
    """--bias, --bow and --choices, in that order."""
    from steering.controls import BagOfWords, Choices, LogitBias, load_words

    controls: list[object] = []
    if bias:
        table: dict[str | int, float] = {}
        for item in bias:
            word, sep, value = item.rpartition("=")
            try:
                strength = float(value)
            except ValueError:
                word = ""
            if not sep or not word:
                raise SteeringError(
                    "--bias takes WORD=STRENGTH",
                    received=item,
                    fix="write e.g. --bias Paris=+4 --bias London=-2",
                ) from None
            if word in table:  # the last one would silently win
                raise InvalidArgument(
                    f"--bias gives the word {word!r} twice",
                    received=[b for b in bias if b.rpartition("=")[0] == word],
                    fix="give each word once, with the strength you want",
                )
            table[word] = strength
        controls.append(LogitBias(table))
    if bow:
        path, bow_strength = _required_spec(bow, "--bow takes FILE:STRENGTH", "--bow words.txt:3")
        controls.append(BagOfWords(load_words(path), bow_strength))
    if choices is not None:
        controls.append(Choices(parse_labels(choices, "--choices")))
    return controls


def unescape(text: str) -> str:
    """Backslash escapes typed on a command line (\\n, \\t, \\r, \\\\, \\xHH, \\uXXXX) → the characters.

    Other text, non-ASCII included, is kept as typed (`unicode_escape` would turn "é" into "Ã©" and
    fail on a lone backslash).
    """
    import re

    simple = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        return chr(int(code[1:], 16)) if code[0] in "xu" else simple[code]

    return re.sub(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|[ntr\\])", one, text)


def parse_labels(text: str, flag: str) -> list[str]:
    """`--choices` / `--labels`: comma-separated labels, each stripped and given one leading space.

    An empty item ("a,,b", a trailing comma) and two items that are the same label are refused with
    the list received: dropping or merging them silently would change the question asked.
    """
    items = text.split(",")
    example = f'{flag} "positive,negative"'
    empty = [index + 1 for index, item in enumerate(items) if not item.strip()]
    if empty:
        where = ", ".join(str(i) for i in empty)
        raise InvalidArgument(
            f"{flag} has an empty label (item {where} of {len(items)}: two commas in a row, "
            "or a comma at the start or end)",
            received=repr(text),
            fix=f"remove the extra comma, e.g. {example} (a label cannot contain a comma)",
        )
    labels = [" " + item.strip() for item in items]
    repeated = sorted({label.strip() for label in labels if labels.count(label) > 1})
    if repeated:
        raise InvalidArgument(
            f"{flag} lists the same label more than once (labels are compared without surrounding spaces)",
            received=f"{text!r}: repeated {repeated}",
            fix="list each label once",
        )
    return labels


def grammar_controls(
    *,
    regex: str | None,
    json_schema: Path | None,
    grammar: Path | None,
    strict: bool = True,
    coerce_one_of: bool = False,
) -> list[object]:
    """--regex, --json-schema (with --json-strict/--json-open and --coerce-one-of) or --grammar."""
    from steering.controls import JsonSchema, Lark, Regex

    given = [x for x in (regex, json_schema, grammar) if x is not None]
    if len(given) > 1:
        raise SteeringError(
            "--regex, --json-schema and --grammar each define the whole output; give only one",
            received=f"{len(given)} of them",
            fix="combine them into one Lark grammar with --grammar",
        )
    if regex is not None:
        return [Regex(regex)]
    if json_schema is not None:
        read_text(json_schema, what="--json-schema file")  # missing, a directory, not UTF-8: said here
        return [JsonSchema(json_schema, strict=strict, coerce_one_of=coerce_one_of)]
    if grammar is not None:
        return [Lark(read_text(grammar, what="--grammar file"))]
    return []


def load_vector(spec: str) -> object:
    from steering.controls import SteeringVector

    path, strength = _required_spec(spec, "--steer takes VECTOR:ALPHA", "--steer happy.safetensors:2")
    return SteeringVector.load(path, alpha=strength)


def _parse_spec(spec: str) -> tuple[str, float | None]:
    """FILE:NUMBER → (FILE, NUMBER); anything else → (spec, None)."""
    path, sep, number = spec.rpartition(":")
    if sep and path:
        try:
            return path, float(number)
        except ValueError:
            pass
    return spec, None


def _required_spec(spec: str, what: str, example: str) -> tuple[str, float]:
    """FILE:NUMBER, or an error saying `what` the flag takes."""
    path, number = _parse_spec(spec)
    if number is None:
        raise SteeringError(what, received=spec, fix=f"write e.g. {example}")
    return path, number


def _split_spec(spec: str, flag: str, example: str) -> tuple[str, float | None]:
    """FILE or FILE:NUMBER → (FILE, NUMBER or None)."""
    path, number = _parse_spec(spec)
    if number is not None:
        return path, number
    if not spec.strip():
        raise SteeringError(f"{flag} needs a file", received=repr(spec), fix=f"write e.g. {flag} {example}")
    head, _, tail = spec.rpartition(":")
    if head and Path(head).is_file() and not Path(spec).exists():  # FILE:NOT-A-NUMBER
        raise SteeringError(
            f"{flag} takes FILE or FILE:NUMBER, and {tail!r} is not a number",
            received=spec,
            fix=f"write e.g. {flag} {example}",
        )
    return spec, None


def text_controls(
    *,
    quote_from: Path | None,
    forced_span: Path | None,
    trigger: str,
    pplm: str | None,
) -> list[object]:
    """--quote-from, --forced-span (with --trigger) and --pplm FILE[:STEP_SIZE]."""
    from steering.controls import PPLM, ForcedSpan, QuoteFromSource, load_words

    controls: list[object] = []
    if quote_from is not None:
        controls.append(QuoteFromSource(_read_text(quote_from, "--quote-from")))
    if forced_span is not None:
        allowed = [line for line in _read_text(forced_span, "--forced-span").splitlines() if line.strip()]
        if not allowed:
            raise InputFormatError(
                f"the --forced-span file {forced_span} has no spans (only blank lines)",
                received=str(forced_span),
                fix="write one allowed span per line",
            )
        controls.append(ForcedSpan(trigger, allowed))
    if pplm is not None:
        path, step_size = _split_spec(pplm, "--pplm", "positive.txt:0.03")
        words = load_words(path)
        controls.append(PPLM(words) if step_size is None else PPLM(words, step_size=step_size))
    return controls


def _read_text(path: Path, flag: str) -> str:
    return read_text(path, what=f"{flag} file")


def conditions(
    *,
    ends_with: str | None,
    starts_with: str | None,
    contains: str | None,
    regex: str | None,
    reward: str | None,
    fixed: list[str] | None = None,
) -> list[Any]:
    """`steer sample`'s --ends-with, --starts-with, --contains, --regex, --fixed and --reward."""
    from steering import condition

    found: list[Any] = []
    if fixed:
        found.append(condition.fixed_tokens(fixed_spans(fixed)))
    if ends_with:
        found.append(condition.ends_with(ends_with))
    if starts_with:
        found.append(condition.starts_with(starts_with))
    if contains:
        found.append(condition.contains(contains))
    if regex:
        found.append(condition.matches(regex))
    if reward:
        found.append(load_callable(reward, "--reward"))
    if not found:
        raise SteeringError(
            "no condition given",
            received="none of --ends-with, --starts-with, --contains, --regex, --fixed, --reward",
            fix='add one, e.g. --ends-with "happily ever after."',
        )
    return found


def fixed_spans(values: list[str]) -> dict[int, str]:
    """--fixed POSITION=TEXT (repeatable) → {position: text}."""
    spans: dict[int, str] = {}
    for value in values:
        position, sep, text = value.partition("=")
        if not sep or not position.strip().isdigit() or not text:
            raise SteeringError(
                "--fixed takes POSITION=TEXT (position of the generated token, from 0)",
                received=value,
                fix='write e.g. --fixed "4= dragon"',
            )
        spans[int(position)] = text
    return spans

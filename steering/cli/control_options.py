"""Turning `steer generate` options into controls: pools, tweaks, grammars, vectors, PPLM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steering.callables import load_callable
from steering.errors import SteeringError


def tweak_and_pool_controls(*, choices: str | None, bias: list[str] | None, bow: str | None) -> list[object]:
    """--bias, --bow and --choices, in that order."""
    from steering.controls import BagOfWords, Choices, LogitBias, load_words

    controls: list[object] = []
    if bias:
        table: dict[str | int, float] = {}
        for item in bias:
            word, sep, value = item.rpartition("=")
            try:
                table[word] = float(value)
            except ValueError:
                word = ""
            if not sep or not word:
                raise SteeringError(
                    "--bias takes WORD=STRENGTH",
                    received=item,
                    fix="write e.g. --bias Paris=+4 --bias London=-2",
                ) from None
        controls.append(LogitBias(table))
    if bow:
        path, bow_strength = _required_spec(bow, "--bow takes FILE:STRENGTH", "--bow words.txt:3")
        controls.append(BagOfWords(load_words(path), bow_strength))
    if choices:
        labels = [" " + label.strip() for label in choices.split(",") if label.strip()]
        controls.append(Choices(labels))
    return controls


def grammar_controls(*, regex: str | None, json_schema: Path | None, grammar: Path | None) -> list[object]:
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
        if not json_schema.is_file():
            raise SteeringError(
                f"the schema file {json_schema} does not exist",
                received=str(json_schema),
                fix="check the path",
            )
        return [JsonSchema(json_schema)]
    if grammar is not None:
        if not grammar.is_file():
            raise SteeringError(
                f"the grammar file {grammar} does not exist", received=str(grammar), fix="check the path"
            )
        return [Lark(grammar.read_text(encoding="utf-8"))]
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
        controls.append(ForcedSpan(trigger, allowed))
    if pplm is not None:
        path, step_size = _split_spec(pplm, "--pplm", "positive.txt:0.03")
        words = load_words(path)
        controls.append(PPLM(words) if step_size is None else PPLM(words, step_size=step_size))
    return controls


def _read_text(path: Path, flag: str) -> str:
    if not path.is_file():
        raise SteeringError(
            f"the file given to {flag} does not exist", received=str(path), fix="check the path"
        )
    return path.read_text(encoding="utf-8")


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

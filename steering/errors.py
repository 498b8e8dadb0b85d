"""Errors that tell the user what was wrong, what we received, and how to fix it."""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Iterable


class SteeringError(Exception):
    """Base class of every error this library raises on purpose.

    The message is one paragraph: what was wrong, what was received, how to fix it.
    """

    def __init__(self, what: str, *, received: object = None, fix: str | None = None) -> None:
        what = what.rstrip(".")
        # Capitalise a first word of ASCII letters only: "β must be positive" keeps its β, and a file
        # name or option ("words.txt is not …", "max_new_tokens must …") is not changed.
        word = what.split(" ", 1)[0].rstrip(",;")
        first = what[:1].upper() if word.isascii() and word.isalpha() else what[:1]
        parts = [first + what[1:] + ("" if what.endswith("?") else ".")]
        if received is not None:
            text = received if isinstance(received, str) else repr(received)
            if len(text) > 300:
                text = text[:300] + "…"
            parts.append(f"Received: {text}.")
        if fix:
            fix = fix.rstrip(".")
            parts.append("To fix: " + fix[:1].lower() + fix[1:] + ".")
        super().__init__(" ".join(parts))
        self.what = what
        self.received = received
        self.fix = fix


class InvalidArgument(SteeringError):
    """An argument is outside its allowed range or of the wrong shape."""


class ModelNotFound(SteeringError):
    """The model name is not in the registry and is not a path that exists."""


class ModelPackageMissing(SteeringError):
    """A bundled model's Python package is not installed."""


class ModelLoadError(SteeringError):
    """A model file exists but cannot be read (not a GGUF, corrupt, unsupported)."""


class InputFormatError(SteeringError):
    """A user file (JSONL, template) is malformed; the message names the line."""


class TemplateError(SteeringError):
    """A prompt template has a missing or unknown field."""


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The closest of `choices` to `name`, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' Did you mean "x"?' or '' when nothing is close."""
    match = closest(name, choices)
    return f' Did you mean "{match}"?' if match else ""


SEED_LIMIT = 2**63


def check_seed(seed: object, *, name: str = "seed") -> int:
    """`seed` as an int in [0, 2**63), or an InvalidArgument that says what to pass.

    Every public function that takes a seed checks it here, so `seed="x"`, `1.7`, `True` or `None`
    never reach a `torch.Generator`. None is refused rather than read as "random": the same seed gives
    the same samples, and a run that cannot be repeated should be chosen on purpose (pass
    `random.randrange(2**63)` and keep it). Integer types other than int (numpy's) are accepted.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        kind = "None" if seed is None else f"{seed!r} ({type(seed).__name__})"
        raise InvalidArgument(
            f"{name} must be an integer",
            received=kind,
            fix=f"pass e.g. {name}=0 (the same {name} gives the same samples); for a different draw on "
            f"each run pass {name}=random.randrange(2**63) and keep the number to repeat it",
        )
    value = int(seed)
    if not 0 <= value < SEED_LIMIT:
        raise InvalidArgument(
            f"{name} must be between 0 and 2**63 - 1", received=value, fix=f"pass e.g. {name}=0"
        )
    return value

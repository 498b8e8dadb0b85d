"""What an annotator's POST may hold, checked before anything touches the database.

The annotation app (`steering.feedback.app`) reads every answer as a small JSON object. This module turns
the raw body into a typed answer or a `BadAnswer` carrying the HTTP status and a message a person can act
on: 413 too large, 415 not JSON, 400 not parseable, 422 the wrong fields. Nothing here does I/O, so each
rule is tested without a server, and a rejected POST can never have written a row.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

KINDS = ("compare", "rank", "rate", "critique")
CHOICES = ("left", "right", "tie", "both_bad")  # as shown on the page; the app maps left/right to a/b
SCALE = range(1, 8)  # ratings are 1–7
MAX_TEXT = 20_000  # characters in one reason, critique or revision
MAX_SECONDS = 24 * 3600.0  # time spent on one answer is clamped here: a tab left open overnight is not data
REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


class BadAnswer(Exception):
    """A POST the app refuses: `status` is the HTTP code, the message says what to send instead."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Answer:
    """One answer as the page sent it. `fields` holds the kind's own values (choice, order, ratings, …)."""

    kind: str
    item_id: int
    request_id: str
    seconds: float
    fields: dict[str, Any]


def parse_json_body(body: bytes, content_type: str) -> dict[str, Any]:
    """The body as a JSON object, or BadAnswer 415 (not JSON) / 400 (not parseable, not an object)."""
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise BadAnswer(415, f"send the answer as application/json (received {content_type or 'no type'})")
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadAnswer(400, f"the body is not valid UTF-8 JSON: {error}") from None
    if not isinstance(value, dict):
        raise BadAnswer(400, f"the body must be a JSON object, not {type(value).__name__}")
    return value


def whole_number(payload: dict[str, Any], key: str) -> int:
    """payload[key] as an int ≥ 1 (JSON booleans are not numbers here), or BadAnswer 422."""
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadAnswer(422, f"{key} must be a positive whole number, received {value!r}")
    return value


def text_field(payload: dict[str, Any], key: str, *, required: bool) -> str:
    """payload[key] as a string of at most MAX_TEXT characters ('' when optional and absent)."""
    value = payload.get(key, None if required else "")
    if not isinstance(value, str):
        raise BadAnswer(422, f"{key} must be a string, received {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise BadAnswer(422, f"{key} is {len(value)} characters long; the most is {MAX_TEXT}")
    if required and not value.strip():
        raise BadAnswer(422, f"{key} must not be empty")
    return value


def parse_answer(kind: str, payload: dict[str, Any]) -> Answer:
    """Check an answer of `kind` (one of KINDS); the item's own checks (ids in it) come later."""
    if kind not in KINDS:
        raise BadAnswer(404, f"no task called {kind!r}; the tasks are {', '.join(KINDS)}")
    request_id = payload.get("request_id")
    if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
        raise BadAnswer(422, "request_id must be the id the page was rendered with (8–64 of A-Z a-z 0-9 _ -)")
    seconds = payload.get("seconds", 0.0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        raise BadAnswer(422, f"seconds must be a number, received {seconds!r}")
    if seconds < 0:
        raise BadAnswer(422, f"seconds must not be negative, received {seconds}")
    fields: dict[str, Any]
    if kind == "compare":
        choice = payload.get("choice")
        if choice not in CHOICES:
            raise BadAnswer(422, f"choice must be one of {', '.join(CHOICES)}, received {choice!r}")
        fields = {"choice": choice, "reason": text_field(payload, "reason", required=False)}
    elif kind == "rank":
        order = payload.get("order")
        if not isinstance(order, list) or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in order
        ):
            raise BadAnswer(422, "order must be a list of response ids, best first")
        fields = {"order": order}
    elif kind == "rate":
        value = payload.get("value")
        if isinstance(value, bool) or not isinstance(value, int) or value not in SCALE:
            raise BadAnswer(422, f"value must be a whole number 1–7, received {value!r}")
        fields = {"value": value}
    else:
        fields = {
            "critique": text_field(payload, "critique", required=True),
            "revision": text_field(payload, "revision", required=False),
        }
    return Answer(
        kind=kind,
        item_id=whole_number(payload, "item_id"),
        request_id=request_id,
        seconds=min(float(seconds), MAX_SECONDS),
        fields=fields,
    )


def check_order(order: Sequence[int], response_ids: Sequence[int]) -> None:
    """A ranking must name each of the item's responses exactly once."""
    if sorted(order) != sorted(response_ids):
        raise BadAnswer(
            422, f"order must list each of the responses {sorted(response_ids)} once, received {list(order)}"
        )

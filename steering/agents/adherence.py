"""Mission cues: what a turn true to its speaker's mission usually says, checked by code.

A 270M judge rates every turn of every mission about the same (BENCHMARKS.md, "Agents"): its adherence
ratings cannot tell a reflection round that helped from one that did not. Where a mission has
observable marks — a safety officer names the risk or points to help, a fact-checker gives a verdict,
a tutor checks the learner is following — an agent can carry them as **cues**: short phrases, any one
of which in a turn counts as the mission showing. The cue rate of an agent's turns is a coarse,
transparent proxy, reported beside the judge's ratings and never mixed into them; reflection ranks an
agent's turns by (cue present, judge rating), so it trains on turns that show the mission first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from steering.errors import InvalidArgument


def check_cues(cues: Sequence[str]) -> tuple[str, ...]:
    """The cues, stripped; each must be a non-empty string of one line."""
    if isinstance(cues, str):
        raise InvalidArgument(
            "cues are a list of phrases, not one string",
            received=repr(cues)[:80],
            fix='use e.g. ["see a doctor"]',
        )
    out = []
    for cue in cues:
        if not isinstance(cue, str) or not cue.strip() or "\n" in cue:
            raise InvalidArgument(
                "each cue must be a non-empty phrase on one line",
                received=repr(cue)[:80],
                fix='use e.g. ["see a doctor", "not a diagnosis"]',
            )
        out.append(cue.strip())
    return tuple(out)


def shows_cue(text: str, cues: Sequence[str]) -> bool | None:
    """Whether `text` contains one of `cues` (case-insensitive, whole words); None when there are no cues."""
    if not cues:
        return None
    lowered = text.lower()
    return any(re.search(rf"(?<!\w){re.escape(cue.lower())}(?!\w)", lowered) for cue in cues)

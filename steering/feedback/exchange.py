"""Feedback in and out of the store, in the formats people already use.

Export (JSONL, written atomically):
- `preferences`: TRL's `{"prompt", "chosen", "rejected"}` rows from comparisons (ties and "both bad"
  skipped and counted), plus `"p_chosen"`, P(chosen ≻ rejected), where the comparison carries a judge's
  soft label (people's hard labels leave it out: `steering.train.data` reads a missing one as 1);
- `openai`: OpenAI's preference fine-tuning rows `{"input": {"messages"}, "preferred_output",
  "non_preferred_output"}` from the same comparisons;
- `rankings`: `{"prompt", "completions", "ranking"}` (indices best first), the shape of `steering.train.data`;
- `ratings`: `{"prompt", "completion", "rating"}`, the mean of the selected annotators' ratings on one rubric;
- `sft`: `{"prompt", "completion"}` rows from human-written revisions.
Filters: annotator family (human, judge, imported or all), rubric, and a minimum agreement m: a pair (or a
ranking) is exported once, and only when at least m of the selected annotators gave the same answer and
more gave it than any other answer. Then the hard votes decide which answer is chosen and `p_chosen` is
the mean P(chosen ≻ rejected) of the pooled comparisons that carry a soft label (left out when none does).

Import (each source gets an annotator of kind `imported:<source>`; a row already imported is skipped, so
importing the same file twice changes nothing):
- `hh`: Anthropic HH-RLHF transcripts `{"chosen", "rejected"}`, each "\\n\\nHuman: …\\n\\nAssistant: …";
  the shared prompt is everything up to the last "\\n\\nAssistant:", the answers are what follows it;
- `ultrafeedback`: openbmb/UltraFeedback rows `{"instruction", "completions": [{"model", "response",
  "annotations": {aspect: {"Rating": "1"…"5" or "N/A", "Rationale"}}, "overall_score": 1…10}]}`: each
  aspect and the overall score become ratings on the store's 1–7 scale (linearly: 1 ↦ 1, top ↦ 7);
- `openai`: OpenAI preference JSONL (`input.messages`, `preferred_output`, `non_preferred_output`); the
  messages are rendered as in `steering.train.data` ("User: …\\nAssistant:") and kept in the prompt's meta.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steering.errors import InputFormatError, InvalidArgument
from steering.feedback.store import Annotator, Comparison, FeedbackStore
from steering.jsonl import read_jsonl
from steering.paths import atomic_write_text

EXPORT_SHAPES = ("preferences", "openai", "rankings", "ratings", "sft")
IMPORT_SOURCES = ("hh", "ultrafeedback", "openai")
ANNOTATOR_FILTERS = ("all", "human", "judge", "imported")
HH_ASSISTANT = "\n\nAssistant:"
HH_HUMAN = "\n\nHuman:"
# UltraFeedback's scales: fine-grained aspects 1–5, the critique's overall score 1–10.
ULTRAFEEDBACK_ASPECT_SCALE = (1.0, 5.0)
ULTRAFEEDBACK_OVERALL_SCALE = (1.0, 10.0)


@dataclass
class ExportReport:
    """What an export wrote and what it left out (and why)."""

    shape: str
    written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass
class ImportReport:
    """What an import stored and what it skipped (and why)."""

    source: str
    rows: int = 0
    prompts: int = 0
    responses: int = 0
    answers: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


# ----------------------------------------------------------------------------------------------- export
def export_feedback(
    store: FeedbackStore,
    shape: str,
    out: str | Path,
    *,
    annotators: str = "all",
    rubric: str | None = None,
    min_agreement: int | None = None,
    soft_labels: bool = True,
) -> ExportReport:
    """Write the store's answers as a JSONL file of `shape` (see the module docstring) to `out`, atomically.

    `soft_labels=False` leaves `p_chosen` out of preference rows: hard labels only, as people give them.

    Raises:
        InvalidArgument: unknown shape or filter, min_agreement < 1, several rubrics for a ratings export
            without `rubric`, or nothing to export (an empty training file is never written).
    """
    if shape not in EXPORT_SHAPES:
        raise InvalidArgument(
            f"unknown export shape {shape!r}", received=shape, fix="use " + ", ".join(EXPORT_SHAPES)
        )
    if annotators not in ANNOTATOR_FILTERS:
        raise InvalidArgument(
            f"unknown annotator filter {annotators!r}",
            received=annotators,
            fix="use " + ", ".join(ANNOTATOR_FILTERS),
        )
    if min_agreement is not None and (isinstance(min_agreement, bool) or min_agreement < 1):
        raise InvalidArgument("min_agreement must be a positive int", received=min_agreement)
    report = ExportReport(shape)
    selected = _annotator_ids(store, annotators)
    build: Callable[[FeedbackStore, set[int], str | None, int | None, ExportReport], list[dict[str, Any]]] = {
        "preferences": _preference_rows,
        "openai": _openai_rows,
        "rankings": _ranking_rows,
        "ratings": _rating_rows,
        "sft": _sft_rows,
    }[shape]
    rows = build(store, selected, rubric, min_agreement, report)
    if not soft_labels:
        rows = [{key: value for key, value in row.items() if key != "p_chosen"} for row in rows]
    if not rows:
        why = (
            ", ".join(f"{count} {reason}" for reason, count in sorted(report.skipped.items())) or "no answers"
        )
        raise InvalidArgument(
            f"nothing to export as {shape} from {store.path} with annotators={annotators}, rubric={rubric}, "
            f"min_agreement={min_agreement} (left out: {why})",
            received=shape,
            fix="collect answers first (steer annotate / steer judge) or loosen the filters",
        )
    atomic_write_text(Path(out), "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    report.written = len(rows)
    return report


def _annotator_ids(store: FeedbackStore, family: str) -> set[int]:
    chosen: Iterable[Annotator] = store.annotators()
    return {a.id for a in chosen if family == "all" or a.family == family}


def _winner_pairs(
    store: FeedbackStore,
    selected: set[int],
    rubric: str | None,
    min_agreement: int | None,
    report: ExportReport,
) -> list[tuple[int, int, int, float | None]]:
    """(prompt id, chosen response id, rejected response id, p_chosen) for each exported comparison.

    Without `min_agreement`, one per comparison with a winner. With it, votes are pooled per unordered pair:
    the pair is kept when its most frequent answer is a winner, given by ≥ m annotators and by more than
    any other answer (a tie or "both bad" vote counts as an answer that disagrees). `p_chosen` is
    P(chosen ≻ rejected) from the soft labels (see `_p_chosen`), None without any.
    """
    comparisons = [c for c in store.comparisons() if c.annotator_id in selected and c.rubric == rubric]
    if min_agreement is None:
        pairs = []
        for c in comparisons:
            if c.choice in ("tie", "both_bad"):
                report.skipped[c.choice] += 1
                continue
            chosen, rejected = (
                (c.response_a, c.response_b) if c.choice == "a" else (c.response_b, c.response_a)
            )
            pairs.append((c.prompt_id, chosen, rejected, _p_chosen([c], chosen)))
        return pairs
    votes: dict[tuple[int, int, int], Counter[int | str]] = defaultdict(Counter)
    pooled: dict[tuple[int, int, int], list[Comparison]] = defaultdict(list)
    for c in comparisons:
        low, high = sorted((c.response_a, c.response_b))
        votes[(c.prompt_id, low, high)][_vote(c)] += 1
        pooled[(c.prompt_id, low, high)].append(c)
    pairs = []
    for (prompt, low, high), counter in votes.items():
        (top, count), *rest = counter.most_common()
        if isinstance(top, str) or count < min_agreement or (rest and rest[0][1] == count):
            report.skipped["below agreement"] += 1
            continue
        pairs.append((prompt, top, high if top == low else low, _p_chosen(pooled[(prompt, low, high)], top)))
    return pairs


def _p_chosen(comparisons: Sequence[Comparison], chosen: int) -> float | None:
    """The mean P(chosen ≻ the other) over the comparisons with a soft label, or None when none has one.

    A comparison's `soft_label` is P(response_a ≻ response_b), so it is turned around when the chosen
    response is its b. Hard labels (people, imports) only decide which answer is chosen.
    """
    soft = [
        c.soft_label if c.response_a == chosen else 1.0 - c.soft_label
        for c in comparisons
        if c.soft_label is not None
    ]
    return sum(soft) / len(soft) if soft else None


def _vote(comparison: Comparison) -> int | str:
    """The winning response id, or "tie" / "both_bad"."""
    return {"a": comparison.response_a, "b": comparison.response_b}.get(comparison.choice, comparison.choice)


def _preference_pairs(
    store: FeedbackStore,
    selected: set[int],
    rubric: str | None,
    min_agreement: int | None,
    report: ExportReport,
) -> list[tuple[int, str, str, float | None]]:
    """(prompt id, chosen text, rejected text, p_chosen or None) for each exported comparison."""
    texts = {r.id: r.text for r in store.responses()}
    pairs = []
    for prompt, chosen, rejected, p_chosen in _winner_pairs(store, selected, rubric, min_agreement, report):
        if texts[chosen] == texts[rejected]:
            report.skipped["identical texts"] += 1  # a DPO row needs two different answers
            continue
        pairs.append((prompt, texts[chosen], texts[rejected], p_chosen))
    return pairs


def _preference_rows(
    store: FeedbackStore,
    selected: set[int],
    rubric: str | None,
    min_agreement: int | None,
    report: ExportReport,
) -> list[dict[str, Any]]:
    prompts = {p.id: p.text for p in store.prompts()}
    rows: list[dict[str, Any]] = []
    for prompt, chosen, rejected, p_chosen in _preference_pairs(
        store, selected, rubric, min_agreement, report
    ):
        row: dict[str, Any] = {"prompt": prompts[prompt], "chosen": chosen, "rejected": rejected}
        if p_chosen is not None:
            row["p_chosen"] = p_chosen  # a judge's soft label: a label-smoothed target for DPO and RMs
        rows.append(row)
    return rows


def _openai_rows(
    store: FeedbackStore,
    selected: set[int],
    rubric: str | None,
    min_agreement: int | None,
    report: ExportReport,
) -> list[dict[str, Any]]:
    prompts = {p.id: p for p in store.prompts()}
    rows = []
    # OpenAI's preference format has no field for a soft label: p_chosen is not written here.
    for prompt, chosen, rejected, _ in _preference_pairs(store, selected, rubric, min_agreement, report):
        # Imported chat prompts keep their messages; a plain prompt becomes one user message.
        messages = prompts[prompt].meta.get("messages") or [{"role": "user", "content": prompts[prompt].text}]
        rows.append(
            {
                "input": {"messages": messages},
                "preferred_output": [{"role": "assistant", "content": chosen.strip()}],
                "non_preferred_output": [{"role": "assistant", "content": rejected.strip()}],
            }
        )
    return rows


def _ranking_rows(
    store: FeedbackStore,
    selected: set[int],
    rubric: str | None,
    min_agreement: int | None,
    report: ExportReport,
) -> list[dict[str, Any]]:
    if rubric is not None:
        raise InvalidArgument(
            "rankings have no rubric", received=rubric, fix="drop --rubric for a rankings export"
        )
    rankings = [r for r in store.rankings() if r.annotator_id in selected]
    orders: list[tuple[int, tuple[int, ...]]] = [(r.prompt_id, r.response_ids) for r in rankings]
    if min_agreement is not None:
        # Identical orders of the same responses pool their votes; the most frequent must reach m alone.
        votes: dict[tuple[int, frozenset[int]], Counter[tuple[int, ...]]] = defaultdict(Counter)
        for prompt, order in orders:
            votes[(prompt, frozenset(order))][order] += 1
        orders = []
        for (prompt, _), counter in votes.items():
            (order, count), *rest = counter.most_common()
            if count < min_agreement or (rest and rest[0][1] == count):
                report.skipped["below agreement"] += 1
                continue
            orders.append((prompt, order))
    texts = {r.id: r.text for r in store.responses()}
    prompts = {p.id: p.text for p in store.prompts()}
    rows = []
    for prompt, order in orders:
        listed = sorted(order)  # completions in a fixed (storage) order; `ranking` says which is best
        rows.append(
            {
                "prompt": prompts[prompt],
                "completions": [texts[i] for i in listed],
                "ranking": [listed.index(i) for i in order],
            }
        )
    return rows


def _rating_rows(
    store: FeedbackStore,
    selected: set[int],
    rubric: str | None,
    min_agreement: int | None,
    report: ExportReport,
) -> list[dict[str, Any]]:
    ratings = [r for r in store.ratings(rubric=rubric) if r.annotator_id in selected]
    rubrics = sorted({r.rubric for r in ratings})
    if len(rubrics) > 1:
        raise InvalidArgument(
            "the store has ratings on several rubrics; a ratings file holds one",
            received=rubrics,
            fix="pick one with --rubric (data_rubric= for steer train)",
        )
    values: dict[int, list[float]] = defaultdict(list)
    for rating in ratings:
        values[rating.response_id].append(rating.value)
    responses = {r.id: r for r in store.responses()}
    prompts = {p.id: p.text for p in store.prompts()}
    rows = []
    for response_id, given in sorted(values.items()):
        if min_agreement is not None and len(given) < min_agreement:
            report.skipped["fewer ratings than min_agreement"] += 1
            continue
        response = responses[response_id]
        rows.append(
            {
                "prompt": prompts[response.prompt_id],
                "completion": response.text,
                "rating": sum(given) / len(given),
            }
        )
    return rows


def _sft_rows(
    store: FeedbackStore,
    selected: set[int],
    rubric: str | None,
    min_agreement: int | None,
    report: ExportReport,
) -> list[dict[str, Any]]:
    if rubric is not None or min_agreement is not None:
        raise InvalidArgument(
            "an sft export takes revisions as they are: no rubric or agreement filter",
            received={"rubric": rubric, "min_agreement": min_agreement},
            fix="drop --rubric and --min-agreement",
        )
    responses = {r.id: r for r in store.responses()}
    prompts = {p.id: p.text for p in store.prompts()}
    rows = []
    for critique in store.critiques():
        if critique.annotator_id not in selected:
            continue
        if not critique.revision or not critique.revision.strip():
            report.skipped["critique without revision"] += 1
            continue
        rows.append(
            {"prompt": prompts[responses[critique.response_id].prompt_id], "completion": critique.revision}
        )
    return rows


# ----------------------------------------------------------------------------------------------- import
def import_feedback(store: FeedbackStore, source: str, path: str | Path) -> ImportReport:
    """Read a file in the `source` format (see the module docstring) into the store.

    Every row is checked before anything is written, so a bad row leaves the store as it was.

    Raises:
        InputFormatError: the file is missing, not UTF-8 or not JSONL, or a row lacks a field (file:line).
        InvalidArgument: unknown source.
    """
    if source not in IMPORT_SOURCES:
        raise InvalidArgument(
            f"unknown import source {source!r}", received=source, fix="use " + ", ".join(IMPORT_SOURCES)
        )
    parse = {"hh": _parse_hh, "ultrafeedback": _parse_ultrafeedback, "openai": _parse_openai}[source]
    rows = read_jsonl(path, what=f"{source} file", example=_IMPORT_EXAMPLES[source])
    if not rows:
        raise InputFormatError(
            f"the {source} file {path} has no rows", received="an empty file", fix="check the file"
        )
    report = ImportReport(source)
    parsed = []
    for number, line, value in rows:
        row = _Source(str(path), number, value, source)
        entry = parse(row)
        if entry is None:
            report.skipped["prompts of chosen and rejected differ"] += 1
            continue
        parsed.append((hashlib.sha256(line.encode("utf-8")).hexdigest()[:32], entry))
    report.rows = len(rows)
    with store.batch():  # all rows or none
        annotator = store.ensure_annotator(f"imported-{source}", f"imported:{source}")
        for digest, entry in parsed:
            _store_entry(store, annotator, source, f"import:{source}:{digest}", entry, report)
    return report


@dataclass(frozen=True)
class _Entry:
    """One parsed row: a prompt, its responses (text, model), and what the source said about them."""

    prompt: str
    meta: dict[str, Any]
    responses: tuple[tuple[str, str], ...]
    preferred: int | None = None  # index of the chosen response in a pair
    ratings: tuple[tuple[int, str, float, str | None], ...] = ()  # (response index, rubric, value, reason)


def _store_entry(
    store: FeedbackStore, annotator: int, source: str, request: str, entry: _Entry, report: ImportReport
) -> None:
    first = request + ":0"
    if store.answer_for_request(first) is not None:
        report.skipped["already imported"] += 1
        return
    prompt = store.add_prompt(entry.prompt, source=f"import:{source}", meta=entry.meta)
    ids = [store.add_response(prompt, text, model=model) for text, model in entry.responses]
    report.prompts += 1
    report.responses += len(ids)
    if entry.preferred is not None:
        other = 1 - entry.preferred
        store.add_comparison(
            annotator, response_a=ids[entry.preferred], response_b=ids[other], choice="a", request_id=first
        )
        report.answers += 1
    for n, (index, rubric, value, reason) in enumerate(entry.ratings):
        request_id = first if n == 0 and entry.preferred is None else f"{request}:{n + 1}"
        store.add_rating(
            annotator, ids[index], rubric=rubric, value=value, reason=reason, request_id=request_id
        )
        report.answers += 1


_IMPORT_EXAMPLES = {
    "hh": '{"chosen": "\\n\\nHuman: Hi\\n\\nAssistant: Hello!", '
    '"rejected": "\\n\\nHuman: Hi\\n\\nAssistant: Go away."}',
    "ultrafeedback": '{"instruction": "Say hi", "completions": [{"model": "m", "response": "Hi!", '
    '"annotations": {"helpfulness": {"Rating": "5", "Rationale": "ok"}}, "overall_score": 8}]}',
    "openai": '{"input": {"messages": [{"role": "user", "content": "Hi"}]}, "preferred_output": '
    '[{"role": "assistant", "content": "Hello!"}], '
    '"non_preferred_output": [{"role": "assistant", "content": "No."}]}',
}


@dataclass(frozen=True)
class _Source:
    file: str
    line: int
    value: Any
    source: str

    def fail(self, field_name: str, problem: str, received: object) -> InputFormatError:
        return InputFormatError(
            f"{self.file}:{self.line}: field {field_name!r} {problem}",
            received=repr(received)[:120],
            fix=f"each line of a {self.source} file looks like {_IMPORT_EXAMPLES[self.source]}",
        )

    def object(self) -> dict[str, Any]:
        if not isinstance(self.value, dict):
            raise InputFormatError(
                f"{self.file}:{self.line}: a row must be a JSON object",
                received=repr(self.value)[:120],
                fix=f"write e.g. {_IMPORT_EXAMPLES[self.source]}",
            )
        return self.value

    def text(self, data: dict[str, Any], key: str, *, where: str = "") -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where + key, "must be a non-empty string", value)
        return value


def split_hh(transcript: str) -> tuple[str, str] | None:
    """("\\n\\nHuman: …\\n\\nAssistant:", " answer") split at the last Assistant turn, or None without one."""
    cut = transcript.rfind(HH_ASSISTANT)
    if cut < 0:
        return None
    return transcript[: cut + len(HH_ASSISTANT)], transcript[cut + len(HH_ASSISTANT) :]


def _parse_hh(row: _Source) -> _Entry | None:
    data = row.object()
    chosen, rejected = row.text(data, "chosen"), row.text(data, "rejected")
    parts = []
    for key, transcript in (("chosen", chosen), ("rejected", rejected)):
        split = split_hh(transcript)
        if split is None or HH_HUMAN not in split[0] or not split[1].strip():
            raise row.fail(
                key, "must be a transcript ending in '\\n\\nAssistant: <answer>'", transcript[-120:]
            )
        parts.append(split)
    (prompt, good), (other_prompt, bad) = parts
    if prompt != other_prompt or good == bad:
        return None  # the two transcripts are not two answers to one prompt: nothing to compare
    return _Entry(prompt, {}, ((good, "imported:hh"), (bad, "imported:hh")), preferred=0)


def _scaled(value: float, scale: tuple[float, float]) -> float:
    """Map [low, high] linearly onto the store's [1, 7]."""
    low, high = scale
    return 1.0 + 6.0 * (value - low) / (high - low)


def _parse_ultrafeedback(row: _Source) -> _Entry:
    data = row.object()
    instruction = row.text(data, "instruction")
    completions = data.get("completions")
    if not isinstance(completions, list) or not completions:
        raise row.fail(
            "completions", "must be a non-empty list of {model, response, annotations}", completions
        )
    responses, ratings = [], []
    for index, completion in enumerate(completions):
        where = f"completions[{index}]."
        if not isinstance(completion, dict):
            raise row.fail(where[:-1], "must be an object", completion)
        responses.append(
            (row.text(completion, "response", where=where), str(completion.get("model") or "unknown"))
        )
        ratings += _ultrafeedback_ratings(row, completion, index, where)
    return _Entry(instruction, {"source": data.get("source")}, tuple(responses), ratings=tuple(ratings))


def _ultrafeedback_ratings(
    row: _Source, completion: dict[str, Any], index: int, where: str
) -> list[tuple[int, str, float, str | None]]:
    ratings: list[tuple[int, str, float, str | None]] = []
    annotations = completion.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise row.fail(where + "annotations", "must be an object {aspect: {Rating, Rationale}}", annotations)
    for aspect, note in sorted(annotations.items()):
        rating = note.get("Rating") if isinstance(note, dict) else None
        if rating in (None, "N/A"):
            continue  # UltraFeedback writes N/A where an aspect does not apply (honesty on creative tasks)
        value = _number(rating)
        low, high = ULTRAFEEDBACK_ASPECT_SCALE
        if value is None or not low <= value <= high:
            raise row.fail(f"{where}annotations.{aspect}.Rating", "must be 1–5 or N/A", rating)
        reason = note.get("Rationale") if isinstance(note.get("Rationale"), str) else None
        ratings.append((index, aspect, _scaled(value, ULTRAFEEDBACK_ASPECT_SCALE), reason))
    if completion.get("overall_score") is not None:
        value = _number(completion["overall_score"])
        low, high = ULTRAFEEDBACK_OVERALL_SCALE
        if value is None or not low <= value <= high:
            raise row.fail(
                where + "overall_score", "must be a number from 1 to 10", completion["overall_score"]
            )
        critique = completion.get("critique") if isinstance(completion.get("critique"), str) else None
        ratings.append((index, "overall", _scaled(value, ULTRAFEEDBACK_OVERALL_SCALE), critique))
    if not ratings:
        raise row.fail(
            where + "annotations", "has no rating (nor overall_score)", completion.get("annotations")
        )
    return ratings


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def render_messages(messages: Sequence[dict[str, str]]) -> str:
    """Chat messages as a base-model prompt, as `steering.train.data` renders them: "User: …\\nAssistant:"."""
    return "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages) + "Assistant:"


def _parse_openai(row: _Source) -> _Entry:
    data = row.object()
    messages = data.get("input", {}).get("messages") if isinstance(data.get("input"), dict) else None
    if not isinstance(messages, list) or not messages:
        raise row.fail("input.messages", "must be a non-empty list of {role, content}", data.get("input"))
    for index, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or message.get("role") not in ("system", "user", "assistant", "developer")
            or not isinstance(message.get("content"), str)
        ):
            raise row.fail(
                f"input.messages[{index}]", "must be {role: system|user|assistant, content: text}", message
            )
    answers = []
    for key in ("preferred_output", "non_preferred_output"):
        output = data.get(key)
        if (
            not isinstance(output, list)
            or len(output) != 1
            or not isinstance(output[0], dict)
            or output[0].get("role") != "assistant"
            or not isinstance(output[0].get("content"), str)
            or not output[0]["content"].strip()
        ):
            raise row.fail(key, "must be a list of one {role: assistant, content: text}", output)
        answers.append(" " + output[0]["content"].lstrip())
    clean = [{"role": m["role"], "content": m["content"]} for m in messages]
    return _Entry(
        render_messages(clean),
        {"messages": clean},
        ((answers[0], "imported:openai"), (answers[1], "imported:openai")),
        preferred=0,
    )

"""`steer feedback …`: fill a feedback database with candidates, export and import preferences, show agreement.

`add` samples candidates through `steering.generate` and stores them with their books (log q, log p_base,
KL), then queues the work people and judges do on them (compare every pair, rank, rate, critique).
`export` writes the training shapes (`steer train … data=OUT.jsonl`), `import` reads HH, UltraFeedback
and OpenAI preference files, `stats` counts rows and tabulates agreement.

`steer train dpo|reward-model|sft data=F.db` also reads a database: `feedback_training_data` exports the
matching shape into the run directory as `feedback-<hash>.jsonl` (a snapshot, so the run can be repeated
and resumed on exactly the rows it saw) and points `data` at it. Filters as keys: `data_annotators=human`,
`data_rubric=helpful`, `data_min_agreement=2`, `data_soft_labels=false` (leave judges' P(chosen ≻ rejected) out
of preference rows: hard labels only), and for reward-model `data_shape=preferences|rankings|ratings`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from steering.errors import SEED_LIMIT, InvalidArgument

feedback_app = typer.Typer(
    help="A feedback database: sample candidates into it, export/import preferences, agreement stats.",
    no_args_is_help=True,
)
console = Console(stderr=True)

DbOption = Annotated[Path, typer.Option("--db", help="The feedback database (SQLite).")]
# Which export each training method reads from a database, and the shapes it may choose instead.
TRAIN_SHAPES = {
    "dpo": ("preferences", "rankings"),
    "reward-model": ("preferences", "rankings", "ratings"),
    "sft": ("sft",),
}
DATA_KEYS = ("data_annotators", "data_rubric", "data_min_agreement", "data_shape", "data_soft_labels")


@feedback_app.command()
def add(
    db: DbOption,
    prompts: Annotated[Path, typer.Option("--prompts", help='JSONL of {"prompt": …} lines.')],
    model: Annotated[str, typer.Option(help="Registry name, .gguf file or HF directory.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Candidates per prompt.")] = 2,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 64,
    seed: Annotated[int, typer.Option(min=0, max=SEED_LIMIT - 1)] = 0,
    adapter: Annotated[Path | None, typer.Option("--adapter", help="A trained adapter directory.")] = None,
    template: Annotated[
        str | None, typer.Option(help="qa | chat | instruct | a text file with {prompt}.")
    ] = None,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy.")] = 1.0,
    top_p: Annotated[float | None, typer.Option("--top-p")] = None,
    stop: Annotated[list[str] | None, typer.Option("--stop", help="Stop sequence (repeatable).")] = None,
    rubric: Annotated[
        list[str] | None, typer.Option("--rubric", help="Rubric to rate on (repeatable; default: helpful).")
    ] = None,
    dtype: Annotated[str, typer.Option(help="bfloat16 | float32")] = "float32",
) -> None:
    """Sample N candidates per prompt, store them with their books, and queue them for annotation."""
    from steering.cli.inputs import read_jsonl_prompts
    from steering.controls import Adapter, sampling_controls, template_from_name
    from steering.feedback.candidates import add_candidates
    from steering.feedback.store import FeedbackStore
    from steering.models import load_model

    texts = read_jsonl_prompts(str(prompts))
    controls: list[object] = []
    settings: dict[str, Any] = {"temperature": temperature}
    if adapter is not None:
        controls.append(Adapter(adapter))
    if template is not None:
        controls.append(template_from_name(template))
        settings["template"] = template
    if top_p is not None:
        settings["top_p"] = top_p
    if stop:
        settings["stop"] = list(stop)
    controls += sampling_controls(temperature=temperature, top_p=top_p)
    with FeedbackStore.open(db) as store:  # open (and check) the database before the slow part
        with console.status(f"loading {model}…"):
            lm = load_model(model, dtype=dtype)
        with console.status(f"sampling {n} × {len(texts)} candidates…"):
            stored = add_candidates(
                store,
                lm,
                texts,
                n=n,
                controls=controls,
                max_new_tokens=max_new_tokens,
                stop=stop or (),
                seed=seed,
                source=str(prompts),
                adapter=str(adapter) if adapter is not None else None,
                settings=settings,
                rubrics=rubric or ("helpful",),
            )
    Console().print(
        f"stored {len(stored.samples)} candidates for {len(texts)} prompts in {db}; "
        f"queued {len(stored.items)} items"
    )


@feedback_app.command()
def export(
    db: DbOption,
    to: Annotated[str, typer.Option("--to", help="preferences | openai | rankings | ratings | sft")],
    out: Annotated[Path, typer.Option("--out", help="The JSONL file to write.")],
    annotators: Annotated[str, typer.Option(help="human | judge | imported | all")] = "all",
    rubric: Annotated[str | None, typer.Option(help="Only answers on this rubric (principle).")] = None,
    min_agreement: Annotated[
        int | None,
        typer.Option("--min-agreement", min=1, help="Only pairs where at least m annotators agree."),
    ] = None,
) -> None:
    """Write answers as training JSONL (the shapes of `steer train`, TRL and OpenAI)."""
    from steering.feedback.exchange import export_feedback
    from steering.feedback.store import FeedbackStore

    with FeedbackStore.open(db, create=False) as store:
        report = export_feedback(
            store, to, out, annotators=annotators, rubric=rubric, min_agreement=min_agreement
        )
    Console().print(f"wrote {report.written} {to} rows to {out}{_skipped(report.skipped)}")


@feedback_app.command("import")
def import_(
    db: DbOption,
    source: Annotated[str, typer.Option("--from", help="hh | ultrafeedback | openai")],
    file: Annotated[Path, typer.Argument(help="The JSONL file to read.")],
) -> None:
    """Read preferences or ratings from HH-RLHF, UltraFeedback or OpenAI preference JSONL."""
    from steering.feedback.exchange import import_feedback
    from steering.feedback.store import FeedbackStore

    with FeedbackStore.open(db) as store:
        report = import_feedback(store, source, file)
    Console().print(
        f"read {report.rows} rows: {report.prompts} prompts, {report.responses} responses, "
        f"{report.answers} answers{_skipped(report.skipped)}"
    )


@feedback_app.command()
def stats(db: DbOption) -> None:
    """Row counts, Cohen's κ for each pair of annotators, Krippendorff's α, judges against people."""
    from steering.feedback import agreement
    from steering.feedback.store import FeedbackStore

    out = Console()
    with FeedbackStore.open(db, create=False) as store:
        counts = Table(title=f"{db}")
        for name in store.counts():
            counts.add_column(name)
        counts.add_row(*[str(v) for v in store.counts().values()])
        out.print(counts)
        pairs = Table(title="Cohen's κ on comparisons (pairs of annotators)")
        for column in ("annotator", "annotator", "κ", "shared units"):
            pairs.add_column(column)
        for row in agreement.kappa_table(store):
            pairs.add_row(row.first, row.second, _number(row.kappa), str(row.units))
        out.print(pairs)
        overall = agreement.comparison_alpha(store)
        lines = [
            f"Krippendorff's α, comparisons (nominal): {_number(overall.value)} over {overall.units} units"
        ]
        for rubric in sorted({r.rubric for r in store.ratings()}):
            alpha = agreement.rating_alpha(store, rubric)
            lines.append(
                f"Krippendorff's α, ratings on {rubric} (interval): {_number(alpha.value)} "
                f"over {alpha.units} responses"
            )
        for judge in (a for a in store.annotators() if a.family == "judge"):
            versus, swap = (
                agreement.judge_vs_humans(store, judge.id),
                agreement.swap_consistency(store, judge.id),
            )
            lines.append(
                f"judge {judge.name}: agrees with the human majority {_number(versus.accuracy)} "
                f"(κ {_number(versus.kappa)}, {versus.units} units); swap consistency {_number(swap.value)} "
                f"({swap.units} pairs seen in both orders)"
            )
        out.print("\n".join(lines))


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _skipped(skipped: Any) -> str:
    return (
        ""
        if not skipped
        else " (left out: " + ", ".join(f"{n} {why}" for why, n in sorted(skipped.items())) + ")"
    )


# ----------------------------------------------------------------------------------- steer train data=F.db
def split_data_options(items: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Take the `data_*` filter keys out of `key=value` overrides (the training configs do not know them)."""
    rest, options = [], {}
    for item in items:
        key, sep, value = item.partition("=")
        if sep and key.strip() in DATA_KEYS:
            options[key.strip()] = value.strip().strip('"')
        else:
            rest.append(item)
    return rest, options


def feedback_training_data(method: str, config: Any, options: dict[str, str], *, resume: bool) -> Any:
    """`config` with `data` pointing at a JSONL snapshot exported from a feedback database (see the docstring).

    Without a `.db` data file, `config` comes back as it is (and `data_*` keys are refused).
    """
    data = str(getattr(config, "data", ""))
    if not data.endswith(".db"):
        if options:
            raise InvalidArgument(
                f"{', '.join(sorted(options))} filter a feedback database, but data is not a .db file",
                received=data,
                fix="set data=FILE.db, or drop the data_* keys",
            )
        return config
    if method not in TRAIN_SHAPES:
        raise InvalidArgument(
            f"steer train {method} cannot read a feedback database",
            received=data,
            fix="use it with dpo, reward-model or sft, or export a JSONL with `steer feedback export`",
        )
    out = Path(config.out)
    if resume:  # the run goes on with the very rows it started on
        previous = _previous_snapshot(out)
        if previous is not None:
            return dataclasses.replace(config, data=str(previous))
    snapshot = _export_snapshot(method, data, options, out)
    console.print(f"feedback: {data} → {snapshot}")
    return dataclasses.replace(config, data=str(snapshot))


def _previous_snapshot(out: Path) -> Path | None:
    try:
        previous = json.loads((out / "config.json").read_text(encoding="utf-8")).get("data", "")
    except (OSError, ValueError, AttributeError):
        return None
    path = Path(previous)
    return path if path.name.startswith("feedback-") and path.is_file() else None


def _export_snapshot(method: str, data: str, options: dict[str, str], out: Path) -> Path:
    from steering.feedback.exchange import export_feedback
    from steering.feedback.store import FeedbackStore

    allowed = TRAIN_SHAPES[method]
    shape = options.get("data_shape", allowed[0])
    if shape not in allowed:
        raise InvalidArgument(f"data_shape for {method} is one of {', '.join(allowed)}", received=shape)
    raw_agreement = options.get("data_min_agreement")
    try:
        min_agreement = int(raw_agreement) if raw_agreement is not None else None
    except ValueError:
        raise InvalidArgument("data_min_agreement must be a positive int", received=raw_agreement) from None
    soft = options.get("data_soft_labels", "true").lower()
    if soft not in ("true", "false"):
        raise InvalidArgument(
            "data_soft_labels must be true or false",
            received=soft,
            fix="set data_soft_labels=false for hard labels",
        )
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    # Named as atomic_write_text names its temporaries, so a run that starts here removes one a kill left.
    fd, name = tempfile.mkstemp(prefix=".feedback.jsonl.tmp-", dir=out)
    os.close(fd)
    temporary = Path(name)
    try:
        with FeedbackStore.open(data, create=False) as store:
            export_feedback(
                store,
                shape,
                temporary,
                annotators=options.get("data_annotators", "all"),
                rubric=options.get("data_rubric"),
                min_agreement=min_agreement,
                soft_labels=soft == "true",
            )
        digest = hashlib.sha256(temporary.read_bytes()).hexdigest()[:12]
        snapshot = out / f"feedback-{shape}-{digest}.jsonl"  # same rows, same name: nothing overwritten
        os.replace(temporary, snapshot)
    except BaseException:
        temporary.unlink(missing_ok=True)
        if made:
            out.rmdir()  # a refused export leaves no empty run directory behind
        raise
    return snapshot

"""`steer judge`: an AI judge reads a constitution and answers the feedback database's pending work.

For every principle of the constitution (or the ones named with `--principle`), the judge answers each
pair of a prompt's responses (`--kind pairwise`: a soft label P(a ≻ b) from both shown orders), rates
each response 1–7 (`rating`, the principle id as the rubric) or critiques it (`critique`). Answers go
into the database as those of the annotator kind `judge:<model>:<constitution digest>`, so
`steer feedback export` and `steer train … data=F.db` use them as they use people's. Running it again
continues where it stopped. The summary says how far to trust the labels: swap consistency (both
shown orders agree) and position bias (how often the answer shown first wins). `--method generate`
lets the model write its answer and parses the label from the text (the common generate-then-parse
judge) instead of reading the labels' probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from steering.errors import InvalidArgument

if TYPE_CHECKING:
    from steering.feedback.judges import Judge, JudgingSummary

console = Console(stderr=True)
KINDS = ("pairwise", "rating", "critique")
METHODS = ("logprob", "generate")
# Programmatic judges known by name on the command line (the others are for Python callers).
PROGRAMMATIC = ("vader", "longer-answer")


def judge(
    db: Annotated[Path, typer.Option("--db", help="The feedback database (steer feedback add fills it).")],
    constitution: Annotated[
        Path, typer.Option("--constitution", help="TOML file of principles (see docs/feedback.md).")
    ],
    model: Annotated[
        str,
        typer.Option(
            help="Judge model: registry name, .gguf file or HF directory; or vader | longer-answer."
        ),
    ] = "smollm2-135m-instruct",
    adapter: Annotated[
        Path | None, typer.Option("--adapter", help="A trained adapter for the judge.")
    ] = None,
    kind: Annotated[str, typer.Option("--kind", help="pairwise | rating | critique.")] = "pairwise",
    principle: Annotated[
        list[str] | None, typer.Option("--principle", help="Judge only this principle id (repeatable).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="At most N new judgments per principle.")
    ] = None,
    template: Annotated[
        str, typer.Option(help="auto (the chat template when the model has one) | chat | prompt.")
    ] = "auto",
    method: Annotated[
        str,
        typer.Option(
            help="logprob (read the labels' probabilities) | generate (write, then parse the label)."
        ),
    ] = "logprob",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    dtype: Annotated[str, typer.Option(help="float32 | bfloat16 (bfloat16 rounds close labels to ties).")] = (
        "float32"
    ),
    seed: Annotated[int, typer.Option(min=0, max=2**31 - 1, help="Seed of sampled critiques.")] = 0,
) -> None:
    """Let an AI judge answer the database's comparisons, ratings or critiques under written principles."""
    from steering.cli.progress import LazyProgress
    from steering.feedback.constitution import load_constitution
    from steering.feedback.judges import annotator_kind, judge_store
    from steering.feedback.store import FeedbackStore

    if kind not in KINDS:
        raise InvalidArgument(f"unknown --kind {kind!r}", received=kind, fix=f"use one of {', '.join(KINDS)}")
    if method not in METHODS:
        raise InvalidArgument(
            f"unknown --method {method!r}", received=method, fix=f"use one of {', '.join(METHODS)}"
        )
    if template not in ("auto", "chat", "prompt"):
        raise InvalidArgument("--template must be auto, chat or prompt", received=template, fix="use auto")
    principles_read = load_constitution(constitution)
    chosen = [principles_read.principle(p) for p in principle] if principle else None
    store = FeedbackStore.open(db, create=False)
    with store:
        counts = store.counts()
        if not counts.get("responses"):
            raise InvalidArgument(
                f"the feedback database {db} has no responses to judge",
                received=str(db),
                fix="fill it first with `steer feedback add` or `steer feedback import`",
            )
        with LazyProgress(
            console, f"judging ({kind})", total=None, waiting=f"loading the judge {model}…"
        ) as bar:
            the_judge = build_judge(
                model, adapter=adapter, template=template, dtype=dtype, batch_size=batch_size, method=method
            )

            def show(done: int, total: int) -> None:
                bar.update(completed=done, total=total)

            summary = judge_store(
                store,
                the_judge,
                principles_read,
                kind=kind,
                principles=chosen,
                limit=limit,
                seed=seed,
                progress=show,
            )
        console.print(summary_text(summary, the_judge, annotator_kind(the_judge, principles_read)))


def build_judge(
    model: str, *, adapter: Path | None, template: str, dtype: str, batch_size: int, method: str = "logprob"
) -> Judge:
    """A programmatic judge by name, or a model judge (loading the model; unknown names say so)."""
    from steering.controls import Adapter
    from steering.feedback.judges import GeneratingJudge, ModelJudge, longer_answer_judge, vader_judge
    from steering.models import load_model

    if model in PROGRAMMATIC:
        if adapter is not None:
            raise InvalidArgument(
                f"the {model} judge is a program, not a model: it takes no adapter",
                received=str(adapter),
                fix="drop --adapter, or give --model a language model",
            )
        if method != "logprob":
            raise InvalidArgument(
                f"the {model} judge is a program, not a model: it writes no answer to parse",
                received=f"--method {method}",
                fix="drop --method, or give --model a language model",
            )
        return vader_judge() if model == "vader" else longer_answer_judge()
    checked = Adapter(adapter) if adapter is not None else None  # a wrong path is said before the model loads
    chat = None if template == "auto" else template == "chat"
    loaded = load_model(model, dtype=dtype)
    if chat and not getattr(loaded.tokenizer, "chat_template", None):
        raise InvalidArgument(
            f"the model {model} has no chat template",
            received="--template chat",
            fix="use --template prompt (a plain prompt for base models) or a chat model",
        )
    reader = ModelJudge(loaded, adapter=checked, chat=chat, batch_size=batch_size)
    return GeneratingJudge(reader) if method == "generate" else reader


def summary_text(summary: JudgingSummary, judge: Judge, kind: str) -> str:
    """What was written and how far to trust it, in a few lines."""
    from steering.feedback.judges import GeneratingJudge

    lines = [
        f"{summary.judged} new {summary.kind} judgments by {kind} "
        f"({summary.already} already there were left alone)."
    ]
    if summary.judged and summary.kind == "pairwise":
        lines.append(
            f"swap consistency {summary.consistent / summary.judged:.2f} (both shown orders agree); "
            f"position bias: the answer shown first wins with P = {summary.mean(summary.p_first):.2f} "
            f"(0.50 = none); label mass {summary.mean(summary.label_mass):.2f}."
        )
    if summary.judged and summary.kind == "rating":
        lines.append(
            f"mean rating {summary.mean(summary.rating):.2f} of 7; digit mass {summary.mean(summary.label_mass):.2f}."
        )
    if isinstance(judge, GeneratingJudge) and judge.replies and summary.kind != "critique":
        lines.append(
            f"no label could be parsed from {judge.parse_failures} of {judge.replies} replies "
            "(each counted as no answer: ½ for a pairwise order, a uniform rating)."
        )
    lines.append(f"export them with: steer feedback export --annotators judge … (annotator kind {kind})")
    return "\n".join(lines)

"""The `dual` step: prompt + adapter on the user's notes + a slot filled by quoting the user's command.

The skill prompt "Summarise what my notes say about <topic>." gets its topic from the user's
command: with the quote pool (`QuoteFromSource` over the command) the slot can only copy a span of
the command, so the topic cannot be hallucinated; without it the slot is free text. Measured: the
slot hallucination rate with and without the pool (and the empty-slot rate beside it), the
perplexity of the held-out notes under the base and under the notes adapter, and the answers the
adapter writes to the quoted topics (`recipes/dual.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from steering.controls import Adapter
from steering.eval.report import Section, examples_html, table_html
from steering.paths import atomic_write_text
from steering.recipes.dual import (
    COMMANDS,
    answer,
    fill_slot,
    notes_perplexity,
    slot_empty_rate,
    slot_hallucination_rate,
)
from steering.recipes.pipeline.contract import StepContext, StepKind, StepRecord, StepResult


@dataclass
class DualOptions:
    adapter: str = ""  # "@sft": the adapter trained on the notes
    notes: str = ""  # "@notes": the notes step (its held-out pieces)
    limit: int = 0  # the first N commands (0 = all)
    answers: int = 6  # commands answered with the adapter (the report's examples)
    max_new_tokens: int = 96


class Dual(StepKind):
    name = "dual"
    Options = DualOptions
    quick: ClassVar[dict[str, Any]] = {"limit": 2, "answers": 1, "max_new_tokens": 12}

    def run(self, context: StepContext, options: Any) -> StepResult:
        model = context.model(dtype="float32")
        adapter = [Adapter(Path(context.ref(options.adapter)))]
        commands = list(COMMANDS[: options.limit] if options.limit else COMMANDS)
        heldout = json.loads(context.ref(options.notes + ".heldout").read_text(encoding="utf-8"))
        context.progress(0, 4, "perplexity of the held-out notes")
        before, after = notes_perplexity(model, heldout), notes_perplexity(model, heldout, adapter)
        context.progress(1, 4, "slots without the quote pool")
        free = fill_slot(model, commands, quote=False, seed=context.recipe.seed)
        context.progress(2, 4, "slots with the quote pool")
        quoted = fill_slot(model, commands, quote=True, seed=context.recipe.seed)
        context.progress(3, 4, "answers with the adapter")
        answered = [answer(model, slot.text, adapter, seed=context.recipe.seed, max_new_tokens=options.max_new_tokens)
                    for slot in quoted[: options.answers]]  # fmt: skip
        rows: list[dict[str, Any]] = [
            {"command": c, "free_slot": f.text, "quoted_slot": q.text}
            for c, f, q in zip(commands, free, quoted, strict=True)
        ]
        for row, sample in zip(rows, answered, strict=False):
            row |= {"answer": sample.text, "answer_kl": sample.kl}
        atomic_write_text(context.folder / "slots.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        metrics = {
            "commands": len(commands),
            "hallucination_free": slot_hallucination_rate(free, commands),
            "hallucination_quoted": slot_hallucination_rate(quoted, commands),
            "empty_free": slot_empty_rate(free),
            "empty_quoted": slot_empty_rate(quoted),
            "perplexity_base": before,
            "perplexity_adapter": after,
        }
        return StepResult(metrics, {"slots": "slots.jsonl"})

    def report(self, record: StepRecord) -> list[Section]:
        m = record.metrics
        table = table_html(
            ["", "without the quote pool", "with the quote pool"],
            [["slot hallucination rate", m["hallucination_free"], m["hallucination_quoted"]],
             ["empty slot rate", m["empty_free"], m["empty_quoted"]]],
        )  # fmt: skip
        table += table_html(
            ["held-out notes", "base", "notes adapter"],
            [["perplexity", m["perplexity_base"], m["perplexity_adapter"]]],
        )
        rows = [json.loads(line) for line in record.output("slots").read_text(encoding="utf-8").splitlines()]
        examples = examples_html(
            [r["command"] for r in rows[:10]],
            {"free slot": [r["free_slot"] for r in rows[:10]], "quoted slot": [r["quoted_slot"] for r in rows[:10]],
             "answer (adapter)": [r.get("answer", "") for r in rows[:10]]},
        )  # fmt: skip
        text = f"{m['commands']} commands; a slot is hallucinated when its text is not a span of the command."
        return [Section(f"{record.name} (dual)", text, table + examples)]

"""The `revise` step: SL-CAI data — the helpful policy answers, critiques its answer against a principle
of the constitution and revises it, `rounds` times (Bai et al., 2022; `recipes/constitutional.py`).

Red-team prompts are revised under the harm principles (the principle of each round recorded);
benign prompts keep the policy's own answer unless it is evasive (the SL-CAI data keeps the model
helpful). Outputs `data` (data.jsonl: {"prompt", "completion"} rows for SFT) and `revisions`
(every round's principle, critique, revision and books).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from steering.controls import Adapter, Greedy
from steering.decode import generate
from steering.eval.report import Section, examples_html, table_html
from steering.feedback.constitution import load_constitution
from steering.paths import atomic_write_text
from steering.recipes.constitutional import critique_and_revise, principle_counts, revision_rows
from steering.recipes.pipeline.contract import StepContext, StepKind, StepRecord, StepResult
from steering.recipes.pipeline.packaged import packaged_file, prompt_set
from steering.recipes.red_team import is_evasive


@dataclass
class ReviseOptions:
    adapter: str = ""  # "@sft": the helpful policy that answers, critiques and revises
    red_team: str = "red_team:train"
    benign: str = "benign:train"
    constitution: str = "harmless"
    helpful_principle: str = "helpful"  # never drawn for red-team prompts (Bai et al. draw harm principles)
    rounds: int = 1
    limit: int = 0  # the first N prompts of each set (0 = all)
    max_new_tokens: int = 64
    batch_size: int = 8


class Revise(StepKind):
    name = "revise"
    Options = ReviseOptions
    quick: ClassVar[dict[str, Any]] = {"limit": 2, "max_new_tokens": 12}

    def run(self, context: StepContext, options: Any) -> StepResult:
        model = context.model()
        controls = [Adapter(Path(context.ref(options.adapter)))] if options.adapter else []
        constitution = load_constitution(packaged_file(options.constitution, "toml"))
        harm = [p.id for p in constitution.principles if p.id != options.helpful_principle]
        red = prompt_set(options.red_team, options.limit)
        benign = prompt_set(options.benign, options.limit)
        context.progress(0, 3, "answering")
        prompts = [p for p, _ in red + benign]
        answers = generate(model, prompts, controls=[*controls, Greedy()], max_new_tokens=options.max_new_tokens,
                           seed=context.recipe.seed, batch_size=options.batch_size).texts  # fmt: skip
        context.progress(1, 3, "critiquing and revising")
        revisions = critique_and_revise(
            model, [p for p, _ in red], answers[: len(red)], constitution, rounds=options.rounds,
            controls=controls, seed=context.recipe.seed, max_new_tokens=options.max_new_tokens,
            principles=harm, batch_size=options.batch_size,
        )  # fmt: skip
        rows = revision_rows(revisions)
        kept_benign = [
            (p, a) for (p, _), a in zip(benign, answers[len(red) :], strict=True) if not is_evasive(a)
        ]
        rows += [{"prompt": p, "completion": " " + a.strip()} for p, a in kept_benign]
        atomic_write_text(context.folder / "data.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        records = [r.to_record() | {"category": c} for r, (_, c) in zip(revisions, red, strict=True)]
        atomic_write_text(context.folder / "revisions.jsonl", "".join(json.dumps(r) + "\n" for r in records))
        context.progress(3, 3, "done")
        unchanged = Counter(r.reason for rev in revisions for r in rev.rounds if r.unchanged)
        metrics: dict[str, Any] = {"red_team": len(red), "benign": len(benign), "rows": len(rows)}
        metrics |= {
            "revised": sum(1 for r in revisions if r.unchanged < len(r.rounds)),
            "benign_kept": len(kept_benign),
        }
        metrics |= {"unchanged_by_reason": dict(unchanged), "principles": principle_counts(revisions)}
        return StepResult(metrics, {"data": "data.jsonl", "revisions": "revisions.jsonl"})

    def report(self, record: StepRecord) -> list[Section]:
        counts = record.metrics.get("principles", {})
        reasons = sorted({k for row in counts.values() for k in row if k.startswith("unchanged_")})
        rows = [
            [pid, row.get("rounds", 0), row.get("revised", 0), *[row.get(k, 0) for k in reasons]]
            for pid, row in counts.items()
        ]
        table = table_html(["principle", "rounds", "revised", *reasons], rows)
        lines = record.output("revisions").read_text(encoding="utf-8").splitlines()
        shown = [json.loads(line) for line in lines[:: max(1, len(lines) // 8)]][:8]
        examples = examples_html(
            [r["prompt"] for r in shown],
            {"original": [r["original"] for r in shown], "principle": [r["rounds"][0]["principle"] if r["rounds"] else "" for r in shown],
             "critique": [r["rounds"][0]["critique"] if r["rounds"] else "" for r in shown], "final": [r["final"] for r in shown]},
        )  # fmt: skip
        text = (
            f"{record.metrics.get('revised')} of {record.metrics.get('red_team')} red-team answers revised, "
            f"{record.metrics.get('benign_kept')} of {record.metrics.get('benign')} benign answers kept; "
            f"{record.metrics.get('rows')} SL-CAI rows. Which principle drove which revision:"
        )
        return [Section(f"{record.name} (critique → revision)", text, table + examples)]

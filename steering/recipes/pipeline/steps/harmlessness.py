"""The `harmlessness` step: each stage on held-out red-team and benign prompts (Constitutional AI's table).

Per policy ("base", "@step", "chat:MODEL") the greedy answers to the held-out prompts are checked by
code (`recipes/red_team.py`: rule violations for insults, private data and how-tos; evasive
= a refusal phrase or nothing) and rated 1–7 by the AI judge under the constitution's harm
principle (red-team prompts) and its helpfulness principle (benign prompts). Harmless = a low
violation rate and a high harm rating on red-team prompts; helpful = few evasive answers and a high
helpfulness rating on benign ones. Output `answers` (answers.jsonl), examples before/after in the report.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any, ClassVar

from steering.controls import Greedy
from steering.decode import generate
from steering.eval.report import Section, examples_html, table_html
from steering.feedback.constitution import load_constitution
from steering.feedback.model_judge import ModelJudge
from steering.paths import atomic_write_text
from steering.recipes.pipeline.contract import StepContext, StepKind, StepRecord, StepResult
from steering.recipes.pipeline.packaged import packaged_file, prompt_set
from steering.recipes.red_team import category_rates


@dataclass
class HarmlessnessOptions:
    policies: list[str] = field(default_factory=lambda: ["base"])
    red_team: str = "red_team:heldout"
    benign: str = "benign:heldout"
    limit: int = 0  # the first N prompts of each set (0 = all)
    constitution: str = "harmless"
    harm_principle: str = "harmless"
    helpful_principle: str = "helpful"
    judge: str = "smollm2-135m-instruct"  # "" = code checks only
    max_new_tokens: int = 64
    batch_size: int = 8


class Harmlessness(StepKind):
    name = "harmlessness"
    Options = HarmlessnessOptions
    quick: ClassVar[dict[str, Any]] = {"limit": 3, "max_new_tokens": 12}

    def run(self, context: StepContext, options: Any) -> StepResult:
        red, benign = prompt_set(options.red_team, options.limit), prompt_set(options.benign, options.limit)
        constitution = load_constitution(packaged_file(options.constitution, "toml"))
        principles = {p.id: p for p in constitution.principles}
        judge = (
            ModelJudge(context.model(options.judge), batch_size=options.batch_size) if options.judge else None
        )
        stages: dict[str, Any] = {}
        answers: dict[str, list[str]] = {}
        for index, policy in enumerate(options.policies):
            context.progress(index, len(options.policies), f"answering: {policy}")
            model, controls, _ = context.policy(policy)
            texts = generate(model, [p for p, _ in red + benign], controls=[*controls, Greedy()],
                             max_new_tokens=options.max_new_tokens, seed=context.recipe.seed,
                             batch_size=options.batch_size).texts  # fmt: skip
            answers[policy] = texts
            red_texts, benign_texts = texts[: len(red)], texts[len(red) :]
            stage: dict[str, Any] = {
                "red_team": [r.to_record() for r in category_rates([c for _, c in red], [p for p, _ in red], red_texts)],
                "benign": [r.to_record() for r in category_rates([c for _, c in benign], [p for p, _ in benign], benign_texts)],
            }  # fmt: skip
            if judge is not None:
                harm = judge.rate([p for p, _ in red], red_texts, principles[options.harm_principle])
                helpful = judge.rate(
                    [p for p, _ in benign], benign_texts, principles[options.helpful_principle]
                )
                stage["harmless_rating"] = statistics.fmean(r.value for r in harm)
                stage["helpful_rating"] = statistics.fmean(r.value for r in helpful)
            stages[policy] = stage
        rows = [
            {"prompt": p, "set": "red_team" if i < len(red) else "benign", "category": c, **{k: v[i] for k, v in answers.items()}}
            for i, (p, c) in enumerate(red + benign)
        ]  # fmt: skip
        atomic_write_text(context.folder / "answers.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        return StepResult(
            {"stages": stages, "red_team": len(red), "benign": len(benign)}, {"answers": "answers.jsonl"}
        )

    def report(self, record: StepRecord) -> list[Section]:
        columns = [
            "stage",
            "set",
            "category",
            "n",
            "rule applies",
            "violation",
            "evasive",
            "empty",
            "judge rating",
        ]
        rows = []
        for name, stage in record.metrics.get("stages", {}).items():
            for which, rating in (("red_team", "harmless_rating"), ("benign", "helpful_rating")):
                for rates in stage[which]:
                    shown = stage.get(rating) if rates["category"] == "all" else None
                    rows.append([name, which, rates["category"], rates["n"], rates["ruled"], rates["violation"],
                                 rates["evasive"], rates["empty"], shown])  # fmt: skip
        lines = record.output("answers").read_text(encoding="utf-8").splitlines()
        shown_rows = [json.loads(line) for line in lines[:: max(1, len(lines) // 10)]][:10]
        stages = list(record.metrics.get("stages", {}))
        examples = examples_html([f"[{r['set']}/{r['category']}] {r['prompt']}" for r in shown_rows],
                                 {s: [r[s] for r in shown_rows] for s in stages})  # fmt: skip
        text = (
            f"{record.metrics.get('red_team')} held-out red-team and {record.metrics.get('benign')} benign prompts, "
            "greedy answers; violation = a code rule broken (where one applies); judge rating = mean 1–7 "
            "under the harm principle (red team) or the helpfulness principle (benign)."
        )
        return [Section(f"{record.name} (harmlessness)", text, table_html(columns, rows) + examples)]

"""The `eval` step: every stage asked the held-out instructions bare, scored by code, judged against the last.

`policies` lists the stages in order: "base" (the raw model, the bare instruction), "@step" (that
step's adapter on the recipe's model), or "chat:MODEL" (another model through its chat template, e.g.
a vendor-tuned instruct model of similar size). Each answers every instruction of the packaged
"eval" split greedily (the table: accuracy, format compliance, empty replies per kind — code checks
of `steering.eval.instructions`) and `samples` times at temperature 1 (KL to the base: the mean of
Σ log q − log p_base over those samples, whose books the decoder keeps; none for another model). An
AI judge compares each stage's greedy answers with the previous stage's under the constitution in
both shown orders: the win rate is the mean P(this ≻ previous), and its swap consistency says how
much the order of showing moved the judge.
"""

from __future__ import annotations

import itertools
import json
import statistics
from dataclasses import dataclass, field
from typing import Any, ClassVar

from steering.controls import Greedy
from steering.decode import generate
from steering.eval.instruction_scores import SCORE_COLUMNS, score_instructions
from steering.eval.instructions import load_instructions
from steering.eval.report import Section, examples_html, table_html
from steering.feedback.constitution import load_constitution
from steering.feedback.judge_contract import Pair
from steering.feedback.model_judge import ModelJudge
from steering.paths import atomic_write_text
from steering.recipes.pipeline.contract import StepContext, StepKind, StepRecord, StepResult
from steering.recipes.pipeline.packaged import packaged_file


@dataclass
class EvalOptions:
    policies: list[str] = field(default_factory=lambda: ["base"])
    split: str = "eval"
    limit: int = 0  # the first N instructions (0 = all)
    samples: int = 2  # sampled answers per instruction for the KL (0 = none)
    max_new_tokens: int = 64
    judge: str = "smollm2-135m-instruct"  # "" = no judged win rates
    constitution: str = "helpful"
    batch_size: int = 8


class Evaluate(StepKind):
    name = "eval"
    Options = EvalOptions
    quick: ClassVar[dict[str, Any]] = {"limit": 6, "samples": 1, "max_new_tokens": 12}

    def run(self, context: StepContext, options: Any) -> StepResult:
        instructions = load_instructions(options.split)
        if options.limit:
            # Every kind in a short evaluation: take instructions round-robin over the kinds.
            by_kind: dict[str, list[Any]] = {}
            for item in instructions:
                by_kind.setdefault(item.kind, []).append(item)
            mixed = [
                group[i] for i in range(len(instructions)) for group in by_kind.values() if i < len(group)
            ]
            instructions = mixed[: options.limit]
        prompts = [i.text for i in instructions]
        stages: dict[str, Any] = {}
        answers: dict[str, list[str]] = {}
        for index, policy in enumerate(options.policies):
            context.progress(index, len(options.policies), f"answering: {policy}")
            model, controls, same_base = context.policy(policy)
            greedy = generate(model, prompts, controls=[*controls, Greedy()], max_new_tokens=options.max_new_tokens,
                              seed=context.recipe.seed, batch_size=options.batch_size)  # fmt: skip
            scores = score_instructions(instructions, greedy.texts, greedy.stop_reasons)
            stage: dict[str, Any] = {"scores": {k: v.as_dict() for k, v in scores.by_kind.items()}}
            stage["overall"] = scores.overall.as_dict()
            if options.samples and same_base:
                sampled = generate(model, prompts, controls=controls, n=options.samples,
                                   max_new_tokens=options.max_new_tokens, seed=context.recipe.seed,
                                   batch_size=options.batch_size)  # fmt: skip
                kls = [float(k) for k in sampled.kl]
                stage["kl_to_base"] = statistics.fmean(kls)
                stage["kl_se"] = statistics.stdev(kls) / len(kls) ** 0.5 if len(kls) > 1 else None
            stages[policy] = stage
            answers[policy] = greedy.texts
        if options.judge and len(options.policies) > 1:
            context.progress(len(options.policies), len(options.policies), "judging stage against stage")
            self.judge_stages(context, options, prompts, answers, stages)
        atomic_write_text(
            context.folder / "answers.jsonl",
            "".join(json.dumps({"instruction": i.as_dict(), **{p: answers[p][n] for p in answers}}) + "\n"
                    for n, i in enumerate(instructions)),
        )  # fmt: skip
        return StepResult({"stages": stages, "instructions": len(instructions)}, {"answers": "answers.jsonl"})

    def judge_stages(
        self,
        context: StepContext,
        options: Any,
        prompts: list[str],
        answers: dict[str, list[str]],
        stages: dict[str, Any],
    ) -> None:
        """Win rate of each stage against the one before it (the judge's mean P over both shown orders)."""
        judge = ModelJudge(context.model(options.judge), batch_size=options.batch_size)
        principle = load_constitution(packaged_file(options.constitution, "toml")).principles[0]
        names = list(answers)
        for previous, current in itertools.pairwise(names):
            pairs = [
                Pair(p, a, b) for p, a, b in zip(prompts, answers[current], answers[previous], strict=True)
            ]
            judged = judge.pairwise(pairs, principle)
            orders = [j.p_a_by_order for j in judged]
            stages[current]["win_rate_vs_previous"] = statistics.fmean(j.p_a for j in judged)
            stages[current]["swap_consistency"] = statistics.fmean((a > 0.5) == (b > 0.5) for a, b in orders)
            stages[current]["previous"] = previous

    def report(self, record: StepRecord) -> list[Section]:
        stages = record.metrics.get("stages", {})
        columns = ["stage", "KL to base", "win vs previous", "swap consistency", *SCORE_COLUMNS]
        rows = []
        for name, stage in stages.items():
            head = [
                name,
                stage.get("kl_to_base"),
                stage.get("win_rate_vs_previous"),
                stage.get("swap_consistency"),
            ]
            rows.append([*head, *(["all", *list(stage["overall"].values())])])
            for kind, scores in stage["scores"].items():
                rows.append(["", None, None, None, kind, *scores.values()])
        lines = record.output("answers").read_text(encoding="utf-8").splitlines()
        shown = [json.loads(line) for line in lines[:: max(1, len(lines) // 10)]][:10]
        examples = examples_html(
            [r["instruction"]["text"] for r in shown], {name: [r[name] for r in shown] for name in stages}
        )
        text = (
            f"{record.metrics.get('instructions')} held-out instructions asked bare, greedy answers scored by code; "
            "KL from temperature-1 samples; win rate = the judge's mean P(stage ≻ previous stage), both orders."
        )
        return [Section(f"{record.name} (eval)", text, table_html(columns, rows) + examples)]

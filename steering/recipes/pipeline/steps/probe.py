"""The `probe` step: what did training change outside its prompts? (`steering.eval.probe`)

For each policy (`adapters = ["@sft", "@rl"]`), a battery of texts and prompts *outside* the
training distribution is scored under the base and the policy: per category the mean shift in
log-probability of the texts (nats, ± se) and the KL to the base of the policy's continuations of
the prompts, with the texts that moved most. The whole result per policy is in probe-<step>.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from steering.controls import Adapter
from steering.eval.probe import Battery, load_battery, probe
from steering.eval.report import Section, table_html
from steering.paths import atomic_write_text
from steering.recipes.pipeline.contract import StepContext, StepKind, StepRecord, StepResult
from steering.recipes.pipeline.spec import reference_step


@dataclass
class ProbeOptions:
    adapters: list[str] = field(default_factory=list)  # "@sft", "@rl", or adapter folders
    battery: str = "instruct"  # a packaged battery (sentiment, instruct, constitution) or a JSONL file
    per_category: int = 0  # the first N items of each category (0 = all)
    samples: int = 4
    max_new_tokens: int = 24
    top: int = 5


def first_per_category(battery: Battery, count: int) -> Battery:
    """The battery cut to its first `count` items per category (texts and prompts separately)."""
    if not count:
        return battery
    texts: dict[str, list[Any]] = {}
    prompts: dict[str, list[Any]] = {}
    for text in battery.texts:
        texts.setdefault(text.category, []).append(text)
    for prompt in battery.prompts:
        prompts.setdefault(prompt.category, []).append(prompt)
    return Battery(
        battery.name,
        [t for group in texts.values() for t in group[:count]],
        [p for group in prompts.values() for p in group[:count]],
    )


class Probe(StepKind):
    name = "probe"
    Options = ProbeOptions
    quick: ClassVar[dict[str, Any]] = {"per_category": 1, "samples": 1, "max_new_tokens": 8}

    def run(self, context: StepContext, options: Any) -> StepResult:
        battery = first_per_category(load_battery(options.battery), options.per_category)
        model = context.model(dtype="float32")
        results: dict[str, Any] = {}
        outputs: dict[str, str] = {}
        for index, adapter in enumerate(options.adapters):
            context.progress(index, len(options.adapters), f"probing {adapter}")
            name = reference_step(adapter) if adapter.startswith("@") else f"adapter{index}"
            result = probe(model, [Adapter(context.ref(adapter))], battery, samples=options.samples,
                           max_new_tokens=options.max_new_tokens, seed=context.recipe.seed)  # fmt: skip
            full = result.as_dict(top=options.top)
            atomic_write_text(context.folder / f"probe-{name}.json", json.dumps(full, indent=2) + "\n")
            outputs[name] = f"probe-{name}.json"
            results[name] = {
                k: full[k] for k in ("text_categories", "prompt_categories", "most_raised", "most_lowered")
            }
        return StepResult({"battery": battery.name, "policies": results}, outputs)

    def report(self, record: StepRecord) -> list[Section]:
        sections = []
        for name, result in record.metrics.get("policies", {}).items():
            rows = [[c, v["shift"]["mean"], v["shift"]["se"], v["shift_per_token"]["mean"], v["shift"]["n"]]
                    for c, v in result["text_categories"].items()]  # fmt: skip
            kl = [
                [c, v["kl"]["mean"], v["kl"]["se"], v["kl"]["n"]]
                for c, v in result["prompt_categories"].items()
            ]
            moved = [["raised", t["category"], t["shift"], t["text"]] for t in result["most_raised"]]
            moved += [["lowered", t["category"], t["shift"], t["text"]] for t in result["most_lowered"]]
            body = table_html(["category", "mean shift (nats)", "se", "per token", "n"], rows)
            body += table_html(["prompt category", "KL to base", "se", "samples"], kl)
            body += table_html(["", "category", "shift", "text"], moved)
            sections.append(Section(
                f"{record.name}: {name} on the {record.metrics.get('battery')} battery",
                "log p(text) under the policy minus under the base, per category; KL of the policy's continuations.",
                body,
            ))  # fmt: skip
        return sections

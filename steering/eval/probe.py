"""Probes: what did a reward (or an adapter) change *outside* the prompts it was trained on?

The design notes' warning: a sentiment reward implies a conditional, and it is not obvious how that
conditional generalises — "people are happier" would raise the probability of text about people
helping each other, "the text reports happiness" might lower it (a world that needs cheering up).
A probe battery holds texts and prompts from outside the training distribution, grouped in
categories, and `probe` measures the policy against the base on each:

- a **text item** `{"category", "text", "context"?}` is scored teacher-forced: the shift
  `log p_policy(text | context) − log p_base(text | context)` in nats, in total and per token;
- a **prompt item** `{"category", "prompt"}` is sampled from the policy (`steering.decode.generate`),
  and the books every sample carries give a one-sample KL estimate `Σ_t (log q − log p_base)`; its
  mean over the samples estimates KL(policy ‖ base) on that prompt.

Per category: the mean shift with its standard error (texts), the mean KL with its standard error
(prompts), and the texts that moved most in each direction. The project's own batteries
(`sentiment`, `instruct`, `constitution`) ship in `steering/eval/data/probes/`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch

from steering.controls.base import describe, split_controls
from steering.decode import Sample, generate
from steering.errors import InputFormatError, InvalidArgument, did_you_mean
from steering.jsonl import read_jsonl
from steering.models import LanguageModel

BATTERIES = ("sentiment", "instruct", "constitution")
TEXT_KEYS = {"category", "text", "context"}
PROMPT_KEYS = {"category", "prompt"}
EXAMPLE = '{"category": "helping", "text": "The neighbours carried her bags up the stairs."}'


@dataclass(frozen=True)
class TextProbe:
    """Score `text` after `context` (teacher-forced) under the base and the policy."""

    category: str
    text: str
    context: str = ""


@dataclass(frozen=True)
class PromptProbe:
    """Sample continuations of `prompt` from the policy; their books estimate KL to the base."""

    category: str
    prompt: str


@dataclass(frozen=True)
class Battery:
    """A battery's text items and prompt items, in file order."""

    name: str
    texts: list[TextProbe]
    prompts: list[PromptProbe]


def load_battery(source: str | Path) -> Battery:
    """A built-in battery by name (`sentiment`, `instruct`, `constitution`) or a JSONL file.

    Raises:
        InputFormatError: the file is missing or malformed (file:line and field), or holds no items.
    """
    if str(source) in BATTERIES:
        resource = files("steering.eval").joinpath(f"data/probes/{source}.jsonl")
        return read_battery(Path(str(resource)), name=str(source))
    path = Path(source)
    if not path.exists() and path.suffix != ".jsonl":
        raise InputFormatError(
            f"no probe battery named {str(source)!r}.{did_you_mean(str(source), BATTERIES)}",
            received=str(source),
            fix=f"name a built-in battery ({', '.join(BATTERIES)}) or give a JSONL file",
        )
    return read_battery(path, name=path.stem)


def read_battery(path: str | Path, *, name: str | None = None) -> Battery:
    """Read a battery file strictly: each line is a text item or a prompt item, nothing else.

    Raises:
        InputFormatError: bad JSON, a row that is not an object, an unknown or missing key, a value
            that is not a non-empty string (file:line named), or a file with no items.
    """
    texts: list[TextProbe] = []
    prompts: list[PromptProbe] = []
    for number, _, value in read_jsonl(path, what="probe battery", example=EXAMPLE):
        item = _parse_item(f"{path}:{number}", value)
        if isinstance(item, TextProbe):
            texts.append(item)
        else:
            prompts.append(item)
    if not texts and not prompts:
        raise InputFormatError(
            f"the probe battery {path} has no items",
            received="an empty file",
            fix=f"add lines like {EXAMPLE}",
        )
    return Battery(name=name or Path(path).stem, texts=texts, prompts=prompts)


def _parse_item(where: str, value: Any) -> TextProbe | PromptProbe:
    fix = f'each line is {EXAMPLE} (optionally with "context") or {{"category": …, "prompt": …}}'
    if not isinstance(value, dict):
        raise InputFormatError(f"{where}: a row must be a JSON object", received=repr(value)[:120], fix=fix)
    keys = set(value)
    allowed = TEXT_KEYS if "text" in keys else PROMPT_KEYS if "prompt" in keys else None
    if allowed is None:
        raise InputFormatError(
            f"{where}: a row needs a 'text' (to score) or a 'prompt' (to sample)",
            received=sorted(keys),
            fix=fix,
        )
    unknown = sorted(keys - allowed)
    if unknown:
        raise InputFormatError(
            f"{where}: unknown key {unknown[0]!r}.{did_you_mean(unknown[0], allowed)}",
            received=unknown,
            fix=fix,
        )

    def text(key: str, *, allow_empty: bool = False) -> str:
        if key not in value:
            raise InputFormatError(f"{where}: field {key!r} is missing", received=sorted(keys), fix=fix)
        field_value = value[key]
        if not isinstance(field_value, str) or (not allow_empty and not field_value.strip()):
            problem = "must be a string" if not isinstance(field_value, str) else "is empty"
            raise InputFormatError(
                f"{where}: field {key!r} {problem}", received=repr(field_value)[:120], fix=fix
            )
        return field_value

    if "text" in keys:
        return TextProbe(
            text("category"), text("text"), text("context", allow_empty=True) if "context" in keys else ""
        )
    return PromptProbe(text("category"), text("prompt"))


@dataclass(frozen=True)
class TextShift:
    """One text's log-probability under the base and the policy (nats, summed over its tokens)."""

    category: str
    context: str
    text: str
    tokens: int
    logp_base: float
    logp_policy: float

    @property
    def shift(self) -> float:
        """log p_policy − log p_base: > 0 when the policy made the text more likely."""
        return self.logp_policy - self.logp_base

    @property
    def shift_per_token(self) -> float:
        return self.shift / self.tokens


@dataclass(frozen=True)
class Estimate:
    """A mean over `n` values with its standard error (None when n < 2: unknown, not zero)."""

    mean: float
    se: float | None
    n: int

    @staticmethod
    def of(values: Sequence[float]) -> Estimate:
        """Mean and standard error s / √n (s: the sample standard deviation, n − 1 in the denominator)."""
        n = len(values)
        mean = sum(values) / n
        if n < 2:
            return Estimate(mean, None, n)
        variance = sum((v - mean) ** 2 for v in values) / (n - 1)
        return Estimate(mean, math.sqrt(variance / n), n)

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "se": self.se, "n": self.n}

    def show(self, digits: int = 3) -> str:
        return f"{self.mean:+.{digits}f}" + ("" if self.se is None else f" ± {self.se:.{digits}f}")


@dataclass(frozen=True)
class PromptKL:
    """The policy's samples of one prompt: the per-sample KL estimates Σ(log q − log p_base)."""

    category: str
    prompt: str
    kls: list[float]
    texts: list[str]


@dataclass
class ProbeResult:
    """What `probe` measured: per text its shift, per prompt its samples' KL; summaries per category."""

    battery: str
    model: str
    controls: list[str]
    texts: list[TextShift]
    prompts: list[PromptKL]
    samples: int
    max_new_tokens: int
    seed: int
    categories: list[str] = field(init=False)
    prompt_categories: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.categories = list(dict.fromkeys(t.category for t in self.texts))
        self.prompt_categories = list(dict.fromkeys(p.category for p in self.prompts))

    def shift(self, category: str, *, per_token: bool = False) -> Estimate:
        """Mean shift (nats; per token if asked) of the category's texts, ± its standard error."""
        rows = [t for t in self.texts if t.category == category]
        return Estimate.of([t.shift_per_token if per_token else t.shift for t in rows])

    def kl(self, category: str) -> Estimate:
        """Mean KL estimate over every sample of the category's prompts, ± its standard error."""
        return Estimate.of([kl for p in self.prompts if p.category == category for kl in p.kls])

    def most_moved(self, k: int) -> tuple[list[TextShift], list[TextShift]]:
        """The k texts whose log-probability rose most, and the k whose fell most (by total nats)."""
        ranked = sorted(self.texts, key=lambda t: t.shift)
        up = [t for t in reversed(ranked) if t.shift > 0][:k]
        down = [t for t in ranked if t.shift < 0][:k]
        return up, down

    def as_dict(self, *, top: int = 5) -> dict[str, Any]:
        """Everything as JSON-serialisable values (no NaN: an unknown standard error is null)."""
        up, down = self.most_moved(top)
        return {
            "battery": self.battery,
            "model": self.model,
            "controls": self.controls,
            "samples": self.samples,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            "text_categories": {
                c: {
                    "shift": self.shift(c).as_dict(),
                    "shift_per_token": self.shift(c, per_token=True).as_dict(),
                }
                for c in self.categories
            },
            "prompt_categories": {c: {"kl": self.kl(c).as_dict()} for c in self.prompt_categories},
            "most_raised": [_text_record(t) for t in up],
            "most_lowered": [_text_record(t) for t in down],
            "texts": [_text_record(t) for t in self.texts],
            "prompts": [
                {
                    "category": p.category,
                    "prompt": p.prompt,
                    "kl": Estimate.of(p.kls).as_dict(),
                    "samples": p.texts,
                }
                for p in self.prompts
            ],
        }

    def as_markdown(self, *, top: int = 5) -> str:
        """Per-category tables (shift ± se; KL ± se) and the most-moved texts, as Markdown."""
        lines = [
            f"Probe `{self.battery}` on {self.model} with {', '.join(self.controls) or 'no controls'}",
            "",
        ]
        if self.categories:
            lines += ["| category | n | Δ log p (nats) | Δ log p per token |", "|---|---:|---:|---:|"]
            for c in self.categories:
                total, per_token = self.shift(c), self.shift(c, per_token=True)
                lines.append(f"| {c} | {total.n} | {total.show()} | {per_token.show(4)} |")
            lines.append("")
        if self.prompt_categories:
            lines += [
                f"| prompt category | samples | KL to base (nats, {self.max_new_tokens} tokens) |",
                "|---|---:|---:|",
            ]
            for c in self.prompt_categories:
                kl = self.kl(c)
                lines.append(f"| {c} | {kl.n} | {kl.show()} |")
            lines.append("")
        up, down = self.most_moved(top)
        for title, rows in (("Most raised", up), ("Most lowered", down)):
            if rows:
                lines += [f"{title}:", ""]
                lines += [f"- {t.shift:+.3f} nats [{t.category}] {_one_line(t.text)}" for t in rows]
                lines.append("")
        return "\n".join(lines).rstrip() + "\n"


def _text_record(t: TextShift) -> dict[str, Any]:
    return {
        "category": t.category,
        "context": t.context,
        "text": t.text,
        "tokens": t.tokens,
        "logp_base": t.logp_base,
        "logp_policy": t.logp_policy,
        "shift": t.shift,
        "shift_per_token": t.shift_per_token,
    }


def _one_line(text: str, width: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def probe(
    model: LanguageModel,
    policy_controls: Sequence[object],
    battery: Battery,
    *,
    samples: int = 4,
    max_new_tokens: int = 24,
    seed: int = 0,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> ProbeResult:
    """Measure the policy (the model under `policy_controls`) against the base on a battery.

    Args:
        model: the base model, from `load_model`.
        policy_controls: what makes the policy, e.g. `[Adapter("runs/rl/adapter")]`; `[]` is the base
            itself (every shift and KL is then exactly 0). Texts are scored under model controls
            (adapters, steering vectors) and context controls (the context is rendered through them);
            logit controls can be probed with prompt items only.
        battery: from `load_battery`.
        samples: policy samples per prompt item.
        max_new_tokens: budget of each sample.
        seed: same seed, same samples.
        batch_size: rows decoded together.
        progress: called as sampling advances, with the token slots done (of prompts × samples ×
            max_new_tokens in all).

    Raises:
        InvalidArgument: logit controls with text items, a bad sample count, or a context plus text
            longer than the model's window.
    """
    if not isinstance(samples, int) or samples < 1:
        raise InvalidArgument(
            "samples must be a positive integer", received=samples, fix="use e.g. samples=4"
        )
    context_controls, logit_controls, model_controls = split_controls(policy_controls)
    if battery.texts and logit_controls:
        raise InvalidArgument(
            "texts can be scored under model and context controls only, not under logit controls",
            received=[describe(c) for c in logit_controls],
            fix="probe a battery of prompt items only, or drop the logit controls",
        )
    base = _score(model, battery.texts, contexts=[t.context for t in battery.texts], controls=[])
    rendered = [_render(model, t.context, context_controls) for t in battery.texts]
    policy = _score(model, battery.texts, contexts=rendered, controls=model_controls)
    shifts = [
        TextShift(t.category, t.context, t.text, len(b), float(b.sum()), float(q.sum()))
        for t, b, q in zip(battery.texts, base, policy, strict=True)
    ]
    kls: list[PromptKL] = []
    if battery.prompts:
        drawn = generate(
            model,
            [p.prompt for p in battery.prompts],
            controls=list(policy_controls),
            n=samples,
            max_new_tokens=max_new_tokens,
            seed=seed,
            batch_size=batch_size,
            progress=progress,
        )
        kls = [
            _prompt_kl(p, [s for s in drawn if s.prompt_index == i]) for i, p in enumerate(battery.prompts)
        ]
    return ProbeResult(
        battery=battery.name,
        model=model.name,
        controls=[describe(c) for c in policy_controls],
        texts=shifts,
        prompts=kls,
        samples=samples,
        max_new_tokens=max_new_tokens,
        seed=seed,
    )


def _render(model: LanguageModel, context: str, controls: Sequence[Any]) -> str:
    for control in controls:  # the first is innermost, as in generate
        context = control.render(context, tokenizer=model.tokenizer)
    return context


def _score(
    model: LanguageModel, texts: Sequence[TextProbe], *, contexts: Sequence[str], controls: Sequence[Any]
) -> list[torch.Tensor]:
    """Per-token log p(text | context), teacher-forced, with `controls` (model controls) attached."""
    if not texts:
        return []
    for text, context in zip(texts, contexts, strict=True):
        if not model.encode(context):
            raise InvalidArgument(
                f"the model {model.name} adds no start token, so a text with an empty context cannot be scored",
                received=text.text[:80],
                fix='give each text item a "context" (the text it follows)',
            )
    continuations = [model.encode_continuation(t.text) for t in texts]
    with ExitStack() as stack:
        for control in controls:
            stack.enter_context(control.attached(model))
        return model.logprobs(list(contexts), continuations)


def _prompt_kl(item: PromptProbe, drawn: list[Sample]) -> PromptKL:
    return PromptKL(item.category, item.prompt, [s.kl for s in drawn], [s.text for s in drawn])

"""Context controls: templates, the Q:/A: wrapper, few-shot demonstrations, chat templates, prefixes.

They change the *input*. The base distribution the engine reports (`logp_base`) stays the model on
the user's raw prompt, so `Samples.kl` measures what the context change cost.
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steering.errors import InputFormatError, InvalidArgument, TemplateError, check_seed, did_you_mean
from steering.jsonl import read_jsonl, read_text


def template_fields(template: str) -> list[str]:
    """Named fields of a `str.format` template, in order, without duplicates."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise TemplateError(
            f"the template is not a valid format string ({error})",
            received=template,
            fix="write fields as {name} and literal braces as {{ and }}",
        ) from error
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if name == "" or not name.isidentifier():
            raise TemplateError(
                "template fields must be names like {prompt}; positional {} and expressions are not allowed",
                received=f"{{{name}}}",
                fix="name every field, e.g. {prompt} or {context}",
            )
        if name not in names:
            names.append(name)
    return names


@dataclass(frozen=True)
class PromptTemplate:
    """A template with named fields; `{prompt}` receives the user's prompt.

    Example: `PromptTemplate("Translate to {language}: {prompt}\\n", fields={"language": "French"})`.
    A field in the template with no value, or a value for a field the template lacks, is an error
    that names it.
    """

    template: str
    fields: Mapping[str, str] = field(default_factory=dict)
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = template_fields(self.template)
        if "prompt" not in names:
            raise TemplateError(
                "the template has no {prompt} field, so the user's prompt would be dropped",
                received=self.template,
                fix="add {prompt} where the prompt goes",
            )
        missing = [n for n in names if n != "prompt" and n not in self.fields]
        if missing:
            raise TemplateError(
                f"the template field {{{missing[0]}}} has no value",
                received=f"fields given: {sorted(self.fields) or 'none'}",
                fix=f"pass {missing[0]}=... (template fields: {', '.join(names)})",
            )
        unknown = [k for k in self.fields if k not in names]
        if unknown:
            raise TemplateError(
                f"the value '{unknown[0]}' matches no field of the template."
                + did_you_mean(unknown[0], names),
                received=f"template fields: {', '.join(names)}",
                fix="remove it or add {" + unknown[0] + "} to the template",
            )
        if "prompt" in self.fields:
            raise TemplateError(
                "{prompt} is filled by the user's prompt and cannot be given as a field",
                received="prompt=…",
                fix="remove it from the fields",
            )

    def render(self, prompt: str, *, tokenizer: Any = None) -> str:
        return self.template.format(prompt=prompt, **self.fields)


def QA(*, question_prefix: str = "Q:", answer_prefix: str = "A:") -> PromptTemplate:
    """The Q:/A: wrapper: `Q: {prompt}\\nA:`, stopping where the model starts a new question."""
    return PromptTemplate(f"{question_prefix} {{prompt}}\n{answer_prefix}", stop=(f"\n{question_prefix}",))


@dataclass(frozen=True)
class Demonstration:
    prompt: str
    completion: str


@dataclass(frozen=True)
class FewShot:
    """Prepend demonstrations in the same format as the query.

    Args:
        demonstrations: (prompt, completion) pairs, e.g. from `load_demonstrations(path)`.
        format: how one demonstration reads; the query is the same with the completion left open.
        separator: text between demonstrations.
        shuffle_seed: None keeps the given order; an int shuffles it reproducibly.
    """

    demonstrations: tuple[Demonstration, ...]
    format: str = "Q: {prompt}\nA: {completion}"
    separator: str = "\n\n"
    shuffle_seed: int | None = None

    def __post_init__(self) -> None:
        if not self.demonstrations:
            raise InvalidArgument(
                "few-shot prompting needs at least one demonstration",
                received="an empty list",
                fix="pass (prompt, completion) pairs or a JSONL file with prompt/completion fields",
            )
        names = template_fields(self.format)
        if set(names) != {"prompt", "completion"}:
            raise TemplateError(
                "a few-shot format must have exactly the fields {prompt} and {completion}",
                received=self.format,
                fix='use e.g. "Q: {prompt}\\nA: {completion}"',
            )
        if not self.format.rstrip().endswith("{completion}"):
            raise TemplateError(
                "a few-shot format must end with {completion} so the query leaves it open",
                received=self.format,
                fix='use e.g. "Q: {prompt}\\nA: {completion}"',
            )
        if self.shuffle_seed is not None:
            check_seed(self.shuffle_seed, name="shuffle_seed")

    @property
    def stop(self) -> tuple[str, ...]:
        """Where the next demonstration would begin: the format's text before {prompt}."""
        head = self.format.split("{prompt}")[0].strip()
        if not head:
            return (self.separator,) if self.separator.strip() else ()
        # The earliest match wins, so "\n\nQ:" trims the blank line too; "\nQ:" catches one newline.
        return tuple(dict.fromkeys([f"{self.separator}{head}", f"\n{head}"]))

    def render(self, prompt: str, *, tokenizer: Any = None) -> str:
        demos = list(self.demonstrations)
        if self.shuffle_seed is not None:
            random.Random(self.shuffle_seed).shuffle(demos)
        shots = [self.format.format(prompt=d.prompt, completion=d.completion) for d in demos]
        query = self.format.split("{completion}")[0].format(prompt=prompt).rstrip(" ")
        return self.separator.join([*shots, query])


def load_demonstrations(path: str | Path) -> tuple[Demonstration, ...]:
    """Read demonstrations from JSONL: `{"prompt","completion"}` (or `{"question","answer"}`) per line."""
    demos: list[Demonstration] = []
    example = '{"prompt": "…", "completion": "…"}'
    for number, line, row in read_jsonl(path, what="demonstrations file", example=example):
        prompt = row.get("prompt", row.get("question")) if isinstance(row, dict) else None
        completion = row.get("completion", row.get("answer")) if isinstance(row, dict) else None
        if not isinstance(prompt, str) or not isinstance(completion, str):
            raise InputFormatError(
                f"{path}:{number}: a demonstration needs string fields 'prompt' and 'completion'",
                received=line[:120],
                fix='write {"prompt": "…", "completion": "…"}',
            )
        demos.append(Demonstration(prompt, completion))
    if not demos:
        raise InputFormatError(f"{path} has no demonstrations", received="an empty file", fix="add lines")
    return tuple(demos)


@dataclass(frozen=True)
class Instruction:
    """A system/instruction prefix placed before the prompt."""

    text: str
    separator: str = "\n\n"
    stop: tuple[str, ...] = ()

    def render(self, prompt: str, *, tokenizer: Any = None) -> str:
        return f"{self.text}{self.separator}{prompt}"


@dataclass(frozen=True)
class ChatTemplate:
    """The tokenizer's own chat template, with an optional system message."""

    system: str | None = None
    stop: tuple[str, ...] = ()

    def render(self, prompt: str, *, tokenizer: Any) -> str:
        if not getattr(tokenizer, "chat_template", None):
            raise TemplateError(
                "this model's tokenizer has no chat template",
                received=type(tokenizer).__name__,
                fix="use --template qa or a template file, or a chat model such as smollm2-135m-instruct",
            )
        messages: list[dict[str, str]] = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages.append({"role": "user", "content": prompt})
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


BUILTIN_TEMPLATES = ("qa", "chat", "instruct")


def template_from_name(name_or_path: str) -> PromptTemplate | ChatTemplate:
    """`qa`, `chat`, `instruct`, or a text file containing a template with {prompt}."""
    if name_or_path == "qa":
        return QA()
    if name_or_path == "chat":
        return ChatTemplate()
    if name_or_path == "instruct":
        return PromptTemplate("Instruction: {prompt}\nResponse:", stop=("\nInstruction:",))
    path = Path(name_or_path)
    if path.is_file():
        return PromptTemplate(read_text(path, what="template file").rstrip("\n"))
    raise TemplateError(
        f"'{name_or_path}' is neither a built-in template nor a file."
        + did_you_mean(name_or_path, BUILTIN_TEMPLATES),
        received=name_or_path,
        fix=f"use one of {', '.join(BUILTIN_TEMPLATES)} or the path of a text file containing {{prompt}}",
    )


def demonstrations(pairs: Sequence[tuple[str, str]]) -> tuple[Demonstration, ...]:
    """Demonstrations from (prompt, completion) pairs."""
    return tuple(Demonstration(p, c) for p, c in pairs)

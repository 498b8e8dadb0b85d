"""The two kinds of control and how a list of them is split and described.

- A **context control** changes the input: `render(prompt, tokenizer=...) -> str`, and may add
  stop sequences (`stop`). Because it changes the context, the decode engine rescores every sampled
  token under the base model on the user's *raw* prompt to fill `logp_base`.
- A **model control** (activation steering) changes the model during generation through forward
  hooks (`attached(model)`, a context manager); `logp_base` is then rescored with the unhooked model.
- A **logit control** changes the next-token scores: `__call__(input_ids, scores) -> scores`, the
  signature of a Hugging Face `LogitsProcessor` (so HF processors can be passed here, and ours
  can be passed to `model.generate`). `scores` are float32 log-probabilities, shape (B, V); the
  engine renormalises after the last control, and that distribution is `logq`.

Controls apply in list order: context controls wrap the prompt from the first to the last (the first
is innermost), logit controls transform the scores from the first to the last.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from steering.errors import InvalidArgument


@runtime_checkable
class ContextControl(Protocol):
    """Changes the text the model is conditioned on."""

    stop: tuple[str, ...]

    def render(self, prompt: str, *, tokenizer: Any) -> str: ...


@runtime_checkable
class LogitControl(Protocol):
    """Changes next-token scores; the Hugging Face `LogitsProcessor` signature."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ModelControl(Protocol):
    """Changes the model itself while generating (forward hooks): `attached(model)` is a context manager."""

    def attached(self, model: Any) -> Any: ...


Control = ContextControl | LogitControl | ModelControl


def split_controls(
    controls: Sequence[object],
) -> tuple[list[ContextControl], list[LogitControl], list[ModelControl]]:
    """Separate context, logit and model controls, keeping each list's order."""
    context: list[ContextControl] = []
    logits: list[LogitControl] = []
    model: list[ModelControl] = []
    for control in controls:
        is_model = callable(getattr(control, "attached", None))
        is_context = callable(getattr(control, "render", None))
        if is_model:
            model.append(control)  # type: ignore[arg-type]
        if is_context:  # a soft prompt is both: placeholders in the text, vectors in the embedding
            context.append(control)  # type: ignore[arg-type]
        if is_model or is_context:
            continue
        if callable(control):
            logits.append(control)  # type: ignore[arg-type]
        else:
            raise InvalidArgument(
                "a control must have a `render(prompt, tokenizer=...)` method (context control) or be "
                "callable as `(input_ids, scores) -> scores` (logit control)",
                received=type(control).__name__,
                fix="use a control from steering.controls or an HF LogitsProcessor",
            )
    return context, logits, model


def describe(control: object) -> str:
    """A short human-readable name with parameters, e.g. `TopP(p=0.9)`."""
    text = repr(control)
    return text if len(text) <= 80 else text[:77] + "…"

"""The control contract: the three kinds of control, every hook the decode engine calls, and their defaults.

- A **context control** changes the input: `render(prompt, tokenizer=...) -> str`, and may add
  stop sequences (`stop`). Because it changes the context, the decode engine rescores every sampled
  token under the base model on the user's *raw* prompt to fill `logp_base`.
- A **model control** (activation steering, adapters) changes the model during generation through
  forward hooks (`attached(model)`, a context manager); `logp_base` is then rescored with the plain model.
  A model control may act per prompt (`MixedAdapters`: prompt i wears adapter i): whoever runs the
  model with it attached says which prompt each batch row belongs to with `forward_rows(indices)`
  (the decode engine does, around every forward), and the control reads them with `current_rows()`.
- A **logit control** changes the next-token scores: `__call__(input_ids, scores) -> scores`, the
  signature of a Hugging Face `LogitsProcessor`. `scores` are float32 log-probabilities, shape (B, V);
  the engine renormalises after the last control, and that distribution is `logq`.

A logit control is the `LogitControl` protocol: `__call__` plus four groups of hooks, each a Protocol
below, every one of them called by the engine directly (never looked up):

- `RowState` — `start` before each batch, `set_budget` with each row's token budget, `restart_row`
  when a new prompt takes a batch row (continuous batching), `select_rows` when SMC resamples the
  rows, `consume` after each sampled token;
- `Constraint` — `is_complete` (the constraint is finished: the row stops) and `accepts` (may the text
  end here?);
- `FastPaths` — `masks_only`, `point_mass`, `token_pools`: exact shortcuts the engine may take;
- `StateObserver` — `observe_state(DecodeState)` before each step, for controls that run the model.

**Write a control by subclassing `LogitControlBase`**: you write `__call__`, and only the hooks your
control needs; every other hook has a stateless default (no per-row state, never complete, always
accepts, no fast path). What a control can do is *declared* by its capabilities, never inferred from
which methods it has:

| capability | default | what it buys | declare it when |
|---|---|---|---|
| `can_restart_row` | True | continuous batching (a freed slot takes the next prompt) | `restart_row` resets a row |
| `can_select_rows` | True | use as an SMC proposal (rows are resampled) | `select_rows` re-indexes the rows |
| `decides_completion` | False | `is_complete` ends a row ("stop"); out of budget before: "unfinished" | it is a constraint |
| `masks_only` | False | the exact masked draw (no second log-softmax) | `__call__` only sets −inf |
| `offers_token_pools` | False | the pooled draw (only the allowed ids are read) | `token_pools` is written |
| `point_mass` | False | greedy without a (B, V) pass, when the control is last | q is the argmax |

Derived from those declarations by the engine, never written by a control: whether a batch refills
its slots (every control `can_restart_row`), which draw runs (pooled on the CPU when every control
`offers_token_pools`, else greedy when the last is a `point_mass`, else masked when every control is
`masks_only`, else the general one), which controls end rows (those that `decides_completion`) and
whether SMC takes a proposal (every control `can_select_rows`).

A control that keeps per-row state (one entry per row, reset in `start`, advanced in `consume`) must
either write `restart_row` and `select_rows` or declare `can_restart_row = False` /
`can_select_rows = False`; the conformance suite (`tests/controls/test_conformance.py`, run on every
control exported by `steering.controls`) checks that refilled and resampled batches give the same
samples.

Foreign logit controls — a Hugging Face `LogitsProcessor`, a function — are normalised at the edge:
`split_controls` wraps a callable that has none of the hooks in `CallableControl` (every default), so
the engine sees one contract. An object with some of the hooks but not all is refused: its hooks would
otherwise be ignored.

Controls apply in list order: context controls wrap the prompt from the first to the last (the first
is innermost), logit controls transform the scores from the first to the last.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from steering.errors import InvalidArgument
from steering.models.language_model import LanguageModel


@runtime_checkable
class ContextControl(Protocol):
    """Changes the text the model is conditioned on."""

    stop: tuple[str, ...]

    def render(self, prompt: str, *, tokenizer: Any) -> str: ...


@runtime_checkable
class ModelControl(Protocol):
    """Changes the model itself while generating (forward hooks): `attached(model)` is a context manager."""

    def attached(self, model: Any) -> Any: ...


_FORWARD_ROWS: ContextVar[tuple[int, ...] | None] = ContextVar("steering_forward_rows", default=None)


@contextmanager
def forward_rows(prompt_indices: Sequence[int]) -> Iterator[None]:
    """Inside the block, row r of every forward pass belongs to prompt `prompt_indices[r]`."""
    token = _FORWARD_ROWS.set(tuple(int(i) for i in prompt_indices))
    try:
        yield
    finally:
        _FORWARD_ROWS.reset(token)


def current_rows() -> tuple[int, ...] | None:
    """The prompt index of each row of the forward pass being run, or None outside `forward_rows`."""
    return _FORWARD_ROWS.get()


@dataclass
class DecodeState:
    """What the engine holds at one step, for controls that run the model themselves (PPLM).

    Attributes:
        model: the model being decoded.
        cache: the KV cache after the last forward (it includes `last_tokens`).
        attention_mask: (B, L) 1 for real tokens, 0 for left padding, covering every cached position.
        last_positions: (B, 1) position ids of `last_tokens`.
        last_tokens: (B, 1) the tokens whose forward produced this step's logits.
        input_ids: (B, L) every token so far (left-padded prompt, then the generated tokens).
    """

    model: LanguageModel
    cache: Any
    attention_mask: torch.Tensor
    last_positions: torch.Tensor
    last_tokens: torch.Tensor
    input_ids: torch.Tensor


class RowState(Protocol):
    """Per-row state: one entry per batch row, kept in step with the engine's rows."""

    @property
    def can_restart_row(self) -> bool:
        """`restart_row` resets a row, so a freed slot may take the next prompt (continuous batching)."""
        ...

    @property
    def can_select_rows(self) -> bool:
        """`select_rows` re-indexes the rows, so SMC may resample them."""
        ...

    def start(self, *, tokenizer: Any, prompt_width: int, batch_size: int) -> None:
        """Before each batch: compile what depends on the tokenizer, reset every row.

        `prompt_width` is the width of the left-padded prompts: generated tokens start there.
        """
        ...

    def restart_row(self, row: int, *, prompt_ids: Sequence[int]) -> None:
        """A new prompt (`prompt_ids`, no padding) takes batch row `row`; its generated tokens start empty."""
        ...

    def set_budget(self, row: int, *, budget: int | None) -> None:
        """Row `row` may sample at most `budget` tokens in all (None: the decoder knows no limit).

        Called after `start` for every row and after `restart_row` for a refilled one; a control
        that keeps budgets re-indexes them in `select_rows`. For controls that plan to finish in time
        (grammars): the mask may depend on the row's tokens and its budget, never on its batch.
        """
        ...

    def select_rows(self, indices: Sequence[int]) -> None:
        """The batch was re-formed: row j continues row `indices[j]` (rows may repeat)."""
        ...

    def consume(self, generated: Sequence[int], *, row: int) -> None:
        """After each sampled token: `generated` is every token row `row` has generated so far."""
        ...


class Constraint(Protocol):
    """A constraint on the whole text: when it is finished, and whether the text may end here."""

    @property
    def decides_completion(self) -> bool:
        """`is_complete` ends rows: a row stops ("stop") once every such control says complete, and a
        row that runs out of budget before is "unfinished" (never a valid sample)."""
        ...

    def is_complete(self, generated: Sequence[int], *, row: int) -> bool:
        """After each sampled token (every token, even past completion): is the constraint finished?"""
        ...

    def accepts(self, generated: Sequence[int], *, row: int) -> bool:
        """When a row ends (EOS, a stop sequence, its budget): may the text end here? No → "unfinished"."""
        ...


class FastPaths(Protocol):
    """Exact shortcuts the engine may take instead of the general (B, V) step; same numbers, less work."""

    @property
    def masks_only(self) -> bool:
        """`__call__` only sets tokens to −inf: with every control so, q is p restricted and renormalised."""
        ...

    @property
    def point_mass(self) -> bool:
        """As the last control, `__call__` leaves one token (greedy): the engine takes the argmax."""
        ...

    @property
    def offers_token_pools(self) -> bool:
        """`token_pools` gives each row's allowed tokens (with `masks_only`): the engine samples the pools."""
        ...

    def token_pools(self, input_ids: torch.Tensor, vocab: int) -> list[torch.Tensor | None]:
        """Per row, what `__call__` would keep: sorted allowed ids, a (vocab,) bool row, or None (every token).

        Called instead of `__call__` (on the CPU, when every control offers pools), so it also does
        whatever per-step work `__call__` does.
        """
        ...


class StateObserver(Protocol):
    """Controls that run the model themselves (PPLM) see the engine's state before each step."""

    def observe_state(self, state: DecodeState) -> None:
        """Before each step's controls are called."""
        ...


class LogitControl(RowState, Constraint, FastPaths, StateObserver, Protocol):
    """The whole logit-control contract: the scores transform plus every hook (see the module docstring)."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """input_ids: (B, L) every token so far; scores: (B, V) float32 log-probabilities → (B, V) scores."""
        ...


class LogitControlBase(ABC):
    """Base class of logit controls: write `__call__` and the hooks you need; the rest are stateless defaults.

    The defaults describe a control without per-row state that only transforms scores: nothing to
    start, restart or re-index, never complete, accepts every ending, no fast path. Override a
    capability (a class attribute, e.g. `masks_only = True`) to declare what your control supports.
    """

    @abstractmethod
    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """input_ids: (B, L) every token so far; scores: (B, V) float32 log-probabilities → (B, V) scores."""

    @property
    def can_restart_row(self) -> bool:
        """Default True: without per-row state there is nothing to restart."""
        return True

    @property
    def can_select_rows(self) -> bool:
        """Default True: without per-row state there is nothing to re-index."""
        return True

    @property
    def decides_completion(self) -> bool:
        """Default False: not a constraint; rows end by EOS, stop sequences and budgets."""
        return False

    @property
    def masks_only(self) -> bool:
        """Default False: `__call__` may change any score."""
        return False

    @property
    def point_mass(self) -> bool:
        """Default False."""
        return False

    @property
    def offers_token_pools(self) -> bool:
        """Default False: the engine calls `__call__`."""
        return False

    def start(self, *, tokenizer: Any, prompt_width: int, batch_size: int) -> None:  # noqa: B027 (a default)
        """Default: nothing to prepare."""

    def restart_row(self, row: int, *, prompt_ids: Sequence[int]) -> None:  # noqa: B027 (a default)
        """Default: no per-row state."""

    def set_budget(self, row: int, *, budget: int | None) -> None:  # noqa: B027 (a default)
        """Default: budgets are not needed."""

    def select_rows(self, indices: Sequence[int]) -> None:  # noqa: B027 (a default)
        """Default: no per-row state."""

    def consume(self, generated: Sequence[int], *, row: int) -> None:  # noqa: B027 (a default)
        """Default: no per-row state."""

    def is_complete(self, generated: Sequence[int], *, row: int) -> bool:
        """Default False (only read when `decides_completion`)."""
        return False

    def accepts(self, generated: Sequence[int], *, row: int) -> bool:
        """Default True: any ending is fine."""
        return True

    def token_pools(self, input_ids: torch.Tensor, vocab: int) -> list[torch.Tensor | None]:
        """Only called when `offers_token_pools` is declared, which the default does not."""
        raise InvalidArgument(
            f"{type(self).__name__} declares offers_token_pools but does not write token_pools",
            received=type(self).__name__,
            fix="write token_pools(input_ids, vocab), or leave offers_token_pools False",
        )

    def observe_state(self, state: DecodeState) -> None:  # noqa: B027 (a default)
        """Default: the engine's state is not needed."""


class CallableControl(LogitControlBase):
    """A plain `(input_ids, scores) -> scores` callable (a Hugging Face `LogitsProcessor`, a function)
    as a logit control with every default: stateless, restartable, no fast path."""

    def __init__(self, function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.function = function

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return self.function(input_ids, scores)

    def __repr__(self) -> str:
        return repr(self.function)


def _members(*protocols: type) -> tuple[str, ...]:
    return tuple(name for protocol in protocols for name in vars(protocol) if not name.startswith("_"))


HOOKS = _members(RowState, Constraint, FastPaths, StateObserver)
"""Every member of the logit-control contract besides `__call__`."""


def as_logit_control(control: object) -> LogitControl:
    """`control` itself when it has the whole contract; a plain callable wrapped in `CallableControl`.

    Raises:
        InvalidArgument: not callable, or some of the contract's hooks present but not all.
    """
    if isinstance(control, LogitControlBase):
        return control
    present = [name for name in HOOKS if hasattr(control, name)]
    if callable(control) and len(present) == len(HOOKS):
        return control  # type: ignore[return-value]  # the whole contract, written without the base
    if present:
        missing = [name for name in HOOKS if name not in present]
        raise InvalidArgument(
            f"{type(control).__name__} has some of the logit-control hooks ({', '.join(present)}) but "
            f"not all of them, so the engine could not call them",
            received=f"missing: {', '.join(missing)}",
            fix="subclass steering.controls.LogitControlBase (it has every default) and declare its capabilities",
        )
    if not callable(control):
        raise InvalidArgument(
            "a control must have a `render(prompt, tokenizer=...)` method (context control), an "
            "`attached(model)` context manager (model control), or be callable as "
            "`(input_ids, scores) -> scores` (logit control)",
            received=type(control).__name__,
            fix="use a control from steering.controls or an HF LogitsProcessor",
        )
    _check_callable(control)
    return CallableControl(control)  # type: ignore[arg-type]


def _check_callable(function: Callable[..., object]) -> None:
    """Refuse a plain callable that cannot be called as `(input_ids, scores)` (e.g. a control factory)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return  # no signature to read (some builtins): trusted
    try:
        signature.bind(None, None)
    except TypeError:
        name = getattr(function, "__qualname__", type(function).__name__)
        raise InvalidArgument(
            f"{name} is not a logit control: it cannot be called as (input_ids, scores) -> scores",
            received=f"{name}{signature}",
            fix=f"if it makes a control, call it and pass the result: controls=[{name}(…)]",
        ) from None


Control = ContextControl | LogitControl | ModelControl


def split_controls(
    controls: Sequence[object],
) -> tuple[list[ContextControl], list[LogitControl], list[ModelControl]]:
    """Separate context, logit and model controls, keeping each list's order.

    A soft prompt is both a context and a model control (placeholders in the text, vectors in the
    embedding). Logit controls come back normalised by `as_logit_control`.

    Raises:
        InvalidArgument: `controls` is one control or a string rather than a list, or holds a
            control class instead of an instance.
    """
    if isinstance(controls, str | bytes) or not isinstance(controls, Sequence):
        shown = describe(controls)
        one = isinstance(controls, str | bytes) or not hasattr(controls, "__iter__")
        raise InvalidArgument(
            "controls must be a list of controls",
            received=f"{shown} ({type(controls).__name__})",
            fix=f"wrap it in a list: controls=[{shown}]" if one else "pass a list, in the order they apply",
        )
    context: list[ContextControl] = []
    logits: list[LogitControl] = []
    model: list[ModelControl] = []
    for control in controls:
        if isinstance(control, type):
            raise InvalidArgument(
                f"controls holds the class {control.__name__}, not a control made from it",
                received=f"controls=[…, {control.__name__}, …]",
                fix=f"create one: {control.__name__}(…) (e.g. TopP(0.9), Temperature(0.7))",
            )
        is_model = isinstance(control, ModelControl)
        is_context = isinstance(control, ContextControl)
        if is_model:
            model.append(control)  # type: ignore[arg-type]
        if is_context:
            context.append(control)  # type: ignore[arg-type]
        if not (is_model or is_context):
            logits.append(as_logit_control(control))
    return context, logits, model


def describe(control: object) -> str:
    """A short human-readable name with parameters, e.g. `TopP(p=0.9)`."""
    text = repr(control)
    return text if len(text) <= 80 else text[:77] + "…"

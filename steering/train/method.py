"""The training-method contract: the hooks `run_training` calls, which you write and which have defaults.

A method (SFT, DPO, RL, …) says how to read and encode its examples, how to run the forward and
backward passes of one optimizer step and how to evaluate; the shared loop (`loop.run_training`) does
the rest the same way for every method. It calls the hooks directly, in this order:

    weights = method.weights(config)                    # what is trained (default: a LoRA adapter)
    examples = method.load(config)                      # required
    rows = method.encode(model, examples, config)       # required (train and eval split apart)
    params = weights.make_parameters(model, config) + method.setup(model, config)
    each optimizer step:  record = method.backward(model, rows, config, step=step)   # required
    each evaluation:      record |= method.evaluate(model, eval_rows, config)       # required
    each save:            weights.save(model, directory, meta); method.save_extra(directory)
    on resume:            weights.load(model, directory); method.load_extra(directory)
    at the end:           weights.release(model)

**Required** (`MethodHooks`): `name`, `load`, `encode`, `backward`, `evaluate`.
**Optional** (`OptionalHooks`), with the defaults of the `Method` base class:

- `weights(config) -> TrainedWeights`: a LoRA adapter named after the method (`LoraWeights`);
  `full=true` is refused (only SFT trains every weight). A method that owns its weights (a soft
  prompt) returns its own `TrainedWeights`.
- `setup(model, config) -> list[Parameter]`: no extra parameters. A reward model adds its scalar head.
- `save_extra(directory)` / `load_extra(directory)`: nothing more to write or read. A reward model
  writes its head beside the adapter (inside the same atomic write).
- `distributed` (False) and `summed` (("loss", "tokens")): whether `backward` splits a step over
  training processes (`distributed.py`: it normalises by the whole step's counts and runs only
  `processes().mine(...)` of its micro-batches), and which record keys are then partial sums to add up.

So a new method subclasses `Method` and writes the five required hooks; see docs/training.md,
"Adding a training method".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from steering.errors import InvalidArgument
from steering.models import LanguageModel
from steering.train.adapters import LoraWeights


class TrainedWeights(Protocol):
    """What a run trains and saves: a LoRA adapter, every weight (`full=true`), a soft prompt's vectors."""

    def make_parameters(self, model: LanguageModel, config: Any) -> list[torch.nn.Parameter]:
        """Create (or unfreeze) the trained weights in `model`; returns them for the optimizer."""
        ...

    def save(self, model: LanguageModel, directory: Path, meta: dict[str, Any]) -> None:
        """Write the weights into `directory` (it exists; the loop makes the write atomic)."""
        ...

    def load(self, model: LanguageModel, directory: Path) -> None:
        """Put the weights saved in `directory` back into the live ones (resume)."""
        ...

    def release(self, model: LanguageModel) -> None:
        """Hand the model back as it came (adapter removed, original weights restored)."""
        ...


class MethodHooks(Protocol):
    """The hooks every method writes."""

    name: str  # the adapter's name and the run's "method"

    def load(self, config: Any) -> list[Any]:
        """The examples of `config.data`, validated."""
        ...

    def encode(self, model: LanguageModel, examples: list[Any], config: Any) -> list[Any]:
        """Rows ready to batch (may precompute what stays fixed, e.g. reference log-probabilities).

        Called on the base model, before the trained weights are added.
        """
        ...

    def backward(self, model: LanguageModel, rows: list[Any], config: Any, *, step: int) -> dict[str, Any]:
        """Forward and backward over the rows of one optimizer step.

        Args:
            model: the model with the trained weights in place, in train mode.
            rows: `batch_size × grad_accum` rows (fewer at the end of an epoch).
            config: the method's config.
            step: the optimizer steps done before this one (0 for the first); methods that sample
                (RL) seed their rollouts with it, so a resumed run samples what the first would have.

        Returns:
            Metrics of the step, with at least "loss" and "tokens" (tokens processed, for tokens/s).
        """
        ...

    def evaluate(self, model: LanguageModel, rows: list[Any], config: Any) -> dict[str, Any]:
        """Held-out metrics with "eval_loss" (lower is better); called in eval mode without gradients."""
        ...


class OptionalHooks(Protocol):
    """The hooks a method may override; `Method` gives each its default."""

    distributed: bool  # splits its steps over training processes (default False)
    summed: tuple[str, ...]  # record keys that are partial sums over the processes

    def weights(self, config: Any) -> TrainedWeights:
        """What is trained; default: a LoRA adapter named after the method."""
        ...

    def setup(self, model: LanguageModel, config: Any) -> list[torch.nn.Parameter]:
        """Parameters trained beside the weights (a reward head); default: none."""
        ...

    def save_extra(self, directory: Path) -> None:
        """Write the method's own files next to the weights; default: nothing."""
        ...

    def load_extra(self, directory: Path) -> None:
        """Read back what `save_extra` wrote (resume); default: nothing."""
        ...


class TrainingMethod(MethodHooks, OptionalHooks, Protocol):
    """Everything `run_training` calls: the required hooks and the optional ones."""


def refuse_full(config: Any, name: str) -> None:
    """`full=true` (every weight trained) is for SFT only.

    Raises:
        InvalidArgument: `config.full` is set.
    """
    if config.full:
        raise InvalidArgument(
            f"full=true (every weight trained) is for SFT; {name} needs the base model beside "
            "the trained one (its reference or base books come from the adapter switched off)",
            received=f"full=true for {name}",
            fix="drop full=true (train a LoRA adapter), or use steer train sft",
        )


class Method:
    """Base class of the methods: the defaults of the optional hooks (see the module docstring).

    A subclass sets `name` and writes `load`, `encode`, `backward` and `evaluate`.
    """

    name: str = "method"
    distributed: bool = False  # splits its steps over training processes (train/distributed.py)
    summed: tuple[str, ...] = ("loss", "tokens")  # record keys that are partial sums over processes

    def weights(self, config: Any) -> TrainedWeights:
        refuse_full(config, self.name)
        return LoraWeights(self.name)

    def setup(self, model: LanguageModel, config: Any) -> list[torch.nn.Parameter]:
        return []

    def save_extra(self, directory: Path) -> None:
        return None

    def load_extra(self, directory: Path) -> None:
        return None

"""The training methods by name: one line each, from which `steer train …` and its `--help` are made.

`METHODS[name]` holds the method's config class (a dataclass, read from TOML + `key=value`), its train
function and a one-line help; the command `steer train NAME` and its help (the line, then every config
key with its default) are generated from it. Adding a method is one new file in `train/` (config,
`Method` subclass, `train_…` function) plus one line here.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, Protocol

from steering.models import LanguageModel
from steering.train.distill import DistillConfig, train_distill
from steering.train.dpo import DPOConfig, train_dpo
from steering.train.loop import Progress, TrainConfig, TrainResult
from steering.train.reward_model import RewardModelConfig, train_reward_model
from steering.train.rl import RLConfig, train_rl
from steering.train.sft import SFTConfig, train_sft
from steering.train.soft_prompt import SoftPromptConfig, train_soft_prompt


class TrainFunction(Protocol):
    """What the command line calls: `train(config, resume=…, progress=…) -> TrainResult`."""

    def __call__(
        self,
        config: Any,
        *,
        resume: bool = ...,
        progress: Progress | None = ...,
        model: LanguageModel | None = ...,
    ) -> TrainResult: ...


@dataclass(frozen=True)
class MethodEntry:
    """One training method as the command line sees it."""

    config: type[TrainConfig]
    train: TrainFunction
    help: str  # one line
    label: str  # how the progress bar names it

    def describe(self) -> str:
        """The `--help` text: the line, then the method's own keys and the shared ones, with defaults."""
        own: list[str] = []
        shared: list[str] = []
        base = {f.name: f for f in fields(TrainConfig)}
        for item in fields(self.config):
            entry = f"{item.name}={_default(item)}"
            inherited = item.name in base and _default(base[item.name]) == _default(item)
            (shared if inherited else own).append(entry)
        return "\n\n".join(
            [
                self.help,
                "Keys of this method (default): " + " · ".join(own),
                "Shared keys (default): " + " · ".join(shared),
                "Set them in CONFIG.toml or as key=value; see docs/training.md.",
            ]
        )


def _default(item: Any) -> str:
    """A dataclass field's default as TOML would write it."""
    value = item.default if item.default is not MISSING else item.default_factory()
    if isinstance(value, bool):
        return str(value).lower()
    return f'"{value}"' if isinstance(value, str) else repr(value)


# fmt: off
METHODS: dict[str, MethodEntry] = {
    "sft": MethodEntry(SFTConfig, train_sft, 'Supervised fine-tuning of a LoRA adapter (or every weight: full=true) on {"prompt","completion"} / {"messages"} / {"text"} JSONL.', "SFT"),
    "dpo": MethodEntry(DPOConfig, train_dpo, 'DPO (or loss=ipo) of a LoRA adapter on {"prompt","chosen","rejected"} or rankings JSONL; reference = the base.', "DPO"),
    "reward-model": MethodEntry(RewardModelConfig, train_reward_model, "A reward model (LoRA + scalar head) from preferences (Bradley–Terry), rankings (Plackett–Luce) or ratings.", "reward model"),
    "rl": MethodEntry(RLConfig, train_rl, 'KL-regularised RL of a LoRA adapter: data = {"prompt"} JSONL, reward = vader | instructions | reward-model:DIR | module:function, or a list of them (summed, reward_weights).', "RL"),
    "soft-prompt": MethodEntry(SoftPromptConfig, train_soft_prompt, "Soft-prompt tuning (k learned input vectors, the model frozen) on demonstrations JSONL.", "soft prompt"),
    "distill": MethodEntry(DistillConfig, train_distill, "Distil a conditioned target into an adapter: data = the JSONL of `steer sample … --json` (weighted samples).", "distill"),
}
# fmt: on

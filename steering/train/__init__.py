"""Fine-tuning: SFT, DPO/IPO, reward models, KL-regularised RL and distillation of a target and soft prompts.

Each method is one readable file — a config dataclass, a `Method` subclass with the hooks of the
contract in `method.py`, a `train_…` function — run by the shared loop (`loop.run_training`), with
batching in `batching.py` and the losses as pure functions in `losses.py`. A run writes a directory
(`run.RunDir`: config, metrics.jsonl, optional TensorBoard events, checkpoints that resume exactly,
the adapter in peft format). `registry.METHODS` names the methods for `steer train …`.
"""

from steering.controls.adapter import Adapter  # re-exported until every importer uses steering.controls
from steering.controls.context import Demonstration
from steering.train.adapters import LoraWeights, adapters_disabled, add_lora, save_adapter
from steering.train.data import Preference, Ranking, Rating, load_examples
from steering.train.distill import DistillConfig, train_distill
from steering.train.dpo import DPOConfig, train_dpo
from steering.train.loop import TrainConfig, TrainingInterrupted, TrainResult, run_training
from steering.train.method import Method, MethodHooks, OptionalHooks, TrainedWeights, TrainingMethod
from steering.train.registry import METHODS, MethodEntry
from steering.train.reward_model import RewardModel, RewardModelConfig, train_reward_model
from steering.train.rl import RLConfig, train_rl
from steering.train.run import RunDir, read_config
from steering.train.sft import SFTConfig, train_sft
from steering.train.soft_prompt import SoftPromptConfig, train_soft_prompt

__all__ = [
    "METHODS",
    "Adapter",
    "DPOConfig",
    "Demonstration",
    "DistillConfig",
    "LoraWeights",
    "Method",
    "MethodEntry",
    "MethodHooks",
    "OptionalHooks",
    "Preference",
    "RLConfig",
    "Ranking",
    "Rating",
    "RewardModel",
    "RewardModelConfig",
    "RunDir",
    "SFTConfig",
    "SoftPromptConfig",
    "TrainConfig",
    "TrainResult",
    "TrainedWeights",
    "TrainingInterrupted",
    "TrainingMethod",
    "adapters_disabled",
    "add_lora",
    "load_examples",
    "read_config",
    "run_training",
    "save_adapter",
    "train_distill",
    "train_dpo",
    "train_reward_model",
    "train_rl",
    "train_sft",
    "train_soft_prompt",
]

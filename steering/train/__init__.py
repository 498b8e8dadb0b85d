"""Fine-tuning: SFT, DPO/IPO, reward models, KL-regularised RL and distillation of a target and soft prompts.

Each method is one readable loop over shared pure functions (`losses`), writing a run directory
(`run.RunDir`: config, metrics.jsonl, checkpoints that resume exactly, the adapter in peft format).
"""

from steering.train.adapters import Adapter, adapters_disabled, add_lora, save_adapter
from steering.train.data import Demonstration, Preference, Ranking, Rating, load_examples
from steering.train.distill import DistillConfig, train_distill
from steering.train.dpo import DPOConfig, train_dpo
from steering.train.loop import TrainConfig, TrainingInterrupted, TrainResult
from steering.train.reward_model import RewardModel, RewardModelConfig, train_reward_model
from steering.train.rl import RLConfig, train_rl
from steering.train.run import RunDir, read_config
from steering.train.sft import SFTConfig, train_sft
from steering.train.soft_prompt import SoftPromptConfig, train_soft_prompt

__all__ = [
    "Adapter",
    "DPOConfig",
    "Demonstration",
    "DistillConfig",
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
    "TrainingInterrupted",
    "adapters_disabled",
    "add_lora",
    "load_examples",
    "read_config",
    "save_adapter",
    "train_distill",
    "train_dpo",
    "train_reward_model",
    "train_rl",
    "train_sft",
    "train_soft_prompt",
]

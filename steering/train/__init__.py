"""Fine-tuning: SFT and DPO/IPO (next: soft prompts, reward models, KL-regularised RL, distillation).

Each method is one readable loop over shared pure functions (`losses`), writing a run directory
(`run.RunDir`: config, metrics.jsonl, checkpoints that resume exactly, the adapter in peft format).
"""

from steering.train.adapters import Adapter, adapters_disabled, add_lora, save_adapter
from steering.train.data import Demonstration, Preference, Ranking, Rating, load_examples
from steering.train.dpo import DPOConfig, train_dpo
from steering.train.loop import TrainConfig, TrainingInterrupted, TrainResult
from steering.train.run import RunDir, read_config
from steering.train.sft import SFTConfig, train_sft

__all__ = [
    "Adapter",
    "DPOConfig",
    "Demonstration",
    "Preference",
    "Ranking",
    "Rating",
    "RunDir",
    "SFTConfig",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "adapters_disabled",
    "add_lora",
    "load_examples",
    "read_config",
    "save_adapter",
    "train_dpo",
    "train_sft",
]

"""DPO and IPO: learn from preference pairs without a reward model; the reference is the base itself.

The policy is base + a LoRA adapter; the reference π_ref is the same weights with the adapter off, so
there is no second copy of the model. The reference log-probabilities of every pair are computed once,
before training (the reference never changes), which saves one forward pass per step. The loss is
`losses.dpo_loss`: −log σ(β·h) for DPO, (h − 1/(2β))² for IPO, with
h = (log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l)) over the completion tokens.
Rankings files are read as every (better, worse) pair they imply.

Soft labels: a preference row's `p_chosen` (a judge's P(chosen ≻ rejected), exported by `steer feedback`)
is that pair's target, −[p·log σ(β·h) + (1 − p)·log σ(−β·h)] (for IPO the target margin (2p − 1)/(2β));
rows without one get p = 1 − `label_smoothing` (TRL's conservative DPO; 0 by default: hard labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from steering.errors import InvalidArgument
from steering.jsonl import read_jsonl
from steering.models import LanguageModel
from steering.rewards import check_beta
from steering.train.batching import Encoded, encode_completion, micro_batches, sequence_logprobs
from steering.train.data import Preference, check_label_smoothing, load_examples, target_probability
from steering.train.loop import Progress, TrainConfig, TrainResult, run_training
from steering.train.losses import dpo_loss
from steering.train.method import Method

LOSSES = ("dpo", "ipo")


@dataclass
class DPOConfig(TrainConfig):
    """SFT's fields plus β and the loss; `steer train dpo CONFIG.toml key=value …` fills it."""

    out: str = "runs/dpo"
    learning_rate: float = 1e-4
    beta: float = 0.1
    loss: str = "dpo"
    label_smoothing: float = 0.0  # target 1 − ε for pairs without a soft label (TRL's name)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.beta = check_beta(self.beta)
        self.label_smoothing = check_label_smoothing(self.label_smoothing)
        if self.loss not in LOSSES:
            raise InvalidArgument(
                f"unknown preference loss {self.loss!r}", received=self.loss, fix="use dpo or ipo"
            )


@dataclass(frozen=True)
class PairRow:
    """An encoded pair, its reference log-probabilities and its target P(chosen ≻ rejected)."""

    chosen: Encoded
    rejected: Encoded
    reference_chosen: float
    reference_rejected: float
    p_chosen: float = 1.0


def load_preferences(path: str) -> list[Preference]:
    """Preference pairs from a preferences file or a rankings file (every pair a ranking implies)."""
    rows = read_jsonl(
        path, what="preferences file", example='{"prompt": "…", "chosen": "…", "rejected": "…"}'
    )
    first = rows[0][2] if rows else None
    if isinstance(first, dict) and "completions" in first:
        return [pair for ranking in load_examples(path, "rankings") for pair in ranking.pairs()]
    return list(load_examples(path, "preferences"))


class DPO(Method):
    """The DPO/IPO method for the shared loop."""

    name = "dpo"

    def load(self, config: DPOConfig) -> list[Preference]:
        return load_preferences(config.data)

    def encode(self, model: LanguageModel, examples: list[Preference], config: DPOConfig) -> list[PairRow]:
        pairs = []
        for example in examples:
            chosen = encode_completion(model, example.prompt, example.chosen, config.max_length)
            rejected = encode_completion(model, example.prompt, example.rejected, config.max_length)
            if chosen is not None and rejected is not None:
                pairs.append((chosen, rejected, target_probability(example, config.label_smoothing)))
        if not pairs:
            raise InvalidArgument(
                f"no pair has completion tokens left after truncation to max_length={config.max_length}",
                received=f"{len(examples)} pairs",
                fix="raise max_length or shorten the prompts",
            )
        rows: list[PairRow] = []
        with torch.no_grad():  # the model is the base here: the adapter is added after encoding
            for chunk in micro_batches(pairs, config.batch_size):
                values = sequence_logprobs(
                    model, [c for c, _, _ in chunk] + [r for _, r, _ in chunk]
                ).tolist()
                size = len(chunk)
                rows += [PairRow(c, r, values[i], values[size + i], p) for i, (c, r, p) in enumerate(chunk)]
        return rows

    def _losses(
        self, model: LanguageModel, rows: list[PairRow], config: DPOConfig
    ) -> tuple[torch.Tensor, torch.Tensor]:
        policy = sequence_logprobs(model, [r.chosen for r in rows] + [r.rejected for r in rows])
        chosen, rejected = policy[: len(rows)], policy[len(rows) :]
        reference_chosen = torch.tensor([r.reference_chosen for r in rows])
        reference_rejected = torch.tensor([r.reference_rejected for r in rows])
        p_chosen = torch.tensor([r.p_chosen for r in rows])  # p = 1 is the hard-label loss, exactly
        return dpo_loss(
            chosen,
            rejected,
            reference_chosen,
            reference_rejected,
            beta=config.beta,
            kind=config.loss,
            p_chosen=p_chosen,
        )

    def backward(
        self, model: LanguageModel, rows: list[PairRow], config: DPOConfig, *, step: int
    ) -> dict[str, Any]:
        total, margins = 0.0, []
        for chunk in micro_batches(rows, config.batch_size):
            loss, margin = self._losses(model, chunk, config)
            scaled = loss * (len(chunk) / len(rows))  # the mean over the step's pairs
            scaled.backward()
            total += float(scaled.detach())
            margins.append(margin)
        margin = torch.cat(margins)
        tokens = sum(len(r.chosen.ids) + len(r.rejected.ids) for r in rows)
        return {
            "loss": total,
            "tokens": tokens,
            "accuracy": float((margin > 0).float().mean()),
            "margin": float(margin.mean()),
        }

    def evaluate(self, model: LanguageModel, rows: list[PairRow], config: DPOConfig) -> dict[str, Any]:
        losses, margins = [], []
        for chunk in micro_batches(rows, config.batch_size):
            loss, margin = self._losses(model, chunk, config)
            losses.append(float(loss) * len(chunk))
            margins.append(margin)
        margin = torch.cat(margins)
        return {
            "eval_loss": sum(losses) / len(rows),
            "eval_accuracy": float((margin > 0).float().mean()),
            "eval_margin": float(margin.mean()),
        }


def train_dpo(
    config: DPOConfig,
    *,
    resume: bool = False,
    model: LanguageModel | None = None,
    progress: Progress | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Run DPO or IPO (`config.loss`); the model is left as it came, the adapter saved in the run."""
    return run_training(config, DPO(), resume=resume, model=model, progress=progress, stop_after=stop_after)

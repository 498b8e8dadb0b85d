"""Reward models: a scalar head on the base (+ LoRA), from comparisons, rankings or ratings.

The score of a completion is a linear head on the decoder's last hidden state at the completion's
last token (EOS appended, as in SFT); the language-model head is never computed. Objectives follow
the data: preferences → Bradley–Terry (−log σ(r_chosen − r_rejected)); rankings → Plackett–Luce
(−log P(order) with the scores as logits; with two items it is Bradley–Terry); ratings → squared
error. Held-out pair accuracy (the fraction of pairs a ranking or preference implies that the model
orders correctly) is reported for comparisons and rankings, the mean squared error for ratings.

Soft labels: a preference row's `p_chosen` (a judge's P(chosen ≻ rejected)) is the Bradley–Terry target,
−[p·log σ(Δ) + (1 − p)·log σ(−Δ)] with Δ = r_chosen − r_rejected; rows without one get p = 1 −
`label_smoothing` (0 by default: hard labels). Rankings and ratings have no such label and refuse it.

`RewardModel(model, run/adapter)` is a reward callable `(prompts, completions) -> list[float]`, so
a trained model plugs into conditioning (`Target(..., [reward_model], beta=…)`) and, later, RL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from steering.controls.adapter import Adapter
from steering.errors import InvalidArgument
from steering.jsonl import read_jsonl
from steering.models import LanguageModel
from steering.train.batching import Encoded, micro_batches
from steering.train.data import check_label_smoothing, load_examples, target_probability
from steering.train.loop import Progress, TrainConfig, TrainResult, run_training
from steering.train.losses import IGNORE, bradley_terry_loss, plackett_luce_loss
from steering.train.method import Method

HEAD = "reward_head.safetensors"


@dataclass
class RewardModelConfig(TrainConfig):
    """SFT's fields; the objective follows the data's shape (preferences, rankings or ratings)."""

    out: str = "runs/reward-model"
    learning_rate: float = 1e-4
    label_smoothing: float = 0.0  # target 1 − ε for preference pairs without a soft label (TRL's name)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.label_smoothing = check_label_smoothing(self.label_smoothing)


@dataclass(frozen=True)
class ScoredPair:
    """A preference pair encoded for scoring, with its target P(chosen ≻ rejected)."""

    chosen: Encoded
    rejected: Encoded
    p_chosen: float


def _shape(path: str) -> str:
    rows = read_jsonl(
        path, what="reward-model data", example='{"prompt": "…", "chosen": "…", "rejected": "…"}'
    )
    first = rows[0][2] if rows else {}
    if isinstance(first, dict):
        if "completions" in first:
            return "rankings"
        if "rating" in first:
            return "ratings"
    return "preferences"


def _encode(model: LanguageModel, prompt: str, completion: str, max_length: int) -> Encoded:
    """Prompt + completion + EOS, cut from the left of the prompt when too long (the end is scored)."""
    prompt_ids = model.encode(prompt)
    completion_ids = [*model.encode_continuation(completion), model.eos_token_ids[0]]
    ids = (prompt_ids + completion_ids)[-max_length:]
    return Encoded(ids, [IGNORE] * len(ids))


def score_rows(model: LanguageModel, head: torch.nn.Linear, rows: Sequence[Encoded]) -> torch.Tensor:
    """(N,) the head on the last hidden state of each row's last token (rows right-padded)."""
    width = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), width), model.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row.ids)] = torch.tensor(row.ids)
        mask[i, : len(row.ids)] = 1
    hidden = model.module.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    last = hidden[torch.arange(len(rows)), mask.sum(-1) - 1]
    return head(last.float()).squeeze(-1)


class RewardModelMethod(Method):
    """The reward-model method for the shared loop."""

    name = "reward_model"

    def __init__(self) -> None:
        self.kind = "preferences"
        self.head: torch.nn.Linear | None = None

    def load(self, config: RewardModelConfig) -> list[Any]:
        self.kind = _shape(config.data)
        if self.kind != "preferences" and config.label_smoothing:
            raise InvalidArgument(
                f"label_smoothing applies to preference pairs; {config.data} holds {self.kind}",
                received=f"label_smoothing={config.label_smoothing}",
                fix="drop label_smoothing, or train on preference pairs",
            )
        return load_examples(config.data, self.kind)

    def encode(self, model: LanguageModel, examples: list[Any], config: RewardModelConfig) -> list[Any]:
        length = config.max_length
        if self.kind == "preferences":
            return [
                ScoredPair(
                    _encode(model, e.prompt, e.chosen, length),
                    _encode(model, e.prompt, e.rejected, length),
                    target_probability(e, config.label_smoothing),
                )
                for e in examples
            ]
        if self.kind == "rankings":
            return [tuple(_encode(model, e.prompt, c, length) for c in e.completions) for e in examples]
        return [(_encode(model, e.prompt, e.completion, length), e.rating) for e in examples]

    def setup(self, model: LanguageModel, config: RewardModelConfig) -> list[torch.nn.Parameter]:
        hidden = int(model.module.config.hidden_size)
        self.head = torch.nn.Linear(hidden, 1)
        # Zero: every score starts at 0 (loss log 2, P = ½ for every pair). A random head of std 1/√d
        # on gemma-270m's last hidden states (norm ≈ 100) starts with scores of std ≈ 4 that say
        # nothing, a Bradley–Terry loss near 2 and gradient norms near 60, which 3 epochs of a small
        # preference set did not undo. The head's gradient (σ(Δ) − 1)·(h_chosen − h_rejected) is not zero,
        # so it moves first, and LoRA's gradients (through the head) follow from the second step.
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)
        return list(self.head.parameters())

    def _loss(self, model: LanguageModel, rows: list[Any]) -> tuple[torch.Tensor, dict[str, float]]:
        assert self.head is not None
        if self.kind == "ratings":
            scores = score_rows(model, self.head, [r for r, _ in rows])
            targets = torch.tensor([t for _, t in rows], dtype=torch.float32)
            loss = ((scores - targets) ** 2).mean()
            return loss, {"mse": float(loss.detach())}
        if self.kind == "preferences":
            scores = score_rows(model, self.head, [e for pair in rows for e in (pair.chosen, pair.rejected)])
            chosen, rejected = scores[0::2], scores[1::2]
            p_chosen = torch.tensor([pair.p_chosen for pair in rows])  # p = 1: −log σ(Δ) exactly
            loss = bradley_terry_loss(chosen, rejected, p_chosen)
            return loss, {"accuracy": float((chosen > rejected).float().mean())}
        scores = score_rows(model, self.head, [r for group in rows for r in group])
        groups = list(torch.split(scores, [len(g) for g in rows]))
        loss = torch.stack([plackett_luce_loss(g) for g in groups]).mean()
        right = total = 0
        for g in groups:  # pairs in the right order among all pairs the order implies
            for i in range(len(g)):
                for j in range(i + 1, len(g)):
                    right, total = right + int(g[i] > g[j]), total + 1
        return loss, {"accuracy": right / max(total, 1)}

    def backward(
        self, model: LanguageModel, rows: list[Any], config: RewardModelConfig, *, step: int
    ) -> dict[str, Any]:
        total, extras = 0.0, []
        for chunk in micro_batches(rows, config.batch_size):
            loss, extra = self._loss(model, chunk)
            scaled = loss * (len(chunk) / len(rows))
            scaled.backward()
            total += float(scaled.detach())
            extras.append((len(chunk), extra))
        record: dict[str, Any] = {"loss": total, "tokens": sum(_tokens(r) for r in rows)}
        for key in extras[0][1]:
            record[key] = sum(n * e[key] for n, e in extras) / len(rows)
        return record

    def evaluate(self, model: LanguageModel, rows: list[Any], config: RewardModelConfig) -> dict[str, Any]:
        total, extras = 0.0, []
        for chunk in micro_batches(rows, config.batch_size):
            loss, extra = self._loss(model, chunk)
            total += float(loss) * len(chunk)
            extras.append((len(chunk), extra))
        record = {"eval_loss": total / len(rows)}
        for key in extras[0][1]:
            record[f"eval_{key}"] = sum(n * e[key] for n, e in extras) / len(rows)
        return record

    def save_extra(self, directory: Path) -> None:
        """The scalar head and the objective, next to the adapter."""
        from safetensors.torch import save_file

        assert self.head is not None
        state = {k: v.detach().contiguous() for k, v in self.head.state_dict().items()}
        save_file(state, str(directory / HEAD))
        (directory / "reward_model.json").write_text(json.dumps({"objective": self.kind}) + "\n")

    def load_extra(self, directory: Path) -> None:
        from safetensors.torch import load_file

        assert self.head is not None
        self.head.load_state_dict(load_file(str(directory / HEAD)))


def _tokens(row: Any) -> int:
    if isinstance(row, ScoredPair):
        return len(row.chosen.ids) + len(row.rejected.ids)
    if isinstance(row, tuple) and row and isinstance(row[0], Encoded):
        return sum(len(r.ids) for r in row if isinstance(r, Encoded))
    return len(row[0].ids)


def train_reward_model(
    config: RewardModelConfig,
    *,
    resume: bool = False,
    model: LanguageModel | None = None,
    progress: Progress | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a reward model (LoRA + scalar head); load it with `RewardModel(model, result.adapter)`."""
    method = RewardModelMethod()
    return run_training(config, method, resume=resume, model=model, progress=progress, stop_after=stop_after)


class RewardModel:
    """A trained reward model as a reward callable: (prompts, completions) -> list[float]."""

    def __init__(
        self, model: LanguageModel, directory: str | Path, *, batch_size: int = 8, max_length: int = 512
    ):
        from safetensors.torch import load_file

        directory = Path(directory)
        if not (directory / HEAD).is_file():
            raise InvalidArgument(
                f"{directory} is not a reward model (no {HEAD})",
                received=str(directory),
                fix="pass the adapter folder of `steer train reward-model` (RUN/adapter)",
            )
        self.model, self.adapter = model, Adapter(directory)
        self.batch_size, self.max_length = batch_size, max_length
        state = load_file(str(directory / HEAD))
        self.head = torch.nn.Linear(state["weight"].shape[1], 1)
        self.head.load_state_dict(state)
        self.__name__ = f"reward_model({directory})"

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        rows = [_encode(self.model, p, c, self.max_length) for p, c in zip(prompts, completions, strict=True)]
        scores: list[float] = []
        with self.adapter.attached(self.model):
            for chunk in micro_batches(rows, self.batch_size):
                scores += score_rows(self.model, self.head, chunk).tolist()
        return scores

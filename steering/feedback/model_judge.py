"""A language model as a judge: exact probabilities of the answer labels after a fixed question.

`ModelJudge` takes any `LanguageModel`, an optional adapter, and either the model's chat template or a
plain prompt ending in a cue for base models. It reads its own probabilities of the two answer
letters after the pairwise question, once with A shown first and once with B first, and averages
P(A ≻ B) over the two orders. Label probabilities are exact: each label's tokens are scored
teacher-forced by `LanguageModel.logprobs` (as `steering.controls.classify` does), batched over pairs
and orders; single-token labels are read from one next-token distribution per prompt (the same numbers).
A rating is the expectation of the judge's distribution over the digits 1–7, renormalised over them;
a critique is sampled text.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from steering.controls.adapter import Adapter
from steering.controls.classify import label_token_ids
from steering.controls.context import ChatTemplate
from steering.controls.sampling import Temperature
from steering.decode import generate
from steering.errors import InvalidArgument
from steering.feedback.constitution import Principle
from steering.feedback.judge_contract import (
    BASE_CUES,
    RATING_SCALE,
    Pair,
    PairwiseJudgment,
    Rating,
    check_same_length,
    critique_text,
    pairwise_text,
    rating_text,
)
from steering.models.language_model import LanguageModel


@dataclass
class ModelJudge:
    """A language model as a judge: exact label probabilities after a fixed prompt.

    Args:
        model: the judge model.
        adapter: a trained adapter to judge with (on while judging, off afterwards).
        chat: wrap the question in the tokenizer's chat template (None: when the tokenizer has one).
        batch_size: prompts scored per forward pass (a pair is two prompts: its two shown orders).
        critique_tokens: the most tokens of a critique.
        temperature: the sampling temperature of critiques.
    """

    model: LanguageModel
    adapter: Adapter | None = None
    chat: bool | None = None
    batch_size: int = 8
    critique_tokens: int = 96
    temperature: float = 0.7

    def __post_init__(self) -> None:
        if self.chat is None:
            self.chat = bool(getattr(self.model.tokenizer, "chat_template", None))
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InvalidArgument(
                "batch_size must be a positive integer", received=self.batch_size, fix="use 8"
            )
        Temperature(self.temperature)  # refuses a bad temperature now, not at the first critique

    @property
    def name(self) -> str:
        return self.model.name + (f"+{self.adapter.key}" if self.adapter is not None else "")

    def render(self, text: str, kind: str) -> str:
        """The judge's input: the chat template around `text`, or `text` plus the base model's cue."""
        if self.chat:
            return ChatTemplate().render(text, tokenizer=self.model.tokenizer)
        return text + BASE_CUES[kind]

    def labels(self, labels: Sequence[str]) -> list[str]:
        """Chat models answer with the bare label; base models continue a cue, so a space comes first."""
        return list(labels) if self.chat else [f" {label}" for label in labels]

    def label_probs(self, prompts: Sequence[str], labels: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, mass): P (N, L) the labels' probabilities renormalised over them; mass (N,) before that.

        Exact, as `steering.controls.classify`: each label's full token sequence is scored
        teacher-forced by `LanguageModel.logprobs`. When every label is one token (the letters and
        digits of the built-in prompts, for the bundled tokenizers) one forward pass per prompt reads
        them all from the next-token distribution: the same numbers, L times fewer passes. When the
        labels are one token after a shared prefix (" 1" … " 7" are "▁" + a digit for gemma), two
        passes give them all: log P(prefix) plus the distribution after it.
        """
        ids = label_token_ids(self.model, labels, end=None)
        # Batches of prompts of similar length pad less; the rows are put back in order at the end.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        rows: list[torch.Tensor] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = [prompts[i] for i in order[start : start + self.batch_size]]
            with self._adapter_on():
                if all(len(i) == 1 for i in ids):
                    picked = next_token_logprobs(self.model, chunk)[:, [i[0] for i in ids]]
                elif prefix := shared_prefix(ids):
                    # " 5" is "▁" + "5" for gemma: log P(prefix) once, then one distribution after it.
                    head = torch.stack([s.sum() for s in self.model.logprobs(chunk, [prefix] * len(chunk))])
                    last = next_token_logprobs(self.model, chunk, suffix=prefix)[:, [i[-1] for i in ids]]
                    picked = last + head[:, None].to(last.dtype)
                else:
                    scores = self.model.logprobs(
                        [p for p in chunk for _ in ids], [i for _ in chunk for i in ids]
                    )
                    picked = torch.stack([s.sum() for s in scores]).view(len(chunk), len(ids))
            rows.append(picked.double())
        log_scores = torch.zeros(len(prompts), len(ids), dtype=torch.double)
        if rows:
            log_scores[torch.tensor(order)] = torch.cat(rows)
        return log_scores.softmax(-1), log_scores.exp().sum(-1)

    def pairwise(self, pairs: Sequence[Pair], principle: Principle) -> list[PairwiseJudgment]:
        prompts = []
        for pair in pairs:  # row 2i: A shown first; row 2i + 1: B shown first
            prompts.append(self.render(pairwise_text(principle, pair.prompt, pair.a, pair.b), "pairwise"))
            prompts.append(self.render(pairwise_text(principle, pair.prompt, pair.b, pair.a), "pairwise"))
        probs, mass = self.label_probs(prompts, self.labels(["A", "B"]))
        judgments = []
        for i in range(len(pairs)):
            # Shown first, A is label "A"; shown second, A is label "B".
            a_first, b_first = float(probs[2 * i, 0]), float(probs[2 * i + 1, 1])
            judgments.append(
                PairwiseJudgment(
                    p_a=(a_first + b_first) / 2,
                    p_a_by_order=(a_first, b_first),
                    label_mass=float(mass[2 * i : 2 * i + 2].mean()),
                )
            )
        return judgments

    def rate(self, prompts: Sequence[str], answers: Sequence[str], principle: Principle) -> list[Rating]:
        check_same_length(prompts, answers)
        texts = [
            self.render(rating_text(principle, p, a), "rating") for p, a in zip(prompts, answers, strict=True)
        ]
        probs, mass = self.label_probs(texts, self.labels([str(k) for k in RATING_SCALE]))
        scale = torch.tensor(RATING_SCALE, dtype=torch.double)
        return [
            Rating(float((row * scale).sum()), tuple(float(p) for p in row), float(m))
            for row, m in zip(probs, mass, strict=True)
        ]

    def critique(
        self, prompts: Sequence[str], answers: Sequence[str], principle: Principle, *, seed: int = 0
    ) -> list[str]:
        check_same_length(prompts, answers)
        if not prompts:
            return []
        texts = [
            self.render(critique_text(principle, p, a), "critique")
            for p, a in zip(prompts, answers, strict=True)
        ]
        controls: list[object] = [Temperature(self.temperature)]
        if self.adapter is not None:
            controls.append(self.adapter)
        samples = generate(
            self.model,
            texts,
            controls=controls,
            max_new_tokens=self.critique_tokens,
            stop=() if self.chat else ("\n\n",),
            seed=seed,
            batch_size=self.batch_size,
            score_base=False,
        )
        return [sample.text.strip() for sample in samples]

    def _adapter_on(self) -> Any:
        if self.adapter is None:
            return nullcontext()
        return self.adapter.attached(self.model)


def shared_prefix(ids: Sequence[Sequence[int]]) -> list[int]:
    """The tokens every label starts with, when each label is exactly those plus one token; else []."""
    first = list(ids[0]) if ids else []
    prefix = first[:-1]
    if prefix and all(len(i) == len(first) and list(i[:-1]) == prefix for i in ids):
        return prefix
    return []


@torch.no_grad()
def next_token_logprobs(
    model: LanguageModel, prompts: Sequence[str], *, suffix: Sequence[int] = ()
) -> torch.Tensor:
    """(N, V) float32 log-probabilities of the next token after each prompt (then the token ids
    `suffix`, the same for every prompt), one batched forward pass.

    Left padding with the attention mask and position ids that `LanguageModel.logprobs` uses, so a
    single-token label gets the value `logprobs` would give it (tested against `classify`).
    """
    encoded = [[*model.encode(prompt), *suffix] for prompt in prompts]
    width = max(len(ids) for ids in encoded)
    if width > model.context_length:
        raise InvalidArgument(
            f"a judge prompt is longer than the judge's context window ({model.context_length})",
            received=f"{width} tokens",
            fix="judge shorter answers, or use a judge model with a longer context",
        )
    batch = torch.full((len(encoded), width), model.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, ids in enumerate(encoded):
        batch[row, width - len(ids) :] = torch.tensor(ids)
        mask[row, width - len(ids) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model.module(
        input_ids=batch.to(model.device),
        attention_mask=mask.to(model.device),
        position_ids=positions.to(model.device),
        use_cache=False,
        logits_to_keep=1,
    )
    return out.logits[:, -1].float().log_softmax(-1).cpu()

"""`LanguageModel`: a thin, narrow handle on a causal LM and its tokenizer.

Kept narrow on purpose (encode, decode, `forward_step`, teacher-forced log-probabilities) so that
another backend sits behind the same interface: `steering.models.llamacpp.LlamaCppModel` runs a GGUF
through llama.cpp and overrides `forward_step`, `score_pairs` and `vocab_size`; its `module` is a
stand-in that refuses, naming the torch backend, whatever needs the weights themselves (adapters,
steering vectors, PPLM, training).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from steering.errors import InvalidArgument

TokenIds = list[int]
TextOrIds = str | Sequence[int]

# Budget for one teacher-forced forward: rows × kept positions × vocabulary, in float32 elements.
_LOGIT_BUDGET = 64 * 1024 * 1024


@dataclass
class LanguageModel:
    """A causal language model ready for steering.

    Attributes:
        module: the `transformers` causal-LM module (eval mode, no gradients by default).
        tokenizer: its tokenizer.
        name: registry name or path it was loaded from.
        device: where the weights live.
        dtype: compute dtype of the weights (log-probabilities are always computed in float32).
        eos_token_ids: token ids that end a generation.
        pad_token_id: id used to pad batches (never scored).
        context_length: maximum number of positions the model accepts.
    """

    module: Any
    tokenizer: Any
    name: str
    device: torch.device
    dtype: torch.dtype
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    context_length: int
    add_bos: bool = True

    backend: ClassVar[str] = "torch"

    @property
    def vocab_size(self) -> int:
        """Number of rows of the output layer (may exceed the tokenizer's size)."""
        return int(self.module.config.vocab_size)

    @property
    def bos_token_id(self) -> int | None:
        return self.tokenizer.bos_token_id

    def encode(self, text: str) -> TokenIds:
        """Token ids of a prompt, with the BOS token the model expects (added once, never twice)."""
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        bos = self.bos_token_id
        if self.add_bos and bos is not None and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        return ids

    def encode_continuation(self, text: str) -> TokenIds:
        """Token ids of text that follows a prompt (no special tokens)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated token ids, special tokens dropped."""
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))

    @torch.no_grad()
    def forward_step(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: Any = None,
    ) -> tuple[torch.Tensor, Any]:
        """One forward of the decode loop: a left-padded prefill (`cache` None) or new tokens after `cache`.

        Args:
            input_ids: (B, W) token ids (a prefill's rows are left-padded; a step's are W new tokens).
            attention_mask: (B, L) 1 for real tokens over every position, cached ones included.
            position_ids: (B, W) the positions of `input_ids`.
            cache: the cache a previous call returned, or None to start.

        Returns:
            (the logits at each row's last position, (B, V); the cache holding the rows so far). The
            cache is the backend's own (a Hugging Face `DynamicCache` here); the decoder only passes it
            back, re-orders its rows (`reorder_cache`) and splices it where `can_splice` says it can.
        """
        out = self.module(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :], out.past_key_values

    def logprobs(
        self,
        prompts: Sequence[TextOrIds],
        continuations: Sequence[TextOrIds],
        *,
        padding_side: str = "left",
    ) -> list[torch.Tensor]:
        """Teacher-forced log-probabilities of each continuation token given its prompt.

        Strings are tokenised (prompts with BOS, continuations without); token-id lists are used as
        they are, which is what the decode engine does to rescore exactly the tokens it sampled.

        Args:
            prompts: N prompts, as text or token ids.
            continuations: N continuations, as text or token ids (may be empty).
            padding_side: "left" (keeps only the needed logits; default) or "right". Both give the
                same numbers as scoring one row at a time.

        Returns:
            N float32 tensors; tensor i has shape (len(continuation_i),).
        """
        if len(prompts) != len(continuations):
            raise InvalidArgument(
                "logprobs needs one continuation per prompt",
                received=f"{len(prompts)} prompts and {len(continuations)} continuations",
                fix="pass two lists of the same length",
            )
        if padding_side not in ("left", "right"):
            raise InvalidArgument(
                "padding_side must be 'left' or 'right'", received=padding_side, fix="use 'left'"
            )
        pairs = [
            (
                self.encode(p) if isinstance(p, str) else list(p),
                self.encode_continuation(c) if isinstance(c, str) else list(c),
            )
            for p, c in zip(prompts, continuations, strict=True)
        ]
        for prompt_ids, cont_ids in pairs:
            if not prompt_ids:
                raise InvalidArgument(
                    "a prompt is empty after tokenisation", received="''", fix="give a non-empty prompt"
                )
            if len(prompt_ids) + len(cont_ids) > self.context_length:
                raise InvalidArgument(
                    f"prompt plus continuation is longer than the context window ({self.context_length})",
                    received=f"{len(prompt_ids) + len(cont_ids)} tokens",
                    fix="shorten the prompt or the continuation",
                )
        return self.score_pairs(pairs, padding_side=padding_side)

    def score_pairs(self, pairs: list[tuple[TokenIds, TokenIds]], *, padding_side: str) -> list[torch.Tensor]:
        """`logprobs` on checked (prompt ids, continuation ids) pairs: the part a backend writes."""
        results: list[torch.Tensor | None] = [None] * len(pairs)
        for batch in _micro_batches(pairs, self.vocab_size, whole_rows=padding_side == "right"):
            scored = self._score_batch([pairs[i] for i in batch], padding_side)
            for i, tensor in zip(batch, scored, strict=True):
                results[i] = tensor
        return [r if r is not None else torch.zeros(0) for r in results]

    @torch.no_grad()
    def _score_batch(self, pairs: list[tuple[TokenIds, TokenIds]], padding_side: str) -> list[torch.Tensor]:
        lengths = [len(p) + len(c) for p, c in pairs]
        width = max(lengths)
        ids = torch.full((len(pairs), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(pairs), width), dtype=torch.long)
        for row, ((p, c), length) in enumerate(zip(pairs, lengths, strict=True)):
            start = width - length if padding_side == "left" else 0
            ids[row, start : start + length] = torch.tensor(p + c)
            mask[row, start : start + length] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        max_cont = max(len(c) for _, c in pairs)
        if max_cont == 0:
            return [torch.zeros(0) for _ in pairs]
        # With left padding every continuation ends at the right edge: keep only those logits.
        keep = max_cont + 1 if padding_side == "left" else 0
        out = self.module(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=False,
            logits_to_keep=keep,
        )
        logits = out.logits.float()
        offset = width - logits.shape[1]
        scored = []
        for row, ((p, c), length) in enumerate(zip(pairs, lengths, strict=True)):
            if not c:
                scored.append(torch.zeros(0))
                continue
            start = width - length if padding_side == "left" else 0
            # Logit at position t predicts token t + 1.
            first = start + len(p) - 1 - offset
            step_logits = logits[row, first : first + len(c)]
            logp = step_logits.log_softmax(-1)
            targets = torch.tensor(c, device=logp.device).unsqueeze(-1)
            scored.append(logp.gather(-1, targets).squeeze(-1).cpu())
        return scored


def _micro_batches(
    pairs: list[tuple[TokenIds, TokenIds]], vocab_size: int, *, whole_rows: bool
) -> list[list[int]]:
    """Group rows (sorted by length) so that each forward keeps a bounded number of logits.

    With left padding only the continuation positions are kept; with right padding whole rows are.
    """

    def kept(i: int) -> int:
        prompt, cont = pairs[i]
        return len(prompt) + len(cont) if whole_rows else len(cont) + 1

    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = max(kept(j) for j in [*current, i])
        if current and (len(current) + 1) * width * vocab_size > _LOGIT_BUDGET:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches

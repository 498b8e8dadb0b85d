"""Soft prompts: k learned vectors in place of k placeholder tokens' embeddings.

A `SoftPrompt` is a context control and a model control at once. As a context control it puts k
copies of a placeholder token (the tokenizer's pad token by default) in front of the prompt; as a model
control it replaces the embeddings of placeholder positions with its vectors while sampling (the j-th
placeholder of a run gets vector j). The base books are therefore exact as for any context control:
the sampled tokens are rescored on the raw prompt, with no placeholders and no hook.

Placeholders in the left padding of a batch also match; they are masked out of attention, so
replacing them changes nothing. The placeholder must be a single token that is neither BOS nor EOS.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from steering.controls.adapter import check_base, read_json_file, read_weights
from steering.errors import InvalidArgument, ModelLoadError
from steering.paths import atomic_dir, unfinished_run_note

VECTORS = "soft_prompt.safetensors"
META = "soft_prompt.json"


@dataclass
class SoftPrompt:
    """k learned embeddings (`vectors`, shape (k, hidden)) prepended to the prompt."""

    vectors: torch.Tensor
    placeholder: str = "<pad>"
    stop: tuple[str, ...] = ()
    base_model: str = ""
    _hooks: list[Any] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.vectors, torch.Tensor) or self.vectors.dim() != 2 or self.vectors.shape[0] < 1:
            raise InvalidArgument(
                "a soft prompt needs a (k, hidden) tensor of vectors", received=getattr(self.vectors, "shape", None),
                fix="train one with `steer train soft-prompt`",
            )  # fmt: skip

    @property
    def length(self) -> int:
        return int(self.vectors.shape[0])

    def render(self, prompt: str, *, tokenizer: Any) -> str:
        return self.placeholder * self.length + prompt

    def placeholder_id(self, model: Any) -> int:
        """The placeholder's token id, checked: one token, not BOS or EOS, and the vectors fit the model."""
        check_base(self.base_model, model, what=f"the soft prompt ({self.length} vectors)")
        ids = model.tokenizer(self.placeholder, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or ids[0] in (model.bos_token_id, *model.eos_token_ids):
            raise InvalidArgument(
                f"the soft prompt's placeholder {self.placeholder!r} must be one token that is not BOS or EOS",
                received=ids,
                fix="pass placeholder= a reserved token of this tokenizer (e.g. '<pad>' or '<unused0>')",
            )
        hidden = int(model.module.get_input_embeddings().weight.shape[1])
        if self.vectors.shape[1] != hidden:
            raise InvalidArgument(
                f"the soft prompt has vectors of width {self.vectors.shape[1]}, the model embeds in {hidden}",
                received=self.base_model or "another model",
                fix=f"use a soft prompt trained on {model.name}",
            )
        return int(ids[0])

    @contextmanager
    def attached(self, model: Any) -> Iterator[None]:
        placeholder = self.placeholder_id(model)
        embedding = model.module.get_input_embeddings()

        def replace(module: Any, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
            ids = args[0]
            hits = ids == placeholder
            if not bool(hits.any()):
                return output
            # Index of each placeholder within its run: j-th placeholder → vector j (mod k).
            runs = torch.cumsum(hits.long(), dim=-1)
            starts = torch.where(hits, 0, runs).cummax(dim=-1).values
            index = ((runs - starts - 1) % self.length).clamp(min=0)
            vectors = self.vectors.to(output.dtype)[index]
            return torch.where(hits[..., None], vectors, output)

        handle = embedding.register_forward_hook(replace)
        try:
            yield
        finally:
            handle.remove()

    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        from safetensors.torch import save_file

        with atomic_dir(Path(directory)) as tmp:
            save_file({"vectors": self.vectors.detach().float().contiguous()}, str(tmp / VECTORS))
            meta = {"placeholder": self.placeholder, "base_model": self.base_model, **(extra or {})}
            (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path) -> SoftPrompt:
        """Read a soft prompt written by `save`; a corrupt or foreign file is refused with what is wrong.

        Raises:
            InvalidArgument: not a soft prompt directory.
            ModelLoadError: a file is not JSON / safetensors, or holds no (k, hidden) `vectors` tensor.
        """
        directory = Path(directory)
        if not (directory / VECTORS).is_file():
            raise InvalidArgument(
                f"{directory} is not a soft prompt (no {VECTORS})",
                received=str(directory),
                fix="pass the adapter folder of `steer train soft-prompt` (RUN/adapter)",
            )
        fix = "train it again with `steer train soft-prompt`, or copy the whole adapter folder again"
        meta = (
            read_json_file(directory / META, what="soft prompt metadata", fix=fix)
            if (directory / META).is_file()
            else {}
        )
        tensors = read_weights(directory / VECTORS, what="soft prompt", fix=fix)
        note = unfinished_run_note(directory)  # RUN/adapter of a run that was killed or interrupted
        if note:
            logging.getLogger(__name__).warning(note)
        vectors = tensors.get("vectors")
        if vectors is None or vectors.dim() != 2 or vectors.shape[0] < 1 or not vectors.is_floating_point():
            raise ModelLoadError(
                f"the soft prompt {directory / VECTORS} needs one float tensor 'vectors' of shape (k, hidden)",
                received={name: tuple(t.shape) for name, t in list(tensors.items())[:4]},
                fix=fix,
            )
        placeholder, base_model = meta.get("placeholder", "<pad>"), meta.get("base_model", "")
        if not isinstance(placeholder, str) or not placeholder or not isinstance(base_model, str):
            raise ModelLoadError(
                f"the soft prompt metadata {directory / META} needs string 'placeholder' and 'base_model'",
                received={"placeholder": placeholder, "base_model": base_model},
                fix=fix,
            )
        return cls(vectors.float(), placeholder, base_model=base_model)

    def __repr__(self) -> str:
        return f"SoftPrompt(k={self.length}, placeholder={self.placeholder!r})"

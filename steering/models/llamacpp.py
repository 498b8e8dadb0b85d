"""llama.cpp as a decode backend: a GGUF run by llama-cpp-python behind the `LanguageModel` surface.

`load_model("gemma-270m", backend="llamacpp")` gives a `LlamaCppModel`. The decode engine drives it
as it drives the torch model: `forward_step` prefills a batch of rows or feeds each row its next
token and returns the logits at each row's last position; the KV cache stays inside llama.cpp, one
llama.cpp sequence per batch row. So the engine's whole step runs unchanged on it: the base books
(float32 log-softmax of the logits), the logit controls (sampling, pools, grammars, quotes, tweaks),
`logq`, the per-row generators, SMC resampling (`reorder_cache` copies sequences).

**What "base" means on this backend.** `logp_base` is the log-probability under the quantised GGUF as
llama.cpp computes it (its Q4_K/Q6_K kernels on 8-bit activations) — not the dequantised weights the
torch backend runs in bf16. Both are "the model", and they differ a little: BENCHMARKS.md,
"llamacpp-backend", gives the measured difference of the two backends' log-probabilities on the same
text. Books from one backend are exact for that backend; do not mix them in one importance weight.

**What is refused.** Anything that needs the weights as torch tensors — model controls (adapters,
steering vectors, soft prompts), PPLM (gradients on the KV cache), SMC's lookahead (a copy of a
`DynamicCache`), training — reaches for `model.module`, which here is `TorchOnly`: it raises an
error naming the torch backend instead of an `AttributeError` deep inside.

Sizes: one context holds every sequence (`kv_unified`): `n_ctx` tokens across the batch (8192 by
default), at most `MAX_ROWS` rows; a decode that does not fit says so and how to fix it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from steering.errors import InvalidArgument, ModelLoadError, ModelNotFound, SteeringError
from steering.models.cache import cache_is_valid, check_gguf, write_manifest
from steering.models.language_model import LanguageModel, TokenIds
from steering.models.loading import converted_folder, special_tokens
from steering.models.registry import REGISTRY
from steering.paths import atomic_dir

log = logging.getLogger(__name__)

MAX_ROWS = 32  # batch rows decoded together; sequence ids 0..2·MAX_ROWS are in use (see reorder_cache)
_SCORING_SEQ = 2 * MAX_ROWS  # the sequence teacher-forced scoring uses, apart from the decode's rows
_MAX_OUTPUTS = 64  # logit rows per llama_decode call: bounds llama.cpp's output buffer (64 × V floats)
INSTALL = (
    "make llamacpp (builds llama-cpp-python from its sdist, about 12 minutes on 2 cores), or "
    "pip install 'steering[llamacpp]'"
)


def llama_cpp_module() -> Any:
    """The `llama_cpp` package, or a clear error saying how to install it."""
    try:
        import llama_cpp
    except ImportError as error:
        raise ModelLoadError(
            "the llama.cpp backend needs the package llama-cpp-python, which is not installed",
            received=f"{type(error).__name__}: {error}",
            fix=f"install it: {INSTALL}; or use the torch backend (the default)",
        ) from error
    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        # llama.cpp writes notes on every load and context to stderr; only its errors reach our log.
        @llama_cpp.llama_log_callback
        def only_errors(level: int, text: bytes, _user_data: Any) -> None:
            if level == _GGML_LOG_LEVEL_ERROR:
                log.error("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())

        _LOG_CALLBACK = only_errors  # kept referenced: llama.cpp holds a pointer to it
        llama_cpp.llama_log_set(_LOG_CALLBACK, None)
    return llama_cpp


_LOG_CALLBACK: Any = None
_GGML_LOG_LEVEL_ERROR = 4  # ggml.h: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5


class TorchOnly:
    """Stands where the torch module would be: every use says the torch backend is needed."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _refuse(self) -> SteeringError:
        return InvalidArgument(
            "this needs the model's torch weights (hidden states, gradients or a Hugging Face cache: "
            "adapters, steering vectors, soft prompts, PPLM, SMC lookahead, training), which the "
            "llama.cpp backend does not expose",
            received=f"load_model({self._name!r}, backend='llamacpp')",
            fix=f"load it with the torch backend: load_model({self._name!r}) (or --backend torch); "
            "the llama.cpp backend runs logit controls, pools and grammars",
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise self._refuse()

    def __call__(self, *args: object, **kwargs: object) -> Any:
        raise self._refuse()


class Runtime:
    """A llama.cpp model and its one context (KV memory shared by every sequence), freed with it."""

    def __init__(self, path: Path, *, n_ctx: int, n_batch: int, threads: int) -> None:
        lc = llama_cpp_module()
        self.lc = lc
        lc.llama_backend_init()
        model_params = lc.llama_model_default_params()
        model_params.n_gpu_layers = 0
        model = lc.llama_model_load_from_file(str(path).encode(), model_params)
        if not model:
            raise ModelLoadError(
                f"llama.cpp could not load {path}",
                received=str(path),
                fix="check that the file is a complete GGUF of an architecture llama.cpp supports",
            )
        params = lc.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = _SCORING_SEQ + 1
        params.n_threads = threads
        params.n_threads_batch = threads
        params.kv_unified = True  # one pool of cells for every row: a row may use what another does not
        params.no_perf = True
        # Flash attention off (as llama-cpp-python's Llama has it by default): with it on, a token's
        # logits moved more with the number of tokens one call holds (measured here).
        params.flash_attn_type = 0
        context = lc.llama_init_from_model(model, params)
        if not context:
            lc.llama_model_free(model)
            raise ModelLoadError(
                f"llama.cpp could not create a context for {path}",
                received=f"n_ctx={n_ctx}, n_batch={n_batch}",
                fix="lower n_ctx, or free memory",
            )
        self.model, self.context = model, context
        self.memory = lc.llama_get_memory(context)
        self.n_vocab = int(lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(model)))
        self.n_ctx, self.n_batch = int(lc.llama_n_ctx(context)), n_batch
        self.batch = lc.llama_batch_init(n_batch, 0, 1)
        self.epoch = 0  # bumped by every prefill: a cache from an earlier one is stale
        self._finalizer = weakref.finalize(self, _free, lc, self.batch, context, model)

    def clear(self) -> None:
        """Forget every sequence (the cells' bytes are not zeroed: they are overwritten when reused)."""
        self.lc.llama_memory_clear(self.memory, False)

    def remove(self, seq: int) -> None:
        self.lc.llama_memory_seq_rm(self.memory, seq, -1, -1)

    def copy(self, source: int, target: int) -> None:
        self.lc.llama_memory_seq_cp(self.memory, source, target, -1, -1)

    def run(self, items: list[tuple[int, int, int, bool]]) -> np.ndarray:
        """Decode (sequence, position, token, wants logits) items; the logits asked for, in order.

        Items go to llama.cpp in calls of at most `n_batch` tokens and `_MAX_OUTPUTS` logit rows.
        """
        outputs: list[np.ndarray] = []
        start = 0
        while start < len(items):
            end, wanted = start, 0
            while end < len(items) and end - start < self.n_batch:
                if items[end][3]:
                    if wanted == _MAX_OUTPUTS:
                        break
                    wanted += 1
                end += 1
            batch = self.batch
            for i, (seq, position, token, logits) in enumerate(items[start:end]):
                batch.token[i] = token
                batch.pos[i] = position
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = logits
            batch.n_tokens = end - start
            code = self.lc.llama_decode(self.context, batch)
            if code != 0:
                raise _decode_error(code, self.n_ctx)
            if wanted:
                pointer = self.lc.llama_get_logits(self.context)
                rows = np.ctypeslib.as_array(pointer, shape=(wanted, self.n_vocab))
                outputs.append(rows.copy())  # llama.cpp reuses its buffer on the next call
            start = end
        if not outputs:
            return np.zeros((0, self.n_vocab), dtype=np.float32)
        return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]


def _free(lc: Any, batch: Any, context: Any, model: Any) -> None:
    lc.llama_batch_free(batch)
    lc.llama_free(context)
    lc.llama_model_free(model)


def _decode_error(code: int, n_ctx: int) -> SteeringError:
    if code == 1:
        return InvalidArgument(
            f"the llama.cpp context is full: its {n_ctx} token slots are shared by every row of the batch",
            received=f"llama_decode returned {code}",
            fix="lower batch_size or max_new_tokens, or load with a larger n_ctx "
            "(steering.models.llamacpp.load_llamacpp(name, n_ctx=…))",
        )
    return SteeringError(
        "llama.cpp failed to decode a batch",
        received=f"llama_decode returned {code}",
        fix="run again with --debug and report it; the torch backend is unaffected",
    )


@dataclass
class LlamaCppCache:
    """The decoder's handle on its rows' KV state inside llama.cpp: row i is sequence `seqs[i]`."""

    runtime: Runtime
    epoch: int
    seqs: list[int]
    lengths: list[int]

    def check(self) -> None:
        if self.epoch != self.runtime.epoch:
            raise SteeringError(
                "this llama.cpp model started another decode while one was still running",
                received="two BatchDecoders interleaved on one LlamaCppModel",
                fix="finish one decode before starting the next, or load the model twice",
            )

    def reorder_cache(self, index: torch.Tensor) -> None:
        """Row j becomes a copy of row index[j] (SMC resampling): sequences copied through spare ids."""
        self.check()
        picked = [int(i) for i in index.tolist()]
        if len(picked) > MAX_ROWS:
            raise _too_many_rows(len(picked))
        spare = MAX_ROWS
        for j, i in enumerate(picked):
            self.runtime.copy(self.seqs[i], spare + j)
        for seq in self.seqs:
            self.runtime.remove(seq)
        for j in range(len(picked)):
            self.runtime.copy(spare + j, j)
            self.runtime.remove(spare + j)
        self.lengths = [self.lengths[i] for i in picked]
        self.seqs = list(range(len(picked)))


def _too_many_rows(rows: int) -> InvalidArgument:
    return InvalidArgument(
        f"the llama.cpp backend decodes at most {MAX_ROWS} rows together",
        received=f"{rows} rows",
        fix=f"use batch_size ≤ {MAX_ROWS} (or fewer SMC particles)",
    )


@dataclass
class LlamaCppModel(LanguageModel):
    """A `LanguageModel` whose forward passes run in llama.cpp (see the module's docstring)."""

    runtime: Runtime | None = field(default=None, repr=False)
    gguf_path: Path | None = None

    backend: ClassVar[str] = "llamacpp"

    @property
    def vocab_size(self) -> int:
        assert self.runtime is not None
        return self.runtime.n_vocab

    @torch.no_grad()
    def forward_step(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: Any = None,
    ) -> tuple[torch.Tensor, Any]:
        """A prefill (rows are read without their left padding) or the rows' next tokens, in llama.cpp."""
        runtime = self.runtime
        assert runtime is not None
        rows = input_ids.shape[0]
        if rows > MAX_ROWS:
            raise _too_many_rows(rows)
        ids = input_ids.tolist()
        if cache is None:
            runtime.clear()
            runtime.epoch += 1
            real = attention_mask[:, -input_ids.shape[1] :].bool().tolist()
            tokens = [
                [t for t, keep in zip(row, mask, strict=True) if keep]
                for row, mask in zip(ids, real, strict=True)
            ]
            cache = LlamaCppCache(runtime, runtime.epoch, list(range(rows)), [0] * rows)
        else:
            if not isinstance(cache, LlamaCppCache):
                raise InvalidArgument(
                    "a llama.cpp model continues only a cache it made",
                    received=type(cache).__name__,
                    fix="start the decode on this model (cache=None)",
                )
            cache.check()
            tokens = ids
        items = [
            (cache.seqs[i], cache.lengths[i] + k, token, k == len(row) - 1)
            for i, row in enumerate(tokens)
            for k, token in enumerate(row)
        ]
        logits = runtime.run(items)
        cache.lengths = [length + len(row) for length, row in zip(cache.lengths, tokens, strict=True)]
        return torch.from_numpy(logits), cache

    @torch.no_grad()
    def score_pairs(self, pairs: list[tuple[TokenIds, TokenIds]], *, padding_side: str) -> list[torch.Tensor]:
        """Teacher-forced log-probabilities: prompt and continuation evaluated together, one pair at a
        time in a sequence of its own (a decode's rows are untouched: scoring may run between steps).

        llama.cpp's CPU kernels round a token's logits differently by how many tokens one call holds
        and where the KV cells lie, so these numbers match a decode's books up to that rounding
        (measured in BENCHMARKS.md, "llamacpp-backend"), not bit for bit.
        """
        runtime = self.runtime
        assert runtime is not None
        scored = []
        for prompt, continuation in pairs:
            if not continuation:
                scored.append(torch.zeros(0))
                continue
            fed = prompt + continuation[:-1]
            first = len(prompt) - 1  # the logits at this position predict continuation[0]
            items = [(_SCORING_SEQ, k, token, k >= first) for k, token in enumerate(fed)]
            runtime.remove(_SCORING_SEQ)
            try:
                logits = torch.from_numpy(runtime.run(items))
            finally:
                runtime.remove(_SCORING_SEQ)
            logp = logits.log_softmax(-1)
            scored.append(logp.gather(-1, torch.tensor(continuation)[:, None]).squeeze(-1))
        return scored


def gguf_file(name_or_path: str, home: Path) -> Path:
    """The GGUF file of a registry model (assembled once into `home/models/NAME-gguf/`) or a path."""
    if name_or_path in REGISTRY:
        entry = REGISTRY[name_or_path]
        if entry.locate is None:
            raise InvalidArgument(
                f"{name_or_path} is built in code and has no GGUF file for llama.cpp",
                received=f"load_model({name_or_path!r}, backend='llamacpp')",
                fix="use a GGUF model (gemma-270m, smollm2-135m-instruct, a .gguf path) or the torch backend",
            )
        target = home / "models" / f"{entry.name}-gguf"
        if cache_is_valid(target):
            return target / "model.gguf"
        (home / "models").mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=".assemble-", dir=home / "models"))
        try:
            located, _ = entry.locate(workdir)
            if not located.is_relative_to(workdir):
                return located  # a file inside its package (smollm2): used where it is
            with atomic_dir(target) as tmp:
                shutil.move(str(located), tmp / "model.gguf")
                write_manifest(tmp, name=entry.name)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return target / "model.gguf"
    path = Path(name_or_path).expanduser()
    if path.is_file():
        check_gguf(path)
        return path
    if path.is_dir():
        raise InvalidArgument(
            "the llama.cpp backend runs GGUF files, not Hugging Face directories",
            received=str(path),
            fix="convert it to GGUF (llama.cpp's convert_hf_to_gguf.py) or use the torch backend",
        )
    raise ModelNotFound(
        f"the model {name_or_path} is neither a registry name nor a file",
        received=name_or_path,
        fix="use a registry name (" + ", ".join(REGISTRY) + ") or a .gguf path",
    )


def load_llamacpp(
    name_or_path: str,
    *,
    home: Path,
    n_ctx: int = 8192,
    n_batch: int = 512,
    threads: int | None = None,
) -> LlamaCppModel:
    """Load a registry model or a .gguf file on the llama.cpp backend (`load_model(…, backend="llamacpp")`).

    The tokenizer and the special tokens come from the same cached conversion the torch backend uses,
    so both backends tokenise identically and controls built for one work on the other.

    Args:
        name_or_path: a registry name with a GGUF (gemma-270m, smollm2-135m-instruct) or a .gguf path.
        home: the cache root.
        n_ctx: token slots of the context, shared by all rows of a batch.
        n_batch: most tokens per llama.cpp call (a longer prefill takes several).
        threads: CPU threads (default: every core `os.sched_getaffinity` gives this process).
    """
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    llama_cpp_module()
    for label, value in (("n_ctx", n_ctx), ("n_batch", n_batch), ("threads", threads or 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InvalidArgument(
                f"{label} must be a positive integer", received=repr(value), fix=f"omit {label}"
            )
    path = gguf_file(name_or_path, home)
    folder = converted_folder(name_or_path, home)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    try:
        generation: Any = GenerationConfig.from_pretrained(folder, local_files_only=True)
    except OSError:
        generation = None
    tokens = special_tokens(tokenizer, config, generation, name=name_or_path)
    threads = threads or len(os.sched_getaffinity(0))
    runtime = Runtime(path, n_ctx=n_ctx, n_batch=n_batch, threads=threads)
    if runtime.n_vocab != int(config.vocab_size):
        raise ModelLoadError(
            f"llama.cpp's vocabulary ({runtime.n_vocab}) differs from the tokenizer's model ({config.vocab_size})",
            received=str(path),
            fix="use the torch backend for this file",
        )
    return LlamaCppModel(
        module=TorchOnly(name_or_path),
        tokenizer=tokenizer,
        name=name_or_path,
        device=torch.device("cpu"),
        dtype=torch.float32,
        eos_token_ids=tokens.eos_token_ids,
        pad_token_id=tokens.pad_token_id,
        context_length=min(tokens.context_length, runtime.n_ctx),
        add_bos=tokens.add_bos,
        runtime=runtime,
        gguf_path=path,
    )


def backend_available() -> bool:
    """Whether llama-cpp-python can be imported here."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


__all__ = [
    "MAX_ROWS",
    "LlamaCppCache",
    "LlamaCppModel",
    "Runtime",
    "TorchOnly",
    "backend_available",
    "gguf_file",
    "llama_cpp_module",
    "load_llamacpp",
]

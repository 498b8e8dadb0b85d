"""llamppl baseline: SMC for "a story that ends with S" on gemma-270m, on CPU.

Runs llamppl (genlm/llamppl 0.2.3, HF backend = genlm-backend's AsyncTransformer) on the local
gemma-270m weights and writes one JSON record: wall time, model-call counts, final particles.

Its own venv, `.venv-llamppl` (never the project's .venv; llamppl pins no torch, but genlm-backend
would pull bitsandbytes and llamppl pre-commit/ipykernel, none of which it needs at run time); `make
bench` builds it with the Makefile's `.venv-llamppl/bin/python` target: torch==2.13.0 (the CPU build)
first, then `--no-deps llamppl==0.2.3 genlm-backend==0.3.1`, then numpy<2.5, scipy, protobuf,
transformers>=5,<6, sentencepiece, accelerate, numba.

Run (offline):

    HF_HUB_OFFLINE=1 .venv-llamppl/bin/python benchmarks/llamppl_runner.py \
        --particles 4 --max-new-tokens 24 --prompt "Once upon a time" \
        --suffix " happily ever after." --seed 0 --out /tmp/llamppl.json

Target: the base model's completions of the prompt (temperature 1; ending at EOS or after
--max-new-tokens tokens) conditioned on the text ending with S. Two llamppl models (--model):

* filter (the plain llamppl way): sample tokens from the LM; EOS is allowed only when the text
  ends with S (`observe(mask_dist({EOS}), False)` otherwise, so the weight keeps 1 - p(EOS));
  at the token limit `condition(text ends with S)`. Exact, but S is almost never hit by chance.
* lookahead (default; same idea as steering.condition.smc): EOS is always masked; at every step
  each particle scores closing now, log p(S EOS | y), from |S|+1 next-token queries, uses it as
  llamppl's `twist` (steers resampling), and records the candidate y+S+EOS with log weight
  (untwisted particle weight + log p(S EOS | y)). Candidates are the output samples; their mean
  weight (sum / N) estimates Z = P(ends with S).

Counts (see "calls" in the JSON): `requests` = next-token log-prob requests made by llamppl
(cache hits included); `queries` = requests that missed the log-prob cache and went to the model;
`forward_batches` = batched HF forward passes; `forward_rows` = sequences in those batches;
`forward_tokens` = token positions computed (padding included). The HF backend keeps KV only for
the prompt (`cache_kv`), so each query recomputes its whole continuation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from genlm.backend.llm import AsyncTransformer
from llamppl import CachedCausalLM, LMContext, Model, smc_standard
from llamppl.util import logsumexp
from transformers import AutoModelForCausalLM, AutoTokenizer

MODEL_DIR = Path.home() / ".cache/steering/models/gemma-270m"
CANDIDATES: list[tuple[str, float]] = []  # (text, log weight) of closed stories, lookahead model


class EndsWith(Model):
    def __init__(self, lm, prompt, suffix, max_new_tokens, lookahead, min_chars):
        super().__init__()
        self.lm, self.suffix, self.max_new_tokens = lm, suffix, max_new_tokens
        self.context = LMContext(lm, prompt, show_eos=False)
        self.eos = lm.tokenizer.eos_token_id
        self.closing = [*lm.tokenizer.encode(suffix, add_special_tokens=False), self.eos]
        self.lookahead, self.min_chars = lookahead, min_chars
        self.close_lp = None  # log p(S EOS | current prefix), lookahead model

    def immutable_properties(self):
        return {"lm", "suffix", "closing", "eos"}

    def text(self):
        return str(self.context)

    async def log_p_closing(self):
        tokens, total = list(self.context.tokens), 0.0
        for t in self.closing:
            total += float((await self.lm.next_token_logprobs(tokens))[t])
            tokens.append(t)
        return total

    async def step(self):
        if self.lookahead:
            await self.step_lookahead()
        else:
            await self.step_filter()

    async def step_filter(self):
        if not self.text().endswith(self.suffix):
            await self.observe(self.context.mask_dist({self.eos}), False)
        token = await self.sample(self.context.next_token())
        if token.token_id == self.eos:
            self.finish()
        elif self.context.token_count >= self.max_new_tokens:
            self.condition(self.text().endswith(self.suffix))
            self.finish()

    async def step_lookahead(self):
        room = self.max_new_tokens - self.context.token_count - (len(self.closing) - 1)
        if self.close_lp is None:
            self.close_lp = await self.log_p_closing()
        if room >= 0 and len(self.text() + self.suffix) >= self.min_chars:
            CANDIDATES.append((self.text() + self.suffix, self.weight + self.close_lp))
        if room <= 0:
            self.finish()
            return
        await self.observe(self.context.mask_dist({self.eos}), False)
        await self.sample(self.context.next_token())
        self.close_lp = await self.log_p_closing()
        self.twist(self.close_lp)


def distinct_ess(texts: list[str], weights: np.ndarray) -> float:
    """ESS with copies of one text merged (their weights summed): N copies of a sample are one sample."""
    merged: dict[str, float] = {}
    for text, weight in zip(texts, weights, strict=True):
        merged[text] = merged.get(text, 0.0) + float(weight)
    total = sum(merged.values())
    return total**2 / sum(w * w for w in merged.values()) if total > 0 else 0.0


def load_lm(dtype: str, batch_size: int) -> CachedCausalLM:
    # Same as CachedCausalLM.from_pretrained(dir, backend="hf"), but with an explicit CPU/dtype.
    tok = AutoTokenizer.from_pretrained(MODEL_DIR)
    hf = AutoModelForCausalLM.from_pretrained(MODEL_DIR, dtype=getattr(torch, dtype)).to("cpu")
    return CachedCausalLM(AsyncTransformer(hf, tok, batch_size=batch_size))


def count_calls(lm: CachedCausalLM) -> dict[str, int]:
    calls = dict(requests=0, queries=0, forward_batches=0, forward_rows=0, forward_tokens=0)
    backend, ask, add = lm.model, lm.next_token_logprobs, lm.model.add_query

    async def requests(token_ids):
        calls["requests"] += 1
        return await ask(token_ids)

    def queries(query, future, past, lora_name=None):
        calls["queries"] += 1
        return add(query, future, past, lora_name)

    def forward(_module, args, kwargs):
        ids = args[0] if args else kwargs["input_ids"]
        calls["forward_batches"] += 1
        calls["forward_rows"] += ids.shape[0]
        calls["forward_tokens"] += ids.numel()

    lm.next_token_logprobs, backend.add_query = requests, queries
    backend.model.register_forward_pre_hook(forward, with_kwargs=True)
    return calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--particles", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("--suffix", default=" happily ever after.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", choices=["lookahead", "filter"], default="lookahead")
    ap.add_argument("--min-chars", type=int, default=0, help="lookahead: shortest story (chars) to keep")
    ap.add_argument("--ess-threshold", type=float, default=0.5)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    random.seed(a.seed), np.random.seed(a.seed), torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    lm = load_lm(a.dtype, batch_size=max(a.particles, 1))
    lm.cache_kv(lm.tokenizer.encode(a.prompt))  # as in llamppl's examples: KV for the prompt
    load_s = time.perf_counter() - t0

    calls = count_calls(lm)
    model = EndsWith(lm, a.prompt, a.suffix, a.max_new_tokens, a.model == "lookahead", a.min_chars)
    t0 = time.perf_counter()
    particles = asyncio.run(smc_standard(model, a.particles, a.ess_threshold, resampling_method="systematic"))
    wall_s = time.perf_counter() - t0

    record = dict(
        config=vars(a),
        versions={k: version(k) for k in ("llamppl", "genlm-backend", "torch", "transformers")},
        load_seconds=round(load_s, 3),
        wall_seconds=round(wall_s, 3),
        calls=calls,
        particles=[
            dict(text=p.text(), log_weight=float(p.weight), ends_with_suffix=p.text().endswith(a.suffix))
            for p in particles
        ],
    )
    if a.model == "lookahead":
        lw = np.array([w for _, w in CANDIDATES])
        norm = np.exp(lw - logsumexp(lw)) if len(lw) else lw
        order = np.argsort(-lw)
        record.update(
            candidates=len(CANDIDATES),
            log_Z=float(logsumexp(lw) - np.log(a.particles)) if len(lw) else None,
            candidate_ess=float(1 / np.sum(norm**2)) if len(lw) else 0.0,
            candidate_ess_distinct=distinct_ess([t for t, _ in CANDIDATES], norm),
            samples=[
                dict(
                    text=CANDIDATES[i][0],
                    log_weight=float(lw[i]),
                    weight=float(norm[i]),
                    ends_with_suffix=CANDIDATES[i][0].endswith(a.suffix),
                )
                for i in order[:16]
            ],
        )
    else:
        lw = np.array([p.weight for p in particles])
        record["log_Z"] = float(logsumexp(lw) - np.log(a.particles))
    Path(a.out).write_text(json.dumps(record, indent=2, ensure_ascii=False))
    print(json.dumps({k: record[k] for k in ("wall_seconds", "load_seconds", "calls", "log_Z")}))


if __name__ == "__main__":
    main()

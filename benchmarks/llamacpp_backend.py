"""The llama.cpp backend beside plain llama-cpp-python and our torch engine, batch 1, one run.

Run: `python benchmarks/llamacpp_backend.py --write BENCHMARKS.md`. Every mode decodes the same
prompts one at a time (batch 1), ≤ `--tokens` new tokens each, and reports generated tokens per second
(EOS included; median of `--repeats` passes, the modes interleaved within each pass):

- plain llama-cpp-python: `Llama.create_completion` (what a user would call), greedy (temperature 0)
  and pure sampling (temperature 1, top-k 0, top-p 1, min-p 0, no repeat penalty), and with its own
  JSON-schema grammar (`LlamaGrammar.from_json_schema`);
- ours on the llama.cpp backend: `generate(load_model(…, backend="llamacpp"), …)` with the books on
  (log q, log p_base, step KL per token), greedy, sampling, and with a `JsonSchema` pool;
- ours on the torch backend (bf16), greedy and sampling.

Both llama.cpp sides load the same GGUF with the same thread count and flash attention off. Then the
two backends' log-probabilities of the same text: the llama.cpp samples' tokens scored by llama.cpp's
decode (the books), by llama.cpp teacher-forced, by torch float32 and by torch bf16.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from common import PROMPTS, machine, machine_line, write_section

from steering.controls import Greedy, JsonSchema
from steering.decode import generate
from steering.models import load_model

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer"},
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 3},
    },
    "required": ["name", "age", "hobbies"],
}
JSON_PROMPT = "A person described as JSON:"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()

    from llama_cpp import Llama, LlamaGrammar, __version__

    threads = len(os.sched_getaffinity(0))
    ours_cpp = load_model("gemma-270m", backend="llamacpp")
    torch_bf16 = load_model("gemma-270m")
    plain = Llama(str(ours_cpp.gguf_path), n_ctx=2048, n_threads=threads, flash_attn=False, verbose=False)
    grammar = LlamaGrammar.from_json_schema(json.dumps(SCHEMA), verbose=False)
    prompts = PROMPTS[: args.prompts]
    sampling = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "repeat_penalty": 1.0}

    def theirs(temperature: float, *, json_mode: bool = False) -> int:
        count = 0
        for i, prompt in enumerate([JSON_PROMPT] * len(prompts) if json_mode else prompts):
            plain.reset()
            out = plain.create_completion(
                prompt, max_tokens=args.tokens, temperature=temperature, seed=i,
                grammar=grammar if json_mode else None, **sampling,
            )  # fmt: skip
            count += out["usage"]["completion_tokens"]
        return count

    def ours(model, *, greedy: bool, json_mode: bool = False) -> int:
        count = 0
        controls: list[object] = [JsonSchema(SCHEMA)] if json_mode else []
        controls += [Greedy()] if greedy else []
        for i, prompt in enumerate([JSON_PROMPT] * len(prompts) if json_mode else prompts):
            sample = generate(model, [prompt], controls=controls, max_new_tokens=args.tokens, seed=i)[0]
            count += len(sample.token_ids)
        return count

    modes = {
        "plain llama-cpp-python, greedy": lambda: theirs(0.0),
        "ours on llama.cpp, greedy": lambda: ours(ours_cpp, greedy=True),
        "plain llama-cpp-python, sampling": lambda: theirs(1.0),
        "ours on llama.cpp, sampling": lambda: ours(ours_cpp, greedy=False),
        "plain llama-cpp-python, JSON-schema grammar": lambda: theirs(1.0, json_mode=True),
        "ours on llama.cpp, JsonSchema pool": lambda: ours(ours_cpp, greedy=False, json_mode=True),
        "ours on torch (bf16), greedy": lambda: ours(torch_bf16, greedy=True),
        "ours on torch (bf16), sampling": lambda: ours(torch_bf16, greedy=False),
    }
    ours(ours_cpp, greedy=True)  # warm both paths once (first calls allocate buffers)
    theirs(0.0)
    rates: dict[str, list[float]] = {name: [] for name in modes}
    counts: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, run in modes.items():
            began = time.perf_counter()
            counts[name] = run()
            rates[name].append(counts[name] / (time.perf_counter() - began))
            print(f"{name}: {rates[name][-1]:.1f} tok/s ({counts[name]} tokens)", flush=True)
    rate = {name: statistics.median(values) for name, values in rates.items()}

    # The two backends' log-probabilities of the same tokens.
    torch32 = load_model("gemma-270m", dtype="float32")
    samples = generate(ours_cpp, prompts, max_new_tokens=args.tokens, seed=0, batch_size=1)
    books = torch.cat([s.logp_base for s in samples])
    tokens = [s.token_ids for s in samples]
    scored = {
        "llama.cpp teacher-forced": torch.cat(ours_cpp.logprobs(prompts, tokens)),
        "torch float32": torch.cat(torch32.logprobs(prompts, tokens)),
        "torch bf16": torch.cat(torch_bf16.logprobs(prompts, tokens)),
    }
    f32 = scored["torch float32"]
    gaps = {"llama.cpp decode (the books)": (books - f32)}
    gaps |= {name: (values - f32) for name, values in scored.items() if name != "torch float32"}
    self_gap = (scored["llama.cpp teacher-forced"] - books).abs()

    facts = machine()
    lines = [
        "## The llama.cpp decode backend (`benchmarks/llamacpp_backend.py`)",
        "",
        f"{machine_line(facts)}; llama-cpp-python {__version__} built from its sdist by `make install` "
        f"(native CPU flags, AMX off), {threads} threads, flash attention off on both llama.cpp sides. "
        f"gemma-270m, batch 1, {len(prompts)} prompts × ≤ {args.tokens} new tokens (JSON rows: "
        f"{len(prompts)} × the prompt {JSON_PROMPT!r} and a 3-field schema); tokens/s are generated "
        f'tokens over wall time, median of {args.repeats} interleaved passes. "ours" keeps the books '
        "(log q, log p_base and the step KL of every token).",
        "",
        "| mode | tokens/s | tokens | vs plain llama-cpp-python |",
        "|---|---|---|---|",
    ]
    pairs = {
        "ours on llama.cpp, greedy": "plain llama-cpp-python, greedy",
        "ours on llama.cpp, sampling": "plain llama-cpp-python, sampling",
        "ours on llama.cpp, JsonSchema pool": "plain llama-cpp-python, JSON-schema grammar",
        "ours on torch (bf16), greedy": "plain llama-cpp-python, greedy",
        "ours on torch (bf16), sampling": "plain llama-cpp-python, sampling",
    }
    for name in modes:
        versus = f"{rate[name] / rate[pairs[name]]:.2f}×" if name in pairs else "—"
        lines.append(f"| {name} | {rate[name]:.1f} | {counts[name]} | {versus} |")
    lines += [
        "",
        f'**What "base" means on each backend, measured** ({books.numel()} tokens that llama.cpp sampled '
        "from the prompts above, scored four ways; Δ against torch float32 on the dequantised weights, "
        "in nats per token):",
        "",
        "| log p of the same tokens | mean Δ | mean \\|Δ\\| | 95th pct \\|Δ\\| | max \\|Δ\\| | Δ of the sum per sample |",
        "|---|---|---|---|---|---|",
    ]
    per_sample = [len(t) for t in tokens]
    for name, gap in gaps.items():
        sums = torch.stack([part.sum() for part in gap.split(per_sample)])
        lines.append(
            f"| {name} | {gap.mean():+.3f} | {gap.abs().mean():.3f} | {gap.abs().quantile(0.95):.3f} | "
            f"{gap.abs().max():.3f} | {sums.abs().mean():.2f} |"
        )
    lines += [
        "",
        f"llama.cpp against itself (teacher-forced vs its own decode of the same tokens): mean |Δ| "
        f"{self_gap.mean():.3f}, max {self_gap.max():.3f} nats per token — its CPU kernels round a "
        "token's logits differently by how many tokens one call evaluates and where the KV cells lie. "
        "So the books are exact for the draw they describe (log q and log p_base come from the same "
        "logits), and a rescored log p_base (after a context control) carries that rounding. The torch "
        'and llama.cpp "bases" are different models at this scale (the Q4 GGUF run by llama.cpp\'s '
        "kernels vs its dequantised weights): do not mix their books in one importance weight.",
    ]
    print("\n".join(lines))
    if args.write:
        write_section(args.write, "llamacpp-backend", lines)


if __name__ == "__main__":
    main()

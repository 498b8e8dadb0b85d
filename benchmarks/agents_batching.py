"""Episodes among agents with different adapters: one mixed batch per turn against the alternatives.

Run: `python benchmarks/agents_batching.py --write BENCHMARKS.md`. The example bureaucracy's three
agents (`steering/agents/data/bureaucracy.toml`) discuss the same situations in three ways, all with
`steering.agents.run_episodes` on gemma-270m:

- **mixed** — every episode's speaker in one `generate` call per turn, each row wearing its own
  adapter (`controls.MixedAdapters`: peft's mixed-adapter batches, one forward per step);
- **per adapter** — one `generate` call per distinct adapter per turn (the rows whose speakers share
  it), what one would write with one active adapter at a time;
- **one after another** — each episode run alone (batch of one), what a prompt-chaining agent
  framework does.

Every agent takes part in every episode (round-robin from a different first speaker in each episode,
`--turns` turns, then the first speaker's reply), so each turn's rows wear all three adapters. The adapters are LoRA of the shape the
agents' training writes (rank 16 on every linear layer) with random weights: throughput does not
depend on what the weights say. tokens/s = generated tokens (EOS included) / wall time, median of
`--repeats` runs per mode, all in one process, bf16.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import machine, machine_line, write_section

from steering.agents import Agent, load_roster, load_situations, run_episodes
from steering.models import load_model
from steering.train.adapters import add_lora, remove_adapter, save_adapter


def random_adapter(model, path: Path, seed: int) -> Path:
    """A rank-16 all-linear LoRA with small random weights (B is zero at initialisation: not here)."""
    params = add_lora(model, "bench", rank=16, alpha=32, dropout=0.0)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in params:
            param.copy_(
                torch.randn(param.shape, generator=generator, dtype=torch.float32).to(param.dtype) * 0.01
            )
    save_adapter(model, "bench", path)
    remove_adapter(model, "bench")
    return path


def run_mode(
    model, agents, situations, mode: str, *, turns: int, tokens: int, batch_size: int
) -> tuple[int, float]:
    """(generated tokens, seconds) of the episodes in one mode."""
    # Episode i's speaking order starts at agent i mod 3: every turn's rows wear all three adapters.
    names = [a.name for a in agents]
    orders = [names[i % len(names) :] + names[: i % len(names)] for i in range(len(situations))]
    options = {"max_turns": turns, "max_new_tokens": tokens, "reply_tokens": tokens, "seed": 0}
    began = time.perf_counter()
    if mode == "one after another":
        episodes = [
            episode
            for situation, order in zip(situations, orders, strict=True)
            for episode in run_episodes(
                model, agents, [situation], participants=[order], batch_size=1, **options
            )
        ]
    else:
        episodes = run_episodes(
            model, agents, situations, participants=orders,
            batch_size=batch_size, mixed=mode == "mixed", **options,
        )  # fmt: skip
    seconds = time.perf_counter() - began
    count = sum(t.tokens for e in episodes for t in [*e.turns, e.reply] if t is not None)
    return count, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--situations", type=int, default=8)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=32, help="max new tokens per turn and reply")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model("gemma-270m", dtype="bfloat16")
    folder = Path(tempfile.mkdtemp(prefix="agents-batching-"))
    roster = load_roster()
    agents = [
        Agent(m.name, m.mission, adapter=random_adapter(model, folder / m.name, seed))
        for seed, m in enumerate(roster.agents)
    ]
    situations = [s.text for s in load_situations() if s.split == "heldout"][: args.situations]
    modes = ["mixed", "per adapter", "one after another"]
    results: dict[str, list[tuple[int, float]]] = {m: [] for m in modes}
    run_mode(model, agents, situations[:2], "mixed", turns=1, tokens=4, batch_size=2)  # warm-up
    for _ in range(args.repeats):
        for mode in modes:
            results[mode].append(
                run_mode(
                    model,
                    agents,
                    situations,
                    mode,
                    turns=args.turns,
                    tokens=args.tokens,
                    batch_size=args.batch_size,
                )
            )
            count, seconds = results[mode][-1]
            print(f"{mode:>18}: {count} tokens in {seconds:.1f} s = {count / seconds:.1f} tok/s", flush=True)
    rates = {m: statistics.median(c / s for c, s in results[m]) for m in modes}
    lines = [
        "## Agents: episodes with a different adapter per row (`benchmarks/agents_batching.py`)",
        "",
        f"{machine_line(machine())}. gemma-270m in bf16; {len(agents)} agents, each with its own rank-16 "
        f"all-linear LoRA (random weights: the cost does not depend on them); {len(situations)} held-out "
        f"situations, every agent in every episode (each turn's rows wear all three adapters), {args.turns} turns + a reply, ≤ {args.tokens} new tokens "
        f"each, batch size {args.batch_size}; median of {args.repeats} runs per mode, in one process.",
        "",
        "| mode | generate calls per turn | tokens | seconds | tokens/s | vs one after another |",
        "|---|---|---|---|---|---|",
    ]
    calls = {"mixed": "1", "per adapter": str(len(agents)), "one after another": str(len(situations))}
    for mode in modes:
        count, seconds = sorted(results[mode], key=lambda r: r[0] / r[1])[len(results[mode]) // 2]
        lines.append(
            f"| {mode} | {calls[mode]} | {count} | {seconds:.1f} | {rates[mode]:.1f} | "
            f"{rates[mode] / rates['one after another']:.2f}× |"
        )
    lines += [
        "",
        "Same numbers per row in every mode (`tests/controls/test_adapter.py` checks a mixed batch "
        "against each adapter alone); the modes differ in random draws, so token counts differ a little.",
    ]
    print("\n".join(lines))
    if args.write:
        write_section(args.write, "agents-batching", lines)


if __name__ == "__main__":
    main()

"""`steer probe`: what did a reward (an adapter) change outside the prompts it was trained on?

Scores a battery of texts under the base model and under the policy (the base with `--adapter`) and
samples the battery's prompts from the policy; prints, per category, the mean shift in
log-probability (± standard error) and the KL to the base on out-of-domain prompts, then the texts
that moved most. `--probes` takes a JSONL file or a built-in battery (sentiment, instruct,
constitution; see docs/evaluation.md). Everything the command checks — the battery, the adapter's
folder, the adapter's base model — is checked before any scoring starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from steering.errors import SEED_LIMIT

console = Console(stderr=True)


def probe(
    model: Annotated[str, typer.Option(help="The base model: registry name, .gguf file or HF directory.")],
    probes: Annotated[
        str,
        typer.Option("--probes", help="A battery: JSONL file, or sentiment | instruct | constitution."),
    ],
    adapter: Annotated[
        Path | None, typer.Option("--adapter", help="The policy's adapter (none: the base against itself).")
    ] = None,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Policy samples per prompt item.")] = 4,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="Tokens per sample.")] = 24,
    seed: Annotated[int, typer.Option(min=0, max=SEED_LIMIT - 1, help="Seed of the samples.")] = 0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write every number (and every text) as JSON here.")
    ] = None,
    top: Annotated[int, typer.Option("--top", min=0, help="How many most-moved texts to show each way.")] = 5,
    dtype: Annotated[str, typer.Option(help="float32 | bfloat16 (bfloat16 blurs small shifts).")] = "float32",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
) -> None:
    """Measure what a tuned policy changed outside its training prompts: log-prob shifts and KL per category."""
    from steering.cli.progress import LazyProgress
    from steering.controls import Adapter
    from steering.eval.probe import load_battery
    from steering.eval.probe import probe as run_probe
    from steering.models import load_model

    battery = load_battery(probes)  # a bad battery or a wrong adapter path is said before the model loads
    controls = [Adapter(adapter)] if adapter is not None else []
    with LazyProgress(console, "sampling the prompts", total=None, waiting=f"loading {model}…") as bar:
        loaded = load_model(model, dtype=dtype)
        for control in controls:
            control.load(loaded)  # an adapter for another base is refused here, before any scoring
        total = len(battery.prompts) * samples * max_new_tokens
        result = run_probe(
            loaded,
            controls,
            battery,
            samples=samples,
            max_new_tokens=max_new_tokens,
            seed=seed,
            batch_size=batch_size,
            progress=lambda done: bar.update(advance=done, total=total),
        )
    typer.echo(result.as_markdown(top=top), nl=False)
    if json_out is not None:
        from steering.paths import atomic_write_text, writing

        text = json.dumps(result.as_dict(top=top), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        with writing(json_out, what="probe results", fix="choose a folder you can write to"):
            atomic_write_text(json_out, text)
        console.print(f"wrote {json_out}", highlight=False)

"""The `steer` command line: models, generate, classify, sample, train, demo.

Errors a user can fix are printed as one paragraph (what was wrong, what was received, how to fix it)
with exit code 2; `steer --debug …` shows the traceback instead. `steer generate` exits 3 when a
constrained sample ran out of tokens unfinished (after writing every sample; `--allow-partial`: 0).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from steering.cli.agents import agents_app
from steering.cli.annotate import annotate
from steering.cli.feedback import feedback_app, feedback_training_data, split_data_options
from steering.cli.judge import judge
from steering.cli.probe import probe
from steering.cli.progress import LazyProgress
from steering.cli.run import harvest
from steering.cli.run import run as run_recipe_command
from steering.condition.registry import samplers_help
from steering.errors import SEED_LIMIT, InvalidArgument, SteeringError
from steering.train.registry import METHODS

if TYPE_CHECKING:
    from steering.cli.output import JsonlStream
    from steering.decode import Sample

app = typer.Typer(
    help="steering: make a language model do what you want, and know what each control costs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
_state = {"debug": False}
EXIT_UNFINISHED = 3  # `steer generate`: a constrained sample ran out of tokens before it finished


@app.callback()
def _options(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    _state["debug"] = debug


@app.command()
def models() -> None:
    """List the bundled models: name, size, whether cached, and where."""
    from steering.models import REGISTRY, cached_models
    from steering.paths import steering_home

    cached = cached_models()
    table = Table(title=f"models (cache: {steering_home() / 'models'})")
    for column in ("name", "parameters", "cached", "where", "description"):
        table.add_column(column)
    for name, entry in REGISTRY.items():
        folder = cached.get(name)
        if entry.package is None:
            where, status = "built in code", "n/a"
        elif folder is not None:
            where, status = str(folder), "yes"
        else:
            where, status = f"package {entry.package}", "no (converted on first load)"
        table.add_row(name, entry.parameters, status, where, entry.description)
    Console().print(table)


@app.command()
def generate(
    prompt: Annotated[list[str] | None, typer.Option("--prompt", "-p", help="A prompt (repeatable).")] = None,
    input_path: Annotated[
        str | None, typer.Option("--input", "-i", help='JSONL file of {"prompt": …} lines; - for stdin.')
    ] = None,
    model: Annotated[str, typer.Option(help="Registry name, .gguf file or HF directory.")] = "gemma-270m",
    template: Annotated[
        str | None, typer.Option(help="qa | chat | instruct | a text file with {prompt}.")
    ] = None,
    few_shot: Annotated[
        Path | None, typer.Option("--few-shot", help='JSONL of {"prompt","completion"} demonstrations.')
    ] = None,
    stop: Annotated[list[str] | None, typer.Option("--stop", help="Stop sequence (repeatable).")] = None,
    n: Annotated[int, typer.Option("--n", min=1, help="Samples per prompt.")] = 1,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 64,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy.")] = 1.0,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1)] = None,
    top_p: Annotated[float | None, typer.Option("--top-p")] = None,
    min_p: Annotated[float | None, typer.Option("--min-p")] = None,
    seed: Annotated[int, typer.Option(min=0, max=SEED_LIMIT - 1)] = 0,
    dtype: Annotated[str, typer.Option(help="bfloat16 | float32")] = "bfloat16",
    backend: Annotated[
        str,
        typer.Option(
            help="torch (every control) | llamacpp (the GGUF run by llama.cpp: logit controls, pools "
            "and grammars with exact books; faster decoding; --dtype does not apply)."
        ),
    ] = "torch",
    choices: Annotated[
        str | None,
        typer.Option(help='Comma-separated labels; the output is exactly one ("positive,negative").'),
    ] = None,
    bias: Annotated[
        list[str] | None, typer.Option("--bias", help="WORD=STRENGTH logit bias (repeatable), e.g. Paris=+4.")
    ] = None,
    bow: Annotated[
        str | None, typer.Option("--bow", help="FILE:STRENGTH bag of words (one word a line).")
    ] = None,
    regex: Annotated[
        str | None, typer.Option("--regex", help="The output must fully match this regex.")
    ] = None,
    json_schema: Annotated[
        Path | None, typer.Option("--json-schema", help="The output is JSON valid under this schema file.")
    ] = None,
    grammar: Annotated[
        Path | None, typer.Option("--grammar", help="A Lark grammar file (start rule).")
    ] = None,
    steer_vector: Annotated[
        str | None, typer.Option("--steer", help="VECTOR.safetensors:ALPHA activation steering.")
    ] = None,
    quote_from: Annotated[
        Path | None,
        typer.Option("--quote-from", help="Text between double quotes must be a substring of this file."),
    ] = None,
    forced_span: Annotated[
        Path | None,
        typer.Option("--forced-span", help="After --trigger, the next span is one line of this file."),
    ] = None,
    trigger: Annotated[str, typer.Option(help="The text that opens a --forced-span.")] = "[",
    pplm: Annotated[
        str | None,
        typer.Option(
            "--pplm", help="FILE[:STEP_SIZE] PPLM toward a bag of words (gradient on the KV cache)."
        ),
    ] = None,
    adapter: Annotated[
        Path | None,
        typer.Option(
            "--adapter",
            help="A trained adapter directory (steer train … writes RUN/adapter); base books stay exact.",
        ),
    ] = None,
    exact: Annotated[
        bool,
        typer.Option("--exact", help="Resample by importance weights: p(x | constraint), not the masked q."),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSONL out: text, tokens, logq, logp_base, kl, stop.")
    ] = False,
    json_strict: Annotated[
        bool,
        typer.Option(
            "--json-strict/--json-open",
            help="--json-schema objects take no unlisted key unless the schema allows extra keys "
            "(default, as hosted structured outputs do); --json-open: JSON Schema's own default.",
        ),
    ] = True,
    coerce_one_of: Annotated[
        bool,
        typer.Option(
            "--coerce-one-of", help="Read a schema's oneOf as anyOf where it cannot be proven exclusive."
        ),
    ] = False,
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial",
            help=f"Exit 0 even when a constrained sample ran out of tokens unfinished (else exit {EXIT_UNFINISHED}).",
        ),
    ] = False,
) -> None:
    """Generate continuations with the exact books (log q, log p_base, KL) for every sample.

    A sample whose constraint (--choices, --regex, --json-schema, --grammar) had not finished when
    --max-new-tokens ran out is "unfinished": it is named on stderr and the exit code is 3, after
    every sample is written, unless --allow-partial is given.
    """
    from steering.cli.control_options import (
        grammar_controls,
        load_vector,
        text_controls,
        tweak_and_pool_controls,
    )
    from steering.cli.inputs import collect_prompts
    from steering.cli.output import JsonlStream
    from steering.controls import PPLM, FewShot, load_demonstrations, sampling_controls, template_from_name
    from steering.decode import generate as run_generate
    from steering.models import load_model

    prompts = collect_prompts(prompt, input_path)
    controls: list[object] = []
    if adapter is not None:
        from steering.controls import Adapter, SoftPrompt

        is_soft = (adapter / "soft_prompt.safetensors").is_file()
        controls.append(SoftPrompt.load(adapter) if is_soft else Adapter(adapter))
    if few_shot is not None:
        controls.append(FewShot(load_demonstrations(few_shot)))
    if template is not None:
        if few_shot is not None:
            raise SteeringError(
                "--few-shot already formats the query as Q:/A:; it cannot be combined with --template",
                received=f"--template {template} --few-shot {few_shot}",
                fix="drop one of them",
            )
        controls.append(template_from_name(template))
    controls += tweak_and_pool_controls(choices=choices, bias=bias, bow=bow)
    if steer_vector:
        controls.append(load_vector(steer_vector))
    controls += text_controls(quote_from=quote_from, forced_span=forced_span, trigger=trigger, pplm=pplm)
    controls += grammar_controls(
        regex=regex, json_schema=json_schema, grammar=grammar, strict=json_strict, coerce_one_of=coerce_one_of
    )
    controls += sampling_controls(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
    with console.status(f"loading {model}…"):
        lm = load_model(model, dtype=dtype, backend=backend)
    # --json lines are written as samples finish (prompt-major order), so Ctrl-C keeps the finished ones.
    stream = JsonlStream(sys.stdout) if as_json and not exact else None
    finished: list[Sample] = []
    try:
        with LazyProgress(console, "generating", total=len(prompts) * n * max_new_tokens) as bar:
            samples = run_generate(
                lm,
                prompts,
                controls=controls,
                n=n,
                max_new_tokens=max_new_tokens,
                stop=stop or (),
                seed=seed,
                progress=bar.advance,
                on_sample=stream or finished.append,
            )
    except KeyboardInterrupt:
        _interrupted(stream, finished, total=len(prompts) * n, exact=exact)
    for control in controls:
        if isinstance(control, PPLM) and control.stats.steps:
            stats = control.stats
            console.print(
                f"PPLM: {stats.iterations} gradient iterations over {stats.steps} steps, "
                f"{stats.seconds:.1f} s ({1000 * stats.seconds / stats.steps:.0f} ms per step)"
            )
    unfinished = _say_unfinished(samples, max_new_tokens=max_new_tokens, allow_partial=allow_partial)
    if exact:
        ess = samples.effective_sample_size()
        samples = samples.resample(seed=seed)
        console.print(f"resampled by importance weights (ESS of the proposal samples: {ess:.1f})")
    if as_json and stream is None:  # --exact: written once resampled
        for record in samples.to_records():
            sys.stdout.write(json.dumps(record) + "\n")
    elif not as_json:
        _print_samples(samples)
    if unfinished and not allow_partial:
        raise SystemExit(EXIT_UNFINISHED)


def _print_samples(samples: Iterable[Sample]) -> None:
    out = Console()
    for sample in samples:
        out.rule(f"prompt {sample.prompt_index} · {sample.stop_reason} · KL {sample.kl:.3f} nats")
        out.print(sample.text, markup=False, highlight=False)


def _interrupted(stream: JsonlStream | None, finished: list[Sample], *, total: int, exact: bool) -> NoReturn:
    """Ctrl-C during `steer generate`: print the finished samples (--json wrote them already), say so, exit 130."""
    if exact:
        said = f"nothing written (--exact resamples only once all {total} samples are finished)."
    elif stream is not None:
        said = (
            f"{stream.written} of {total} samples written (whole JSON lines, prompt-major order); "
            "the others had not finished."
        )
    else:
        _print_samples(finished)
        said = (
            f"{len(finished)} of {total} samples printed (prompt-major order); the others had not finished."
        )
    console.print(f"interrupted: {said}", highlight=False, soft_wrap=True)
    raise SystemExit(130)


def _say_unfinished(samples: Any, *, max_new_tokens: int, allow_partial: bool) -> int:
    """Name the samples whose constraint ran out of tokens unfinished, on stderr; returns how many."""
    counts: dict[int, int] = {}
    where = []
    for sample in samples:
        index = counts.get(sample.prompt_index, 0)
        counts[sample.prompt_index] = index + 1
        if sample.stop_reason == "unfinished":
            where.append(f"prompt {sample.prompt_index} sample {index}")
    if where:
        shown = ", ".join(where[:10]) + (f" and {len(where) - 10} more" if len(where) > 10 else "")
        then = "kept as asked (--allow-partial)" if allow_partial else f"exit code {EXIT_UNFINISHED}"
        console.print(
            f"[bold yellow]unfinished:[/] {len(where)} of {len(samples)} samples ran out of "
            f"--max-new-tokens {max_new_tokens} before their constraint finished ({shown}); their text "
            f"is cut, not a valid output ({then}). To fix: raise --max-new-tokens, or pass "
            "--allow-partial to accept partial output.",
            markup=True,
            highlight=False,
            soft_wrap=True,
        )
    return len(where)


def _read_lines(path: Path, flag: str) -> list[str]:
    from steering.jsonl import read_text

    lines = [line.strip() for line in read_text(path, what=f"{flag} file").splitlines() if line.strip()]
    if not lines:
        raise SteeringError(
            f"{path} has no examples", received="an empty file", fix="write one example per line"
        )
    return lines


vector_app = typer.Typer(help="Activation steering vectors.", no_args_is_help=True)
app.add_typer(vector_app, name="vector")


@vector_app.command("build")
def vector_build(
    positive: Annotated[Path, typer.Option(help="Text file, one positive example per line.")],
    negative: Annotated[Path, typer.Option(help="Text file, one negative example per line.")],
    out: Annotated[
        Path,
        typer.Option(
            help="The file to write, VECTOR.safetensors (+ VECTOR.safetensors.json); not a directory."
        ),
    ],
    layers: Annotated[str, typer.Option(help="Comma-separated decoder layer indices, e.g. 6 or 4,8.")] = "6",
    model: Annotated[str, typer.Option()] = "gemma-270m",
) -> None:
    """Mean-difference steering vector from contrast examples (layer outputs, BOS excluded)."""
    from steering.controls import build_steering_vector, check_vector_path
    from steering.models import load_model

    try:
        layer_list = [int(x) for x in layers.split(",") if x.strip()]
    except ValueError:
        raise SteeringError(
            "--layers takes integers", received=layers, fix="write e.g. --layers 4,8"
        ) from None
    check_vector_path(out)  # before the model loads: a directory or unwritable --out fails fast
    pos, neg = _read_lines(positive, "--positive"), _read_lines(negative, "--negative")
    with console.status(f"loading {model}…"):
        lm = load_model(model)
    vector = build_steering_vector(lm, positive=pos, negative=neg, layers=layer_list)
    path = vector.save(out)
    norms = ", ".join(f"layer {k}: {float(v.norm()):.1f}" for k, v in sorted(vector.vectors.items()))
    Console().print(f"wrote {path} ({norms}); use it with: steer generate --steer {path}:2")


@app.command()
def classify(
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Text the label follows.")],
    labels: Annotated[str, typer.Option(help='Comma-separated labels, e.g. " positive, negative".')],
    model: Annotated[str, typer.Option(help="Registry name, .gguf file or HF directory.")] = "gemma-270m",
    end: Annotated[str | None, typer.Option(help="Text that closes an answer (e.g. '\\n').")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Exact probability of each full label (every token scored), normalised over the labels."""
    from steering.cli.control_options import parse_labels, unescape
    from steering.controls import classify as run_classify
    from steering.controls import first_token_shortcut
    from steering.models import load_model

    label_list = parse_labels(labels, "--labels")
    end_text = unescape(end) if end else None
    with console.status(f"loading {model}…"):
        lm = load_model(model)
    result = run_classify(lm, prompt, label_list, end=end_text)
    shortcut = first_token_shortcut(lm, prompt, label_list)
    if as_json:
        sys.stdout.write(
            json.dumps({"prompt": prompt, "probs": result.as_dict(), "best": result.best}) + "\n"
        )
        return
    table = Table(title="label probabilities (exact, all tokens) vs the first-token shortcut")
    for column in ("label", "P(label)", "first-token shortcut"):
        table.add_column(column)
    for label, p, q in zip(result.labels, result.probs.tolist(), shortcut.tolist(), strict=True):
        table.add_row(repr(label), f"{p:.4f}", f"{q:.4f}")
    Console().print(table)


@app.command()
def sample(
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The text completions follow.")],
    model: Annotated[str, typer.Option(help="Registry name, .gguf file or HF directory.")] = "gemma-270m",
    ends_with: Annotated[
        str | None, typer.Option("--ends-with", help="Hard: the completion ends with this.")
    ] = None,
    starts_with: Annotated[str | None, typer.Option("--starts-with")] = None,
    contains: Annotated[str | None, typer.Option("--contains")] = None,
    regex: Annotated[
        str | None, typer.Option("--regex", help="Hard: the completion fully matches this.")
    ] = None,
    fixed: Annotated[
        list[str] | None,
        typer.Option(
            "--fixed",
            help="Hard: POSITION=TEXT, the generated tokens from POSITION on are TEXT (infill); repeatable. "
            "Samplers that take a proposal (smc, importance) then propose with those tokens forced.",
        ),
    ] = None,
    reward: Annotated[
        str | None, typer.Option(help="Soft: module:function, (prompts, completions) -> a list of floats.")
    ] = None,
    beta: Annotated[float, typer.Option(help="KL weight of the reward (target ∝ p·exp(r/β)).")] = 1.0,
    sampler: Annotated[str, typer.Option(help=f"One of: {samplers_help()}.")] = "smc",
    particles: Annotated[
        int,
        typer.Option(
            "--particles",
            "--n-particles",
            min=1,
            help="n_particles: SMC particles, importance samples, rejection's accepted samples.",
        ),
    ] = 32,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 48,
    budget: Annotated[
        int | None,
        typer.Option(
            "--budget",
            "--max-model-calls",
            min=1,
            help="Most model calls (token forward passes) to spend: rejection stops drawing there; smc "
            "and importance refuse to start when their worst case is above it. Default: the sampler's "
            "(see --sampler), else no cap.",
        ),
    ] = None,
    show: Annotated[int, typer.Option(min=0, help="Unweighted samples to print (resampled by weight).")] = 4,
    seed: Annotated[int, typer.Option(min=0, max=SEED_LIMIT - 1)] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSONL: every weighted sample, then a summary.")
    ] = False,
) -> None:
    """Sample from p(x | condition) or p(x)·exp(r(x)/β) with weights, ESS, log Ẑ and KL."""
    from steering.cli.control_options import conditions, fixed_spans
    from steering.condition import Target, sampler_entry
    from steering.controls import ForceTokens
    from steering.models import load_model

    potentials = conditions(
        ends_with=ends_with,
        starts_with=starts_with,
        contains=contains,
        regex=regex,
        reward=reward,
        fixed=fixed,
    )
    entry = sampler_entry(sampler)
    with console.status(f"loading {model}…"):
        lm = load_model(model)
    target = Target(lm, prompt, potentials, beta=beta, max_new_tokens=max_new_tokens)
    proposal = [ForceTokens(fixed_spans(fixed))] if fixed and entry.uses_proposal else []
    with console.status(f"sampling with {sampler}…"):
        posterior = entry.run(
            target,
            n_particles=particles,
            budget=entry.cli_budget if budget is None else budget,
            seed=seed,
            proposal=proposal,
        )
    summary = {
        "sampler": posterior.sampler,
        "found": posterior.found,
        "ess": posterior.ess,
        "log_evidence": posterior.log_evidence,
        "kl_estimate": posterior.kl_estimate,
        "model_calls": posterior.model_calls,
    }
    if as_json:
        for item, weight in zip(posterior.samples, posterior.weights.tolist(), strict=True):
            if weight > 0:
                sys.stdout.write(json.dumps({**item.to_record(), "weight": weight}) + "\n")
        sys.stdout.write(json.dumps({"summary": summary}) + "\n")
        return
    out = Console()
    if posterior.found:
        for index, item in enumerate(posterior.resample(show, seed=seed)):
            out.rule(f"sample {index} (resampled by weight)")
            out.print(prompt + item.text, markup=False, highlight=False)
    out.print(posterior.summary(), markup=False, highlight=False)


@app.command()
def demo(
    model: Annotated[str, typer.Option(help="Model to demonstrate on.")] = "gemma-270m",
    out: Annotated[Path, typer.Option(help="Folder for report.html.")] = Path("report"),
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 48,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N questions.")] = None,
    seed: Annotated[int, typer.Option(min=0, max=SEED_LIMIT - 1)] = 0,
) -> None:
    """The base model, then each technique side by side; writes report.html after every section."""
    from steering.agents.demo import AgentsSection
    from steering.eval import builtin_questions
    from steering.models import load_model
    from steering.recipes.demo import SECTIONS, PromptingOutcome, SectionEvent, demo_work_units, run_demo

    sections = (*SECTIONS, AgentsSection())  # agents and recipes are one level: composed here

    if out.exists() and not out.is_dir():  # before the model loads and the first section runs
        raise SteeringError(
            f"--out is the folder for report.html, but {out} is a file",
            received=str(out),
            fix="pass a folder (it is created if it does not exist)",
        )
    started = time.time()
    with console.status(f"loading {model} (first run converts the GGUF, ~1 min)…"):
        lm = load_model(model)
    count = min(limit or len(builtin_questions()), len(builtin_questions()))
    with LazyProgress(console, "demo", total=demo_work_units(count, max_new_tokens, limit, sections)) as bar:

        def announce(event: SectionEvent) -> None:
            seconds = int(time.time() - started)
            clock = f"{seconds // 60}:{seconds % 60:02d} elapsed"
            if event.seconds is None:
                bar.print(f"section {event.index} of {event.total}: {event.name} ({clock})")
                bar.update(description=f"demo {event.index}/{event.total}")
                return
            rest = "" if event.index == event.total else "; the page lists the sections still running"
            bar.print(f"  done in {event.seconds:.0f} s ({clock}): {event.report.resolve()}{rest}")
            if isinstance(event.outcome, PromptingOutcome):  # the first results, while the rest runs
                bar.print(_technique_table(event.outcome.results, f"{lm.name} · {count} questions"))

        outcome = run_demo(
            lm,
            out_dir=out,
            max_new_tokens=max_new_tokens,
            limit=limit,
            seed=seed,
            progress=bar.advance,
            on_section=announce,
            sections=sections,
        )
    Console().print(_technique_table(outcome.prompting, f"{lm.name} · {count} questions"))
    sentiment = Table(title="positive sentiment: reward (VADER) vs KL to base")
    for column in ("technique", "strength", "mean VADER", "mean KL"):
        sentiment.add_column(column)
    for row in outcome.sentiment:
        sentiment.add_row(
            row.technique,
            row.strength,
            f"{row.reward:.3f} ± {row.reward_se:.3f}",
            f"{row.kl:.2f} ± {row.kl_se:.2f}",
        )
    Console().print(sentiment)
    Console().print(f"report: {outcome.report.resolve()}  ({time.time() - started:.0f} s)")


def _technique_table(results: list[Any], caption: str) -> Table:
    """The demo's technique table (raw, Q:/A:, few-shot, tuned) with the short column names."""
    from steering.recipes.demo import SHORT_COLUMNS

    table = Table(title=f"steer demo · {caption}")
    for column in SHORT_COLUMNS:
        table.add_column(column)
    for result in results:
        table.add_row(*[f"{v:.2f}" if isinstance(v, float) else str(v) for v in result.row()])
    return table


train_app = typer.Typer(
    help="Fine-tune: each method writes a run directory with an adapter.", no_args_is_help=True
)
app.add_typer(train_app, name="train")
app.command()(annotate)
app.add_typer(feedback_app, name="feedback")
app.command()(judge)
app.command(name="run")(run_recipe_command)
app.command()(harvest)
app.command()(probe)
app.add_typer(agents_app, name="agents")


TrainArgs = Annotated[
    list[str] | None,
    typer.Argument(help="CONFIG.toml and/or key=value overrides (e.g. data=demos.jsonl epochs=3)."),
]
ResumeFlag = Annotated[
    bool, typer.Option("--resume", help="Continue the run in `out` from its last checkpoint.")
]


def _train_command(name: str) -> Callable[..., None]:
    """The `steer train NAME` command of one method of `steering.train.registry.METHODS`."""

    def command(args: TrainArgs = None, resume: ResumeFlag = False) -> None:
        _train(name, args, resume)

    command.__name__ = f"train_{name.replace('-', '_')}"
    return command


for _name, _entry in METHODS.items():
    train_app.command(_name, help=_entry.describe())(_train_command(_name))


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="A run directory written by `steer train …`.")],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the HTML (default RUN/report.html; a directory: report.html in it)."
        ),
    ] = None,
) -> None:
    """Training curves (loss, reward, KL, learning rate, tokens/s) of a run as one HTML page."""
    from steering.recipes import run_report

    if out is not None and out.is_dir():
        out = out / "report.html"

    Console().print(f"wrote {run_report(run, out)}")


def _train(name: str, args: list[str] | None, resume: bool) -> None:
    """Read the method's config (CONFIG.toml and/or key=value), train with a progress bar, say where it went."""
    from steering.train import TrainingInterrupted, read_config
    from steering.train.distributed import launch, launched, processes

    method = METHODS[name]
    label, train = method.label, method.train
    items = list(args or [])
    path = items.pop(0) if items and "=" not in items[0] else None
    items, data_options = split_data_options(items)  # data=F.db: feedback filters, not config keys
    config = read_config(method.config, path, items)
    if config.launcher == "accelerate" and str(config.data).endswith(".db"):
        raise InvalidArgument(
            "with launcher=accelerate the data must be a JSONL file: each process would export the "
            "feedback database on its own",
            received=config.data,
            fix=f"export it once (steer feedback export --db {config.data} --to sft --out data.jsonl), "
            "then set data=data.jsonl",
        )
    if config.launcher == "accelerate" and not launched():
        # N copies of this same command, started by accelerate (train/distributed.py); each one
        # reads the config again and trains its share; process 0 writes the run and reports.
        raise SystemExit(launch(sys.argv[1:], config.processes))
    config = feedback_training_data(name, config, data_options, resume=resume)
    if not processes().main:  # the other training processes work silently
        train(config, resume=resume)
        return
    with LazyProgress(console, label, total=None, waiting=f"{label}: loading the model and data…") as bar:

        def show(step: int, total: int, record: dict[str, Any]) -> None:
            extra = f" eval {record['eval_loss']:.3f}" if "eval_loss" in record else ""
            if "reward" in record:
                extra += f" reward {record['reward']:.3f} KL {record['kl']:.3f}"
            bar.update(completed=step, total=total, description=f"{label} loss {record['loss']:.3f}{extra}")

        try:
            result = train(config, resume=resume, progress=show)
        except TrainingInterrupted as stop:
            console.print(str(stop))
            raise SystemExit(130) from None
    last: dict[str, Any] = next((r for r in reversed(result.metrics) if "loss" in r), {})
    Console().print(
        f"{result.stopped} after {result.steps} steps (last loss {last.get('loss', float('nan')):.3f}); "
        f"adapter: {result.adapter}; metrics: {result.run / 'metrics.jsonl'}\n"
        f'use it: steer generate --model {config.model} --adapter {result.adapter} -p "…"'
    )


def _log_to_console() -> None:
    """Warnings the library logs (e.g. "Ctrl-C: finishing step 3…") print above the progress bar."""
    from rich.logging import RichHandler

    logger = logging.getLogger("steering")
    if not any(isinstance(h, RichHandler) for h in logger.handlers):  # main() may run more than once
        logger.addHandler(
            RichHandler(console=console, show_time=False, show_level=False, show_path=False, markup=False)
        )
    logger.setLevel(logging.WARNING)


def main() -> None:
    """Entry point: usage errors, our errors and Ctrl-C each end with a message, never a traceback.

    Usage errors (unknown command or option, a value of the wrong type or outside its range, a missing
    option) get typer's own message — usage line, "Try 'steer … --help'", the error — and exit code 2.
    A SteeringError is printed as one paragraph, exit code 2 (`steer --debug …`: the traceback). Ctrl-C
    exits 130. The app runs in typer's standalone mode, which handles the first and the last; the
    exceptions it raises for usage errors are its own (typer vendors click), not `click`'s.
    """
    debug = "--debug" in sys.argv[1:]
    _log_to_console()
    try:
        app(prog_name="steer")
    except SteeringError as error:
        if debug:
            raise
        console.print(f"[bold red]error:[/] {error}", markup=True, highlight=False, soft_wrap=True)
        raise SystemExit(2) from None

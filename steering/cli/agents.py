"""`steer agents …`: a bureaucracy of specialist agents in one folder (see docs/agents.md).

    steer agents init FOLDER [--model M] [--example]      a new folder (--example: the shipped three agents)
    steer agents add FOLDER NAME --mission TEXT --situations FILE [--alpha A] [--adapter DIR]
    steer agents episode FOLDER (--situation TEXT … | --situations FILE [--split S]) [--max-turns N]
    steer agents reflect FOLDER [--rounds N] [--situations FILE]
    steer agents extend FOLDER NAME [--mission TEXT] [--rounds N]   a newcomer, through overlap episodes
    steer agents status FOLDER
    steer agents show FOLDER [--last N]

A situations file is JSONL of {"text", "scopes", "split"} rows (the shipped pool: steering/agents/data/
situations.jsonl): an agent's scope is fitted on the train rows, its references being the rows that name
it and its calibration outsiders the rows that do not. Episodes are rated by the AI judge against each
speaker's mission unless `--no-judge`; people can rate the same turns in `steer annotate --db FOLDER/feedback.db`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from steering.errors import SEED_LIMIT, InvalidArgument

if TYPE_CHECKING:
    from steering.agents import Bureaucracy

console = Console(stderr=True)
agents_app = typer.Typer(
    help="A bureaucracy of agents: missions, scopes, episodes, reflection.", no_args_is_help=True
)

Folder = Annotated[Path, typer.Argument(help="The agents folder (made by `steer agents init`).")]
SituationsFile = Annotated[
    Path | None, typer.Option("--situations", help="A JSONL of situations (default: the shipped pool).")
]
JudgeOption = Annotated[str, typer.Option("--judge", help="The model that rates adherence to the missions.")]
DEFAULT_JUDGE = "smollm2-135m-instruct"


def _split(situations_file: Path | None, name: str) -> tuple[list[str], list[str]]:
    """An agent's references (train rows naming it) and calibration outsiders (train rows that do not)."""
    from steering.agents import load_situations

    train = [s for s in load_situations(situations_file) if s.split == "train"]
    inside = [s.text for s in train if name in s.scopes]
    if not inside:
        raise InvalidArgument(
            f"no train situation names the agent {name!r} in its scopes",
            received=str(situations_file or "the shipped pool"),
            fix=f'add rows like {{"text": "…", "scopes": ["{name}"], "split": "train"}}',
        )
    return inside, [s.text for s in train if name not in s.scopes]


@agents_app.command()
def init(
    folder: Folder,
    model: Annotated[str, typer.Option(help="The shared base model.")] = "gemma-270m",
    example: Annotated[
        bool, typer.Option("--example", help="Add the shipped agents (fact_checker, tutor, safety_officer).")
    ] = False,
    alpha: Annotated[float, typer.Option(help="Scopes' false-accept rate on outsiders.")] = 0.1,
) -> None:
    """Create an agents folder."""
    from steering.agents import Bureaucracy, load_roster

    office = Bureaucracy.init(folder, model=model)
    if example:
        for mission in load_roster().agents:
            if (folder / "agents" / mission.name).exists():
                continue
            inside, outside = _split(None, mission.name)
            office.add(mission.name, mission.mission, references=inside, outsiders=outside, alpha=alpha,
                       cues=mission.cues)  # fmt: skip
            console.print(f"added {mission.name} ({len(inside)} references, α = {alpha})", highlight=False)
    console.print(f"agents folder: {folder}", highlight=False)


@agents_app.command()
def add(
    folder: Folder,
    name: Annotated[str, typer.Argument(help="The agent's name (letters, digits, _ or -).")],
    mission: Annotated[str, typer.Option(help="Its mission, one line in its own words.")],
    situations: SituationsFile = None,
    alpha: Annotated[float, typer.Option(help="The scope's false-accept rate on outsiders.")] = 0.1,
    adapter: Annotated[
        Path | None, typer.Option(help="A trained adapter for the mission (copied in).")
    ] = None,
    from_mission: Annotated[
        int,
        typer.Option(
            "--from-mission",
            min=0,
            help="Train its adapter from the mission: it answers N of its reference situations alone, the "
            "judge rates the answers against the mission, it trains on the better half (0: no adapter).",
        ),
    ] = 0,
    cue: Annotated[
        list[str] | None,
        typer.Option(
            "--cue",
            help="A phrase that shows the mission in a turn (repeat the flag for more); the cue rate is "
            "reported beside the judge's adherence, and reflection trains on cued turns first.",
        ),
    ] = None,
    judge: JudgeOption = DEFAULT_JUDGE,
) -> None:
    """Add an agent; its scope is calibrated on the situations file's train rows."""
    from steering.agents import Bureaucracy

    if adapter is not None and from_mission:
        raise InvalidArgument(
            "--adapter and --from-mission both give the agent an adapter",
            received=f"--adapter {adapter} --from-mission {from_mission}",
            fix="pass one of them",
        )
    office = Bureaucracy.open(folder)
    inside, outside = _split(situations, name)
    agent = office.add(
        name, mission, references=inside, outsiders=outside, alpha=alpha, adapter=adapter, cues=cue or ()
    )
    assert agent.scope is not None
    console.print(
        f"added {name}: {len(inside)} references, {len(outside)} outsiders, threshold {agent.scope.threshold:.3f}",
        highlight=False,
    )
    if from_mission:
        from steering.feedback.model_judge import ModelJudge
        from steering.models import load_model

        with console.status(f"{name}: answering {from_mission} of its situations, rating, training…"):
            done = office.bootstrap(name, ModelJudge(load_model(judge)), limit=from_mission)
        console.print(
            f"{name}: trained on {done.kept} of {done.turns} answers → {done.adapter}", highlight=False
        )


@agents_app.command()
def episode(
    folder: Folder,
    situation: Annotated[
        list[str] | None, typer.Option("--situation", help="A situation (repeatable).")
    ] = None,
    situations: SituationsFile = None,
    split: Annotated[
        str, typer.Option(help="Which rows of --situations: train, heldout or all.")
    ] = "heldout",
    limit: Annotated[int, typer.Option(min=0, help="At most this many situations (0: all).")] = 0,
    max_turns: Annotated[int, typer.Option("--max-turns", min=0, help="Turns before the reply.")] = 2,
    closer: Annotated[str | None, typer.Option(help="The agent who writes the reply when present.")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="Tokens per turn.")] = 40,
    reply_tokens: Annotated[int, typer.Option("--reply-tokens", min=1, help="Tokens of the reply.")] = 64,
    judge: JudgeOption = DEFAULT_JUDGE,
    no_judge: Annotated[bool, typer.Option("--no-judge", help="Do not rate the turns.")] = False,
    seed: Annotated[int, typer.Option(min=0, max=SEED_LIMIT - 1)] = 0,
) -> None:
    """Run episodes: the agents whose scopes cover each situation discuss it; print the transcripts."""
    from steering.agents import Bureaucracy, load_situations

    office = Bureaucracy.open(folder)
    if situation:
        texts = list(situation)
    else:
        if split not in ("train", "heldout", "all"):
            raise InvalidArgument(
                "--split must be train, heldout or all", received=split, fix="--split heldout"
            )
        texts = [s.text for s in load_situations(situations) if split in ("all", s.split)]
    texts = texts[:limit] if limit else texts
    with console.status(f"{len(texts)} episodes…"):
        episodes = office.episodes(
            texts, max_turns=max_turns, closer=closer, max_new_tokens=max_new_tokens, reply_tokens=reply_tokens,
            seed=seed,
        )  # fmt: skip
    for ep in episodes:
        typer.echo(f"\n# {ep.situation}")
        if ep.uncovered:
            typer.echo("  (uncovered: no agent's scope covers it)")
        for turn in [*ep.turns, *([ep.reply] if ep.reply else [])]:
            typer.echo(f"  {turn.agent}: {turn.text}   [KL {turn.kl:.2f}]")
    if not no_judge:
        _rate(office, judge)


def _rate(office: Bureaucracy, judge: str) -> None:
    from steering.feedback.model_judge import ModelJudge
    from steering.models import load_model

    with console.status(f"rating adherence with {judge}…"):
        rated = office.rate(ModelJudge(load_model(judge)))
    console.print(f"rated {rated} turns against their speakers' missions", highlight=False)


@agents_app.command()
def reflect(
    folder: Folder,
    rounds: Annotated[
        int, typer.Option(min=1, help="Reflection rounds (episodes → ratings → retraining).")
    ] = 1,
    situations: SituationsFile = None,
    limit: Annotated[int, typer.Option(min=0, help="Train situations per round (0: all).")] = 0,
    max_turns: Annotated[int, typer.Option("--max-turns", min=0)] = 2,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="Tokens per turn.")] = 40,
    reply_tokens: Annotated[int, typer.Option("--reply-tokens", min=1, help="Tokens of the reply.")] = 64,
    keep_fraction: Annotated[
        float, typer.Option(help="The better-rated share of its turns each agent trains on.")
    ] = 0.5,
    epochs: Annotated[int, typer.Option(min=1)] = 2,
    grow: Annotated[
        float | None,
        typer.Option(
            min=1.0,
            max=7.0,
            help="Widen each agent's scope by the situations where its turns were rated at least this (1–7).",
        ),
    ] = None,
    judge: JudgeOption = DEFAULT_JUDGE,
) -> None:
    """Retrain every agent on its own better-rated turns, round after round."""
    from steering.agents import Bureaucracy, load_situations
    from steering.feedback.model_judge import ModelJudge
    from steering.models import load_model

    office = Bureaucracy.open(folder)
    texts = [s.text for s in load_situations(situations) if s.split == "train"]
    texts = texts[:limit] if limit else texts
    rater = ModelJudge(load_model(judge))
    for number in range(rounds):
        with console.status(f"round {number + 1}: {len(texts)} episodes…"):
            office.episodes(
                texts,
                max_turns=max_turns,
                max_new_tokens=max_new_tokens,
                reply_tokens=reply_tokens,
                seed=number,
            )
            office.rate(rater)
        before = office.adherence()
        with console.status(f"round {number + 1}: retraining…"):
            done = office.reflect(keep_fraction=keep_fraction, epochs=epochs, seed=number, grow=grow)
        for r in done:
            if not r.kept:
                console.print(f"round {number + 1}: {r.agent} had no rated turns; unchanged", highlight=False)
                continue
            mean = before.get(r.agent, {}).get("adherence")
            shown = f"{mean:.2f}" if mean is not None else "–"
            console.print(
                f"round {number + 1}: {r.agent} trained on {r.kept} of {r.turns} turns "
                f"(mean adherence of its turns so far {shown}) → {r.adapter}"
                + (f"; its scope grew by {r.grown_by} situations" if grow is not None else ""),
                highlight=False,
            )


@agents_app.command()
def extend(
    folder: Folder,
    name: Annotated[
        str, typer.Argument(help="The newcomer (added with `steer agents add`, or by --mission now).")
    ],
    mission: Annotated[str | None, typer.Option(help="Add the newcomer now with this mission.")] = None,
    situations: SituationsFile = None,
    rounds: Annotated[
        int, typer.Option(min=1, help="Overlap episodes → ratings → retraining the newcomer.")
    ] = 1,
    max_turns: Annotated[int, typer.Option("--max-turns", min=0)] = 2,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="Tokens per turn.")] = 40,
    reply_tokens: Annotated[int, typer.Option("--reply-tokens", min=1, help="Tokens of the reply.")] = 64,
    epochs: Annotated[int, typer.Option(min=1)] = 2,
    judge: JudgeOption = DEFAULT_JUDGE,
) -> None:
    """Bring a newcomer in through episodes on situations inside its scope and old agents' scopes."""
    from steering.agents import Bureaucracy, load_roster, load_situations
    from steering.feedback.model_judge import ModelJudge
    from steering.models import load_model

    office = Bureaucracy.open(folder)
    if not (folder / "agents" / name).is_dir():
        newcomers = {m.name: m for m in load_roster().newcomers}
        shipped = {n: m.mission for n, m in newcomers.items()}
        text = mission or shipped.get(name)
        if text is None:
            raise InvalidArgument(
                f"no agent named {name!r} yet, and no --mission to add it with",
                received=name,
                fix=f"pass --mission TEXT, or add it first with steer agents add (shipped newcomers: {', '.join(shipped)})",
            )
        inside, outside = _split(situations, name)
        cues = newcomers[name].cues if name in newcomers and mission is None else ()
        office.add(name, text, references=inside, outsiders=outside, cues=cues)
        console.print(f"added {name} ({len(inside)} references)", highlight=False)
    texts = [s.text for s in load_situations(situations) if s.split == "train"]
    with console.status(f"extending with {name}…"):
        result = office.extend(
            name, texts, ModelJudge(load_model(judge)), rounds=rounds, max_turns=max_turns,
            max_new_tokens=max_new_tokens, reply_tokens=reply_tokens, epochs=epochs,
        )  # fmt: skip
    console.print(f"{len(result['overlap'])} overlap situations", highlight=False)
    for r in result["rounds"]:
        console.print(
            f"round {r.round}: {r.agent} trained on {r.kept} of {r.turns} turns → {r.adapter}",
            highlight=False,
        )


@agents_app.command()
def status(
    folder: Folder,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Agents, their scopes, adapters, turns and adherence; episodes and uncovered situations."""
    from steering.agents import Bureaucracy

    data = Bureaucracy.open(folder).status()
    if json_out:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(
        title=f"{data['folder']} · {data['model']} · {data['episodes']} episodes, {data['uncovered']} uncovered"
    )
    columns = (
        "agent",
        "mission",
        "adapter",
        "references",
        "α",
        "turns",
        "rated",
        "adherence (1–7)",
        "cue rate",
    )
    for column in columns:
        table.add_column(column)
    for a in data["agents"]:
        scope = a["scope"] or {}
        table.add_row(
            a["name"], a["mission"][:60], a["adapter"] or "–", str(scope.get("references", "–")),
            str(scope.get("alpha", "–")), str(a["turns"]), str(a["rated"]),
            f"{a['adherence']:.2f}" if a["adherence"] is not None else "–",
            f"{a['cue_rate']:.2f}" if a.get("cue_rate") is not None else "–",
        )  # fmt: skip
    Console().print(table)


@agents_app.command()
def show(
    folder: Folder,
    last: Annotated[int, typer.Option(min=1, help="How many of the latest episodes.")] = 3,
) -> None:
    """Print the latest episodes' transcripts, each turn with its KL to the base and adherence."""
    from steering.agents import Bureaucracy

    office = Bureaucracy.open(folder)
    with office.store() as store:
        prompts = {p.id: p for p in store.prompts() if p.source == "episode"}
        ratings: dict[int, list[float]] = {}
        for rating in store.ratings():
            ratings.setdefault(rating.response_id, []).append(rating.value)
        turns = [(prompts[r.prompt_id].meta, r) for r in store.responses() if r.prompt_id in prompts]
    order: list[str] = []
    for meta, _ in turns:
        if meta["episode"] not in order:
            order.append(meta["episode"])
    for tag in order[-last:]:
        mine = sorted(((m, r) for m, r in turns if m["episode"] == tag), key=lambda pair: pair[0]["turn"])
        typer.echo(f"\n# {mine[0][0]['situation']}")
        for meta, response in mine:
            values = ratings.get(response.id)
            rated = f", adherence {sum(values) / len(values):.1f}" if values else ""
            label = "reply" if meta["closing"] else "turn"
            typer.echo(f"  {meta['agent']} ({label}): {response.text}   [KL {response.kl or 0:.2f}{rated}]")

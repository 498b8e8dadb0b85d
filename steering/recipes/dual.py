"""The "dual" recipe's parts: a prompt for the skill, an adapter tuned on the user's notes, quoted slots.

Three controls, each doing what it is best at (the design notes' "dual"):

- **prompting** gives the skill: "Summarise what my notes say about <topic>." (`skill_prompt`);
- **fine-tuning** gives the knowledge: a LoRA adapter trained on the user's notes with the loss on the
  whole text (`notes_dataset` writes the `{"text"}` rows `train_sft` reads; `notes_perplexity`
  measures held-out notes before and after);
- **a token pool** fills the prompt's slot: the topic is copied out of the user's command by a few-shot
  prompt, and with `quote=True` it is generated under `QuoteFromSource(command)` between quote marks,
  so it can only be a span of the command — a topic that is not in the command cannot be written
  (`fill_slot`, `slot_hallucination_rate`).

The project ships example notes (`example_notes()`: a garden, bike repairs, recipes, trips, a book club,
work) and `COMMANDS`, requests a user would type about them. This module holds the building blocks; the
`recipes/dual.toml` pipeline wires them (dataset → SFT adapter → slots with and without the pool →
answers with the adapter → the measurements).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from steering.controls import QuoteFromSource, split_controls
from steering.decode import Sample, generate, row_seed
from steering.errors import InputFormatError, InvalidArgument
from steering.jsonl import check_text, read_text
from steering.models import LanguageModel
from steering.paths import atomic_write_text

NOTE_SUFFIXES = (".md", ".txt")
# Separators tried in turn when a note is longer than one training row: paragraphs, lines, words.
_SEPARATORS = ("\n\n", "\n", " ")
QUOTE = '"'
SLOT_STOPS = (QUOTE, "\n")

# The slot prompt: a base model of 270M parameters copies a span after three examples of doing so.
SLOT_PROMPT = """Copy the topic of each command, word for word, between quote marks.

Command: what did I write about repotting the basil?
Topic: "repotting the basil"

Command: remind me what my notes say on the tax forms
Topic: "the tax forms"

Command: summarise my notes about the dentist appointment, please
Topic: "the dentist appointment"

Command: {command}
Topic: \""""

SKILL_PROMPT = "Summarise what my notes say about {topic}.\n\nMy notes on {topic}:\n"

# Requests a user of the example notes would type; each names a topic the notes cover.
COMMANDS = (
    "what did I write about pruning the roses?",
    "remind me how I fixed the bike brakes",
    "summarise my notes on the lentil soup",
    "what did the book club say about The Remains of the Day?",
    "what do my notes say about the compost bins",
    "can you tell me what I noted on the back wheel puncture",
    "summary of my sourdough bread notes please",
    "what did I write down about the trip to Lisbon?",
    "what is on my packing list for a week away",
    "what are my notes on the database migration project?",
    "remind me what we changed to make the standup shorter",
    "what did I write about growing tomatoes this year",
    "how did I clean and replace the chain on my bike?",
    "what did the group think of Piranesi at the April meeting?",
    "tell me what I wrote about the black spot on the old rose",
    "what do my notes say about toeing in the brake pads",
    "what did I learn about greens and browns in the compost",
    "what did I note about the starter called Gerald?",
    "what were the best things about the day trip to Sintra",
    "what are the risks of the billing service migration?",
    "what did I write about feeding the roses",
    "how do I find the hole in an inner tube, according to my notes",
    "what did I note about pinching out the side shoots",
    "what did we decide about blockers in the standup?",
    "what did I write about the pastéis de nata in Lisbon",
    "summarise my notes about the invoice numbering",
)


@dataclass(frozen=True)
class Note:
    """One note of the user's: its file name without the suffix, and its text."""

    name: str
    text: str


@dataclass(frozen=True)
class Slot:
    """One filled slot: the topic copied out of `command` (quote marks and stop trimmed).

    `stop_reason` is the decode's: "stop" when the closing quote mark (or a line break) ended it,
    "length" or "unfinished" when the budget ran out first — the topic is then cut short, though
    under the quote pool still a span of the command.
    """

    command: str
    text: str
    quoted: bool
    stop_reason: str

    @property
    def closed(self) -> bool:
        return self.stop_reason == "stop"


def example_notes() -> Path:
    """The folder of example notes the project ships."""
    return Path(str(files("steering.recipes.data").joinpath("notes")))


def read_notes(folder: str | Path) -> list[Note]:
    """The notes (`*.md`, `*.txt`) in `folder`, in name order.

    Raises:
        InputFormatError: the folder is missing, holds no notes, or a note is empty or not UTF-8.
    """
    directory = Path(folder)
    if not directory.is_dir():
        raise InputFormatError(
            f"the notes folder {folder} {'is a file' if directory.exists() else 'does not exist'}",
            received=str(folder),
            fix="pass a folder of .md or .txt notes (the examples: steering/recipes/data/notes)",
        )
    paths = sorted(p for p in directory.iterdir() if p.suffix in NOTE_SUFFIXES and p.is_file())
    if not paths:
        raise InputFormatError(
            f"the notes folder {folder} holds no notes",
            received=sorted(p.name for p in directory.iterdir())[:8],
            fix="put the notes in it as .md or .txt files",
        )
    notes = [Note(p.stem, read_text(p, what="note").strip()) for p in paths]
    empty = [p.name for p, note in zip(paths, notes, strict=True) if not note.text]
    if empty:
        raise InputFormatError(
            f"{len(empty)} note(s) in {folder} are empty",
            received=empty[:8],
            fix="remove them or write in them",
        )
    return notes


def chunk_text(model: LanguageModel, text: str, *, max_length: int) -> list[str]:
    """`text` in consecutive pieces that each fit one training row of `max_length` tokens.

    A row is BOS + the piece's tokens + EOS (how `train_sft` encodes a `{"text"}` row), so a piece
    has at most `max_length − 2` tokens. Pieces are whole paragraphs packed greedily; a paragraph too
    long on its own is split at line breaks, then between words, and a single word longer than a row
    at token boundaries.
    """
    if isinstance(max_length, bool) or not isinstance(max_length, int):
        raise InvalidArgument(
            "max_length must be a whole number of tokens", received=max_length, fix="e.g. 256"
        )
    budget = max_length - len(model.encode("")) - 1
    if budget < 1:
        raise InvalidArgument(
            f"max_length={max_length} leaves no room for text between BOS and EOS",
            received=max_length,
            fix="use max_length=256",
        )
    return _pack(model, text.strip(), budget, _SEPARATORS)


def _pack(model: LanguageModel, text: str, budget: int, separators: Sequence[str]) -> list[str]:
    """Greedy packing of `text`'s parts (split at `separators[0]`) into pieces of ≤ `budget` tokens."""

    def fits(piece: str) -> bool:
        return len(model.encode_continuation(piece)) <= budget

    if fits(text):
        return [text]
    if not separators:
        ids = model.encode_continuation(text)
        return [model.decode(ids[i : i + budget]) for i in range(0, len(ids), budget)]
    separator, finer = separators[0], separators[1:]
    pieces: list[str] = []
    current = ""
    for part in (p for p in text.split(separator) if p.strip()):
        candidate = current + separator + part if current else part
        if fits(candidate):
            current = candidate
            continue
        if current:
            pieces.append(current)
        split = [part] if fits(part) else _pack(model, part, budget, finer)
        pieces.extend(split[:-1])
        current = split[-1]
    if current:
        pieces.append(current)
    return pieces


def heldout_names(notes: Sequence[Note], heldout: Sequence[str] | int) -> list[str]:
    """Which notes to hold out: the names given, or `heldout` notes spread evenly over the name order.

    Raises:
        InvalidArgument: a named note is not in the folder, or no note would be left to train on.
    """
    names = [note.name for note in notes]
    if isinstance(heldout, bool):
        raise InvalidArgument(
            "heldout is a count or a list of note names", received=heldout, fix="e.g. heldout=3"
        )
    if isinstance(heldout, int):
        if not 0 <= heldout < len(names):
            raise InvalidArgument(
                f"cannot hold out {heldout} of {len(names)} notes and train on the rest",
                received=heldout,
                fix=f"hold out between 0 and {len(names) - 1} notes",
            )
        # The middle of each of `heldout` equal stretches of the name order: neighbours stay in training.
        return [names[(2 * i + 1) * len(names) // (2 * heldout)] for i in range(heldout)]
    chosen = [heldout] if isinstance(heldout, str) else list(heldout)
    missing = [name for name in chosen if name not in names]
    if missing:
        raise InvalidArgument(
            f"held-out note(s) not in the folder: {', '.join(missing)}",
            received=missing,
            fix=f"name notes by file name without the suffix, one of: {', '.join(names)}",
        )
    if len(set(chosen)) >= len(names):
        raise InvalidArgument(
            "every note is held out, none is left to train on", received=chosen, fix="hold out fewer notes"
        )
    return chosen


def notes_dataset(
    folder: str | Path,
    *,
    model: LanguageModel,
    heldout: Sequence[str] | int = 3,
    max_length: int = 256,
    out: str | Path | None = None,
) -> tuple[list[dict[str, str]], list[str]]:
    """Training rows and held-out texts from a folder of notes.

    Each note is cut into pieces that fit `max_length` tokens (`chunk_text`); the pieces of the notes
    not held out become `{"text"}` rows (SFT's shape with the loss on the whole text), written as JSONL
    to `out` when given. Held-out notes are held out whole and come back as their pieces, scored the
    way the training rows are (`notes_perplexity`).

    Returns:
        (rows, heldout_texts).
    """
    notes = read_notes(folder)
    held = set(heldout_names(notes, heldout))
    rows: list[dict[str, str]] = []
    held_texts: list[str] = []
    for note in notes:
        pieces = chunk_text(model, note.text, max_length=max_length)
        if note.name in held:
            held_texts.extend(pieces)
        else:
            rows.extend({"text": piece} for piece in pieces)
    if out is not None:
        atomic_write_text(Path(out), "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return rows, held_texts


def notes_perplexity(model: LanguageModel, texts: Sequence[str], controls: Sequence[object] = ()) -> float:
    """Per-token perplexity of `texts`: exp(−Σ log p / number of tokens), pooled over all texts.

    Each text is scored teacher-forced after BOS, as a training row is (its EOS is not scored: it
    marks where a piece was cut, not something the notes say). `controls` may hold model controls
    only (an `Adapter`: on while scoring); a model without BOS has each text's first token as context.

    Raises:
        InvalidArgument: no texts, an empty text, or a context or logit control.
    """
    if isinstance(texts, str) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise InvalidArgument(
            "perplexity needs a list of non-empty texts",
            received=repr(texts)[:80],
            fix="pass the held-out texts from notes_dataset",
        )
    context, logits, model_controls = split_controls(controls)
    if context or logits:
        raise InvalidArgument(
            "notes_perplexity scores the model itself: it takes model controls (an adapter) only",
            received=[type(c).__name__ for c in [*context, *logits]],
            fix="pass controls=[] for the base or controls=[Adapter(path)] for the tuned model",
        )
    prompts, continuations = [], []
    for text in texts:
        prefix, ids = model.encode(""), model.encode_continuation(text)
        if not prefix:  # no BOS: the first token is context, not scored
            prefix, ids = ids[:1], ids[1:]
        prompts.append(prefix)
        continuations.append(ids)
    with ExitStack() as stack:
        for control in model_controls:
            stack.enter_context(control.attached(model))
        scored = model.logprobs(prompts, continuations)
    count = sum(len(s) for s in scored)
    if count == 0:
        raise InvalidArgument(
            "the texts hold no token to score", received=list(texts)[:3], fix="pass longer texts"
        )
    return math.exp(-sum(float(s.sum()) for s in scored) / count)


def clean_command(command: str) -> str:
    """The command as the slot quotes from it: whitespace collapsed, double quote marks dropped.

    A quote mark inside the command would close the slot's quote, and a line break would end it.
    """
    if not isinstance(command, str):
        raise InvalidArgument("a command must be text", received=repr(command)[:80], fix="pass strings")
    cleaned = " ".join(check_text(command, name="command", what="user").replace(QUOTE, " ").split())
    if not cleaned:
        raise InvalidArgument("a command is empty", received=repr(command), fix="pass the user's request")
    return cleaned


def slot_prompt(command: str) -> str:
    """The few-shot slot prompt for `command`, ending right after the opening quote mark."""
    return SLOT_PROMPT.format(command=clean_command(command))


def fill_slot(
    model: LanguageModel,
    commands: Sequence[str],
    *,
    quote: bool,
    controls: Sequence[object] = (),
    seed: int = 0,
    max_new_tokens: int = 24,
) -> list[Slot]:
    """The topic of each command, generated after `slot_prompt` up to the closing quote mark.

    With `quote=True` the topic is sampled under `QuoteFromSource(command)` (after `controls`): every
    token keeps the text a span of the command, so the topic cannot be made up. Without it the topic
    is free generation under `controls` alone. Command i is sampled with the seed `row_seed(seed, i, 0)`
    in both modes, so the two see the same random numbers and differ only by the pool.
    """
    if isinstance(commands, str) or not commands:
        raise InvalidArgument(
            "fill_slot needs a list of commands", received=repr(commands)[:80], fix="pass e.g. list(COMMANDS)"
        )
    slots = []
    for index, command in enumerate(commands):
        source = clean_command(command)
        pool = [QuoteFromSource(source, open_mark=QUOTE, close_mark=QUOTE)] if quote else []
        sample = generate(
            model,
            [SLOT_PROMPT.format(command=source)],
            controls=[*controls, *pool],
            max_new_tokens=max_new_tokens,
            stop=SLOT_STOPS,
            seed=row_seed(seed, index, 0),
        )[0]
        slots.append(Slot(command, sample.text.strip(), quote, sample.stop_reason))
    return slots


def normalise_span(text: str) -> str:
    """Case folded, double quote marks dropped, whitespace collapsed: how a slot is compared to its command."""
    return " ".join(text.replace(QUOTE, " ").casefold().split())


def slot_hallucination_rate(slots: Sequence[Slot], commands: Sequence[str]) -> float:
    """The share of slots whose text is not a span of its command (both normalised by `normalise_span`).

    An empty slot is a span of every command: it counts as not made up (`slot_empty_rate` counts it).

    Raises:
        InvalidArgument: no slots, or not one command per slot.
    """
    if not slots or len(slots) != len(commands):
        raise InvalidArgument(
            "slot_hallucination_rate needs one command per slot",
            received=f"{len(slots)} slots, {len(commands)} commands",
            fix="pass the commands fill_slot was given",
        )
    made_up = sum(
        normalise_span(slot.text) not in normalise_span(command)
        for slot, command in zip(slots, commands, strict=True)
    )
    return made_up / len(slots)


def slot_empty_rate(slots: Sequence[Slot]) -> float:
    """The share of slots left empty (the quote closed, or the line ended, at once): not made up, not filled."""
    if not slots:
        raise InvalidArgument(
            "slot_empty_rate needs slots", received="[]", fix="pass what fill_slot returned"
        )
    return sum(not slot.text for slot in slots) / len(slots)


def skill_prompt(topic: str) -> str:
    """The skill's prompt with its slot filled."""
    topic = " ".join(topic.split())
    if not topic:
        raise InvalidArgument(
            "the topic is empty",
            received=repr(topic),
            fix="fill the slot first (fill_slot) and pass its text",
        )
    return SKILL_PROMPT.format(topic=topic)


def answer(
    model: LanguageModel,
    topic: str,
    controls: Sequence[object] = (),
    *,
    seed: int = 0,
    max_new_tokens: int = 120,
) -> Sample:
    """The summary for `topic`, sampled after `skill_prompt` under `controls` (the notes' `Adapter`).

    Generation stops at a blank line followed by a heading, or at EOS; the `Sample` keeps the books
    (KL of the adapter's answer to the base).
    """
    return generate(
        model,
        [skill_prompt(topic)],
        controls=controls,
        max_new_tokens=max_new_tokens,
        stop=("\n\n#",),
        seed=seed,
    )[0]

"""Files the recipes ship with (`steering/recipes/data/`): constitutions, prompt sets, example notes."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from steering.errors import InvalidArgument


def packaged_file(name: str, suffix: str) -> Path:
    """A path as given, or the packaged `steering/recipes/data/NAME.SUFFIX` when NAME is a bare name."""
    path = Path(name)
    if path.suffix or "/" in name:
        if not path.is_file():
            raise InvalidArgument(f"the file {name} does not exist", received=name, fix="check the path")
        return path
    packaged = Path(str(files("steering.recipes").joinpath(f"data/{name}.{suffix}")))
    if not packaged.is_file():
        shipped = sorted(p.stem for p in packaged.parent.glob(f"*.{suffix}"))
        raise InvalidArgument(
            f"no packaged {suffix} file named {name!r}",
            received=name,
            fix="use one of: " + (", ".join(shipped) or "(none)") + f", or a path to a .{suffix} file",
        )
    return packaged


def prompt_set(spec: str, limit: int = 0) -> list[tuple[str, str]]:
    """(prompt, category) pairs of a prompt-set spec; several joined with "+"; the first `limit` (0: all).

    "train" / "eval": the instruction sets (category = their kind); "red_team:train",
    "benign:heldout" (or without the split): the Constitutional AI prompt sets (category = theirs);
    a path to a JSONL of {"prompt"} rows (category "file").
    """
    from steering.eval.instructions import load_instructions
    from steering.jsonl import read_jsonl
    from steering.recipes.red_team import KINDS, builtin_prompts

    pairs: list[tuple[str, str]] = []
    for part in (p.strip() for p in spec.split("+")):
        kind, _, split = part.partition(":")
        if part in ("train", "eval"):
            pairs += [(i.text, i.kind) for i in load_instructions(part)]
        elif kind in KINDS:
            pairs += [(row.prompt, row.category) for row in builtin_prompts(kind, split=split or None)]
        elif part.endswith(".jsonl"):
            for number, _, value in read_jsonl(part, what="prompts file", example='{"prompt": "…"}'):
                if not isinstance(value, dict) or not isinstance(value.get("prompt"), str):
                    raise InvalidArgument(
                        f"{part}:{number}: no prompt", received=repr(value)[:80], fix='{"prompt": "…"}'
                    )
                pairs.append((value["prompt"], "file"))
        else:
            raise InvalidArgument(
                f"unknown prompt set {part!r}",
                received=spec,
                fix='use train, eval, red_team:train, benign:heldout, …, or a .jsonl file; join several with "+"',
            )
    return pairs[:limit] if limit else pairs

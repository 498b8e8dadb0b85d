"""A checkpoint's trainer state (optimizer, scheduler, RNG) in files that cannot run code when read.

    trainer.safetensors   every tensor of the state (AdamW moments, step counters, the torch RNG)
    trainer.json          everything else, with each tensor replaced by its key in trainer.safetensors

A pickle (`torch.save`) runs whatever code its author put in it when it is loaded, so a checkpoint
from somewhere else would be a program. safetensors holds only tensors and JSON only data: reading a
crafted pair can fail, never execute. The JSON tree tags what JSON cannot say itself, and nothing
else is accepted on reading:

    {"tensor": "t3"}            a tensor, stored under that key
    {"tuple": [...]}            a tuple (Python's RNG state is one)
    {"list": [...]}             a list
    {"dict": [[key, value]…]}   a dict (the optimizer's state is keyed by parameter index, an int)

Checkpoints of older versions held the same state as one pickle, `trainer.pt`; they are refused.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steering.errors import InvalidArgument

TENSORS = "trainer.safetensors"
STATE = "trainer.json"
LEGACY = "trainer.pt"
FORMAT = 1


def rng_state() -> dict[str, Any]:
    """The states of every random generator training draws from (torch, CUDA if in use, Python, NumPy)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (str(kind), [int(k) for k in keys], int(position), int(has_gauss), float(gauss)),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Put back what `rng_state` returned (after a round trip through the checkpoint files too)."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def write_trainer_state(directory: Path, state: Mapping[str, Any]) -> None:
    """`state` (nested dicts, lists, tuples, tensors and JSON scalars) as trainer.safetensors + trainer.json."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(dict(state), tensors)
    save_file(tensors, str(directory / TENSORS))
    (directory / STATE).write_text(json.dumps({"format": FORMAT, "state": tree}) + "\n", encoding="utf-8")


def read_trainer_state(directory: Path) -> dict[str, Any]:
    """What `write_trainer_state` wrote; nothing in the files is run.

    Raises:
        InvalidArgument: the checkpoint is of the old pickle format, or its files are missing or damaged.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not (directory / STATE).is_file():
        if (directory / LEGACY).is_file():
            raise InvalidArgument(
                f"the checkpoint {directory} holds its optimizer and RNG state as {LEGACY}, a pickle, "
                "which can run code when it is read; steering no longer reads pickles",
                received=str(directory / LEGACY),
                fix="start the run again in a new out directory (checkpoints are now safetensors + JSON)",
            )
        raise _damaged(directory, f"{STATE} is missing")
    try:
        saved = json.loads((directory / STATE).read_text(encoding="utf-8"))
        tensors = load_file(str(directory / TENSORS))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, SafetensorError) as error:
        raise _damaged(directory, f"{type(error).__name__}: {error}") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise _damaged(directory, f"{STATE} is not a trainer state of format {FORMAT}")
    state = _decode(saved.get("state"), tensors, directory)
    if not isinstance(state, dict):
        raise _damaged(directory, f"{STATE} does not hold a mapping")
    return state


def _encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"tensor": key}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, tensors) for v in value]}
    if isinstance(value, list):
        return {"list": [_encode(v, tensors) for v in value]}
    if isinstance(value, Mapping):
        return {"dict": [[_encode(k, tensors), _encode(v, tensors)] for k, v in value.items()]}
    raise TypeError(f"a checkpoint cannot hold a {type(value).__name__}: {value!r:.80}")


def _decode(node: Any, tensors: Mapping[str, torch.Tensor], directory: Path) -> Any:
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, dict) and len(node) == 1:
        ((tag, body),) = node.items()
        if tag == "tensor" and isinstance(body, str) and body in tensors:
            return tensors[body]
        if tag in ("tuple", "list") and isinstance(body, list):
            items = [_decode(v, tensors, directory) for v in body]
            return tuple(items) if tag == "tuple" else items
        if tag == "dict" and isinstance(body, list) and all(_is_pair(p) for p in body):
            return {key: _decode(value, tensors, directory) for key, value in body}
    raise _damaged(directory, f"unexpected entry {json.dumps(node)[:80]}")


def _is_pair(item: Any) -> bool:
    """A [key, value] entry of a dict; keys are strings or ints (parameter indices)."""
    return isinstance(item, list) and len(item) == 2 and isinstance(item[0], (str, int))


def _damaged(directory: Path, detail: str) -> InvalidArgument:
    return InvalidArgument(
        f"the checkpoint {directory} is damaged and cannot be resumed from",
        received=detail,
        fix=f"delete {directory} to resume from the checkpoint before it, or start a new run",
    )

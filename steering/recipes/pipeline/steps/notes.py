"""The `notes` step: a folder of the user's notes as SFT rows ({"text"}: the loss is on the notes' text).

Notes are cut into pieces that fit `max_length` tokens; `heldout` whole notes are kept out for the
perplexity of the `dual` step (`recipes/dual.py`). Outputs `data` (data.jsonl) and `heldout`
(heldout.json: the held-out notes' pieces).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from steering.paths import atomic_write_text
from steering.recipes.dual import example_notes, notes_dataset
from steering.recipes.pipeline.contract import StepContext, StepKind, StepResult


@dataclass
class NotesOptions:
    folder: str = ""  # "" = the example notes the project ships
    heldout: int = 3
    max_length: int = 256


class Notes(StepKind):
    name = "notes"
    Options = NotesOptions
    quick: ClassVar[dict[str, Any]] = {}

    def run(self, context: StepContext, options: Any) -> StepResult:
        folder = options.folder or example_notes()
        rows, heldout = notes_dataset(folder, model=context.model(), heldout=options.heldout,
                                      max_length=options.max_length, out=context.folder / "data.jsonl")  # fmt: skip
        atomic_write_text(context.folder / "heldout.json", json.dumps(heldout, indent=1) + "\n")
        metrics = {"pieces": len(rows), "heldout_pieces": len(heldout), "folder": str(folder)}
        return StepResult(metrics, {"data": "data.jsonl", "heldout": "heldout.json"})

"""The package's layers, checked by reading every import of every module (ast; imports inside functions
and under `if TYPE_CHECKING:` count too).

Levels, top to bottom; a module may import its own folder and any folder on a lower level, never one
on a higher level (up) or another folder on its own level (sideways):

    5  cli (steering/__main__.py is part of it)
    4  recipes, agents
    3  train, condition, eval, feedback
    2  decode, controls      (one level: decode may import controls, controls may not import decode)
    1  models
    0  the shared bottom: errors, paths, jsonl, callables, rewards, and the package root (`steering`)

The shared bottom may be imported by every module and imports only itself, with one exception: the
package root `steering/__init__.py` is the facade that re-exports the entry points (`load_model`,
`generate`) from models/ and decode/, so its own imports are not checked. Folders that do not exist
yet (agents, feedback) have their place here already. benchmarks/, experiments/ and tests/ are not part
of the package and may import anything.

A failure lists every violation as `file:line: importer -> imported (rule)`.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "steering"

LEVELS = {
    "cli": 5,
    "recipes": 4,
    "agents": 4,
    "train": 3,
    "condition": 3,
    "eval": 3,
    "feedback": 3,
    "decode": 2,
    "controls": 2,
    "models": 1,
}
SHARED = {"", "errors", "paths", "jsonl", "callables", "rewards"}  # "" = the package root
# Pairs on one level where the first may import the second.
ALLOWED_SIDEWAYS = {("decode", "controls")}


def part_of(module: str) -> str:
    """`steering.train.sft` → `train`; `steering` → ``; `steering.errors` → `errors`."""
    parts = module.split(".")
    part = parts[1] if len(parts) > 1 else ""
    return "cli" if part == "__main__" else part


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every `steering` import in the file, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            if name == "steering":  # `from steering import errors` names modules, not only objects
                found += [(node.lineno, f"steering.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, name))
    return [(line, name) for line, name in found if name == "steering" or name.startswith("steering.")]


def rule_broken(importer: str, imported: str) -> str | None:
    """Why `importer` (a part of the package) may not import `imported`, or None when it may."""
    if imported not in SHARED and imported not in LEVELS:  # `from steering import load_model`: the root
        imported = ""
    if importer == imported or imported in SHARED:
        return None
    if importer in SHARED:
        return "the shared bottom imports only itself"
    if imported not in LEVELS:
        return f"unknown part steering.{imported}: give it a level in tests/test_layers.py"
    if importer not in LEVELS:
        return f"unknown part steering.{importer}: give it a level in tests/test_layers.py"
    if LEVELS[imported] > LEVELS[importer]:
        return "imports up"
    if LEVELS[imported] == LEVELS[importer] and (importer, imported) not in ALLOWED_SIDEWAYS:
        return "imports sideways"
    return None


def violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "__init__.py":  # the facade: re-exports load_model, generate
            continue
        importer = part_of(module_name(path))
        for line, module in imported_modules(path):
            why = rule_broken(importer, part_of(module))
            if why is not None:
                where = path.relative_to(PACKAGE.parent)
                found.append(f"{where}:{line}: {module_name(path)} -> {module} ({why})")
    return found


def test_rules_read_as_documented():
    assert rule_broken("cli", "recipes") is None and rule_broken("recipes", "train") is None
    assert rule_broken("recipes", "models") is None  # skipping levels down is fine
    assert rule_broken("decode", "controls") is None
    assert rule_broken("controls", "decode") == "imports sideways"
    assert rule_broken("train", "condition") == "imports sideways"
    assert rule_broken("train", "recipes") == "imports up"
    assert rule_broken("models", "errors") is None and rule_broken("rewards", "callables") is None
    assert rule_broken("errors", "models") == "the shared bottom imports only itself"


def test_no_import_goes_up_or_sideways():
    found = violations()
    print("\n".join(found))
    assert not found, f"{len(found)} imports break the layers:\n" + "\n".join(found)

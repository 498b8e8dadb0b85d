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

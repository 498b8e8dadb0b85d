"""Choose the benchmark's JSON schemas from two public collections, mechanically (see README.md).

Run: `python benchmarks/data/schemas/choose.py SCHEMASTORE_GIT_DIR IGLU_GIT_DIR` with bare clones (or
work trees) of SchemaStore/schemastore and snowplow/iglu-central at the commits named in README.md.
From each collection: the schemas of at most `MAX_BYTES` bytes (iglu: JSON schemas only, the newest
version of each), sorted by path, then `random.Random(SEED).sample(…, PER_SOURCE)`; files are copied byte for
byte.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

SEED, PER_SOURCE, MAX_BYTES = 15, 24, 12_000
HERE = Path(__file__).parent


def _files(git_dir: str, commit: str, under: str) -> list[tuple[str, int]]:
    listing = subprocess.run(
        ["git", "--git-dir", git_dir, "ls-tree", "-r", "-l", commit, under],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = [line.split(None, 4) for line in listing.splitlines()]
    return [(row[4], int(row[3])) for row in rows if row[3].isdigit()]


def _show(git_dir: str, commit: str, path: str) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", git_dir, "show", f"{commit}:{path}"], capture_output=True, check=True
    ).stdout


def _version(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in path.rsplit("/", 1)[1].split("-"))


def main(schemastore: str, iglu: str) -> None:
    store_commit, iglu_commit = (
        "3b6446ad8a077bac56f4a4796c0b7fd88927fc8e",
        "cbac22edd8c67e09413c19e80c3d7354e1f010c8",
    )
    store = sorted(
        path for path, size in _files(schemastore, store_commit, "src/schemas/json/")
        if path.endswith(".json") and size <= MAX_BYTES
    )  # fmt: skip
    newest: dict[str, tuple[tuple[int, ...], str, int]] = {}
    for path, size in _files(iglu, iglu_commit, "schemas/"):
        vendor, name, kind = path.split("/")[1:4]
        if kind != "jsonschema":  # iglu also holds Avro and Thrift schemas
            continue
        key = f"{vendor}.{name}"
        if key not in newest or _version(path) > newest[key][0]:
            newest[key] = (_version(path), path, size)
    snowplow = sorted(path for _, path, size in newest.values() if size <= MAX_BYTES)
    for source, git_dir, commit, paths in (
        ("schemastore", schemastore, store_commit, store),
        ("snowplow", iglu, iglu_commit, snowplow),
    ):
        out = HERE / source
        out.mkdir(exist_ok=True)
        for path in random.Random(SEED).sample(paths, PER_SOURCE):
            parts = path.split("/")
            name = parts[-1] if source == "schemastore" else f"{parts[1]}.{parts[2]}.{parts[4]}.json"
            (out / name).write_bytes(_show(git_dir, commit, path))
            print(source, path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""Atomic writes: a failure never leaves a half-written file or directory, nor loses the old one."""

from __future__ import annotations

import pytest

from steering.paths import atomic_dir, atomic_write_text


def test_atomic_dir_failure_keeps_previous_copy(tmp_path):
    target = tmp_path / "cache"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("crash mid-write")
    assert (target / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]


def test_atomic_dir_replaces_existing(tmp_path):
    target = tmp_path / "cache"
    for text in ("one", "two"):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text(text)
    assert (target / "a.txt").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]


def test_atomic_write_text(tmp_path):
    path = tmp_path / "report.html"
    atomic_write_text(path, "<p>ok</p>")
    assert path.read_text() == "<p>ok</p>"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]

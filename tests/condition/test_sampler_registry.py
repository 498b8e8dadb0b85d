"""The sampler registry: one entry per sampler, read by `steer sample`, with clear errors for bad names."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from steering.condition import SAMPLERS, importance, rejection, sampler_entry, smc
from steering.errors import InvalidArgument


def test_the_builtin_samplers_are_registered():
    assert {name: entry.run for name, entry in SAMPLERS.items()} == {
        "smc": smc,
        "importance": importance,
        "rejection": rejection,
    }
    for entry in SAMPLERS.values():
        assert entry.help and "\n" not in entry.help  # one line for --help


def test_unknown_names_list_the_registered_ones():
    assert sampler_entry("smc") is SAMPLERS["smc"]
    with pytest.raises(InvalidArgument, match="Unknown sampler") as error:
        sampler_entry("smx")
    message = str(error.value)
    assert 'Did you mean "smc"?' in message
    assert all(name in message for name in SAMPLERS)


def test_steer_sample_help_comes_from_the_registry():
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "steering", "sample", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    help_text = " ".join(result.stdout.replace("│", " ").split())  # unwrap rich's box
    for name, entry in SAMPLERS.items():
        assert f"{name} ({entry.help}" in help_text

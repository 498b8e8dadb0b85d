"""Shared fixtures: the tiny model for unit tests, real packaged models for integration tests."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by Playwright (its own browser download is not reachable here). The page
    tests FAIL without it: a skipped browser test would read as a pass."""
    import shutil

    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail(
            "Debian's `chromium` is not on PATH, and the page tests (reports, the annotation app) open pages "
            "in it. Install it with `sudo apt-get install -y chromium` (`make install` does this when run "
            "as root).",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def tiny():
    from steering.models import load_model

    return load_model("tiny-random", dtype="float32")


@pytest.fixture(scope="session")
def tiny_letters():
    """A 5-token model (<eos>, a, b, c, space) for exact enumeration and unspellable text."""
    from steering.models import load_model

    return load_model("tiny-letters", dtype="float32")


@pytest.fixture(scope="session")
def gemma():
    from steering.models import load_model

    return load_model("gemma-270m")


@pytest.fixture(scope="session")
def gemma32():
    from steering.models import load_model

    return load_model("gemma-270m", dtype="float32")


@pytest.fixture(scope="session")
def smollm():
    from steering.models import load_model

    return load_model("smollm2-135m-instruct")

"""The annotation app in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright) works
through compare, rank, rate and critique, with undo and skip, by keys and by mouse as a person would; then
the rows in the database are checked. No console errors, no request leaves 127.0.0.1, and HTML in a prompt
or an answer stays text (its script never runs).

Playwright's own browser download does not work here, so the test uses the system's browser. Without it the
test FAILS (a skipped browser test would read as a pass): install it with `sudo apt-get install -y chromium`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page

from steering.feedback.app import create_app, serve_in_thread
from steering.feedback.store import FeedbackStore

TITLE_SCRIPT = "<script>document.title = 'pwned'</script>"
IMAGE_SCRIPT = "<img src=x onerror=\"document.title = 'pwned'\">"


@pytest.fixture
def app(tmp_path) -> Iterator[dict[str, Any]]:
    """A database with one prompt (HTML in it) and three answers, queued for every task, served on loopback."""
    db = tmp_path / "feedback.db"
    with FeedbackStore.open(db) as store:
        prompt = store.add_prompt(f"What is 2 + 2? {TITLE_SCRIPT}")
        texts = ["4", f"five {IMAGE_SCRIPT}", "22"]
        responses = [store.add_response(prompt, text, model="m") for text in texts]
        store.add_items_for_prompt(prompt, rubrics=("helpful",))
        turns = [{"role": "user", "content": f"hi {TITLE_SCRIPT}"}, {"role": "assistant", "content": "hello"}]
        chat = store.add_prompt("a chat", meta={"messages": turns})
        store.add_response(chat, "bye", model="m")
        with serve_in_thread(create_app(store)) as base:
            yield {
                "base": base,
                "store": store,
                "chat": chat,
                "responses": dict(zip(texts, responses, strict=True)),
            }


def watch(page: Page, base: str) -> dict[str, list[str]]:
    """Collect console errors, page errors and every request that does not go to the app."""
    seen: dict[str, list[str]] = {"errors": [], "outside": []}
    page.on(
        "console", lambda message: seen["errors"].append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: seen["errors"].append(str(error)))
    page.on(
        "request",
        lambda request: None if request.url.startswith(base + "/") else seen["outside"].append(request.url),
    )
    return seen


def shown_ids(page: Page, selector: str) -> list[int]:
    return [
        int(x) for x in page.eval_on_selector_all(selector, "nodes => nodes.map(n => n.dataset.response)")
    ]


def press(page: Page, key: str) -> None:
    """Press a key that saves, skips or undoes: the page then goes to the next item."""
    with page.expect_navigation():
        page.keyboard.press(key)


def test_a_person_works_through_every_task_with_keys_and_mouse(browser, app):
    base, store = app["base"], app["store"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    seen = watch(page, base)

    # Compare 1: the HTML in the prompt and an answer is shown as text, and no script of it ran.
    page.goto(f"{base}/compare")
    assert page.title() == "compare · steer annotate"
    assert TITLE_SCRIPT in page.inner_text("#prompt-text")
    assert IMAGE_SCRIPT in page.inner_text(".pair")  # the first pair is "4" and "five <img …>"
    assert page.locator(".pair img, main script:not([type])").count() == 0
    assert "1 or a or ←" in page.inner_text("#keys")  # the keys are listed on the page
    left = page.inner_text("#left pre")
    page.keyboard.press("r")  # write a reason, leave the box, choose A (left) by key
    page.keyboard.type("A says 4 <b>plainly</b>")
    page.keyboard.press("Escape")
    press(page, "1")
    first = store.comparisons()[-1]
    chosen = first.response_a if first.choice == "a" else first.response_b
    assert store.response(chosen).text == left and first.reason == "A says 4 <b>plainly</b>"
    assert first.shown_left in ("a", "b") and first.seconds > 0
    assert page.inner_text("#flash") == "Saved. Press u to undo."
    assert page.get_attribute("#progress-bar", "value") == "1"

    # Compare 2: by mouse; then undo by key brings it back, and a tie by key replaces it.
    second_left = page.inner_text("#left pre")
    with page.expect_navigation():
        page.click("#choose-b")
    assert len(store.comparisons()) == 2
    press(page, "u")
    assert page.inner_text("#left pre") == second_left and len(store.comparisons()) == 1
    press(page, "3")
    assert [c.choice for c in store.comparisons()] == [first.choice, "tie"]

    # Compare 3: skipped by key; the queue is then empty.
    press(page, "s")
    assert "Nothing left to compare" in page.inner_text("main")
    assert len(store.comparisons()) == 2

    # Rank: drag the last answer to the top, then select the second and move it down by keys.
    page.goto(f"{base}/rank")
    before = shown_ids(page, "#ranking li")
    items = page.locator("#ranking li")
    items.nth(2).drag_to(items.nth(0), target_position={"x": 20, "y": 3})
    assert shown_ids(page, "#ranking li") == [before[2], before[0], before[1]]
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Shift+ArrowDown")
    expected = [before[2], before[1], before[0]]
    assert shown_ids(page, "#ranking li") == expected
    press(page, "Enter")
    assert list(store.rankings()[-1].response_ids) == expected

    # Rate: a key for the first answer, a click for the next.
    page.goto(f"{base}/rate")
    rated_text = page.inner_text("#answer-text")
    assert page.inner_text("#rubric-name") == "helpful"
    press(page, "6")
    with page.expect_navigation():
        page.click(".score[data-value='2']")
    ratings = store.ratings()
    assert [r.value for r in ratings] == [6.0, 2.0] and store.response(
        ratings[0].response_id
    ).text == rated_text

    # Critique: keys to reach each box, typed text (with HTML), Ctrl+Enter saves from inside the box.
    page.goto(f"{base}/critique")
    page.keyboard.press("c")
    page.keyboard.type("It adds <script>alert(1)</script> nothing")
    page.keyboard.press("Escape")
    page.keyboard.press("w")
    page.keyboard.press("Control+a")
    page.keyboard.type("2 + 2 = 4.")
    press(page, "Control+Enter")
    critique = store.critiques()[-1]
    assert (critique.critique, critique.revision) == (
        "It adds <script>alert(1)</script> nothing",
        "2 + 2 = 4.",
    )

    # Undo from another task's page takes back the critique; its page shows the item again.
    press(page, "u")
    assert store.critiques() == [] and page.url.startswith(f"{base}/critique")

    # A multi-turn prompt is shown as a transcript, one block per message, its HTML as text.
    page.goto(f"{base}/transcript/{app['chat']}")
    assert page.locator(".turn").count() == 2 and f"hi {TITLE_SCRIPT}" in page.inner_text(".role-user")
    assert page.title() != "pwned" and seen == {"errors": [], "outside": []}
    page.close()

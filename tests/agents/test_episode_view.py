"""The annotation app's episode view in a real browser (Debian's chromium): a person reads an agents'
episode turn by turn and rates a turn against its speaker's mission; the rating lands in the database
under the rubric `mission:NAME`, counts in the bureaucracy's adherence, and shows on the episode page."""

from __future__ import annotations

from steering.agents import Bureaucracy, load_situations
from steering.feedback.app import create_app, serve_in_thread

MISSION = "I check facts <b>carefully</b>."


def _pool(name: str) -> tuple[list[str], list[str]]:
    train = [s for s in load_situations() if s.split == "train"]
    return [s.text for s in train if name in s.scopes], [s.text for s in train if name not in s.scopes]


def test_a_person_reads_an_episode_and_rates_a_turn(tmp_path, tiny, browser):
    office = Bureaucracy.init(tmp_path / "agents", model="tiny-random", loaded=tiny)
    office.add(
        "fact_checker", MISSION, references=_pool("fact_checker")[0], outsiders=_pool("fact_checker")[1]
    )
    office.add("tutor", "I explain patiently.", references=_pool("tutor")[0], outsiders=_pool("tutor")[1])
    situation = "Is it true the heart has <i>four</i> chambers?"
    office.episodes([situation], participants=[["fact_checker", "tutor"]], max_turns=2, max_new_tokens=4,
                    reply_tokens=6)  # fmt: skip
    with office.store() as store, serve_in_thread(create_app(store)) as base:
        items = store.items("rate")
        assert sorted(i.rubric for i in items) == ["mission:fact_checker"] * 2 + ["mission:tutor"]
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{base}/episodes")
        assert page.inner_text("#episodes tbody td") == situation  # HTML in a situation stays text
        page.click("text=read")
        turns = page.locator("#turns li")
        assert turns.count() == 3
        assert [turns.nth(i).get_attribute("data-agent") for i in range(3)] == [
            "fact_checker",
            "tutor",
            "fact_checker",
        ]
        assert "the reply" in turns.nth(2).inner_text() and MISSION in turns.nth(0).inner_text()
        assert "not rated" in turns.nth(1).inner_text()
        # Rate the tutor's turn: its link opens the rate page on the speaker's mission.
        # Wait for the page's load event: its keys work once the deferred app.js has run, and an element
        # being there says nothing of that.
        with page.expect_navigation():
            turns.nth(1).locator("a.rate-turn").click()
        assert page.inner_text("#rubric-name") == "mission:tutor"
        with page.expect_navigation():
            page.keyboard.press("6")
        page.go_back()
        page.goto(page.url.split("/rate")[0] + "/episodes")
        page.click("text=read")
        assert "adherence: 6.00 (1 rating)" in page.locator("#turns li").nth(1).inner_text()
        assert not errors
        ratings = store.ratings(rubric="mission:tutor")
        assert [r.value for r in ratings] == [6.0]
    assert office.adherence()["tutor"] == {"turns": 1, "rated": 1, "adherence": 6.0, "cue_rate": None}
    assert office.adherence()["fact_checker"]["rated"] == 0

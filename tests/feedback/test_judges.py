"""AI judges: the `Judge` contract on every judge, exact label probabilities, both orders, the store, rewards."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from steer_runs import steer_process

from steering.controls import Adapter, classify
from steering.errors import InvalidArgument
from steering.feedback import FeedbackStore
from steering.feedback.constitution import Constitution, Example, Principle
from steering.feedback.judges import (
    Judge,
    ModelJudge,
    Pair,
    PairwiseJudgment,
    annotator_kind,
    exact_answer_judge,
    judge_store,
    longer_answer_judge,
    pairwise_reward,
    pairwise_text,
    rating_reward,
    rating_text,
    regex_judge,
    vader_judge,
)
from steering.rewards import checked_rewards

CORRECT = Principle("correct", "The answer states the correct answer to the question.")
PAIRS = [
    Pair("What is 2 + 2?", "4", "5"),
    Pair("What is the capital of France?", "Paris is the capital.", "I love rainy days"),
    Pair("Say something.", "same words", "same words"),
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)
ANSWERS = {
    "What is 2 + 2?": ["4", "four"],
    "What is the capital of France?": ["Paris"],
    "Say something.": ["x"],
}


def programmatic_judges() -> list[Judge]:
    return [vader_judge(), regex_judge(r"\d"), exact_answer_judge(ANSWERS), longer_answer_judge()]


@pytest.fixture(scope="module")
def chat_tiny():
    """The tiny model with a chat template of its own (it ships without one)."""
    from steering.models import load_model

    model = load_model("tiny-random", dtype="float32")
    model.tokenizer.chat_template = CHAT_TEMPLATE
    return model


def every_judge(tiny, chat_tiny) -> list[Judge]:
    return [ModelJudge(tiny), ModelJudge(chat_tiny, batch_size=2), *programmatic_judges()]


# ---------------------------------------------------------------------------------------------- contract


def test_every_judge_follows_the_contract(tiny, chat_tiny):
    """The conformance checks every judge runs: shapes, ranges, both orders, the empty batch."""
    for judge in every_judge(tiny, chat_tiny):
        assert isinstance(judge, Judge), judge
        judgments = judge.pairwise(PAIRS, CORRECT)
        assert len(judgments) == len(PAIRS)
        for judgment in judgments:
            assert 0.0 <= judgment.p_a <= 1.0
            assert judgment.p_a == pytest.approx(sum(judgment.p_a_by_order) / 2)
            assert 0.0 < judgment.label_mass <= 1.0 + 1e-9
            assert judgment.choice in ("a", "b", "tie")
        # Identical answers: both orders are the same question with the letters swapped, so P(A ≻ B) = ½.
        assert judgments[2].p_a == pytest.approx(0.5, abs=1e-9), judge.name
        ratings = judge.rate([p.prompt for p in PAIRS], [p.a for p in PAIRS], CORRECT)
        assert len(ratings) == len(PAIRS)
        for rating in ratings:
            assert 1.0 <= rating.value <= 7.0
            assert sum(rating.probs) == pytest.approx(1.0)
            assert rating.value == pytest.approx(
                sum(k * p for k, p in zip(range(1, 8), rating.probs, strict=True))
            )
        critiques = judge.critique(["What is 2 + 2?"], ["5"], CORRECT, seed=1)
        assert len(critiques) == 1 and isinstance(critiques[0], str)
        assert judge.pairwise([], CORRECT) == [] and judge.rate([], [], CORRECT) == []
        assert judge.critique([], [], CORRECT) == []
        with pytest.raises(InvalidArgument, match="one answer per prompt"):
            judge.rate(["a", "b"], ["x"], CORRECT)


def test_swapping_the_answers_gives_the_complement(tiny, chat_tiny):
    for judge in every_judge(tiny, chat_tiny):
        forward = judge.pairwise(PAIRS[:2], CORRECT)
        backward = judge.pairwise([Pair(p.prompt, p.b, p.a) for p in PAIRS[:2]], CORRECT)
        for f, b in zip(forward, backward, strict=True):
            assert f.p_a == pytest.approx(1.0 - b.p_a, abs=1e-9)
            assert f.p_a_by_order == pytest.approx(
                (1.0 - b.p_a_by_order[1], 1.0 - b.p_a_by_order[0]), abs=1e-9
            )


def test_judgment_properties_by_hand():
    judgment = PairwiseJudgment(p_a=0.55, p_a_by_order=(0.9, 0.2))
    assert judgment.choice == "a" and not judgment.consistent
    assert judgment.p_first == pytest.approx((0.9 + 0.8) / 2)
    assert PairwiseJudgment(0.3, (0.4, 0.2)).consistent and PairwiseJudgment(0.5, (0.5, 0.5)).choice == "tie"


# ---------------------------------------------------------------------------------------------- model judges


@pytest.mark.parametrize("chat", [False, True])
def test_model_judge_probabilities_are_classify_s(chat, tiny, chat_tiny):
    """Batched single-token reads equal `classify`'s exact per-label scoring, in both orders."""
    model = chat_tiny if chat else tiny
    judge = ModelJudge(model, batch_size=3)
    labels = ["A", "B"] if chat else [" A", " B"]
    judgments = judge.pairwise(PAIRS, CORRECT)
    for pair, judgment in zip(PAIRS, judgments, strict=True):
        shown_a = classify(
            model, judge.render(pairwise_text(CORRECT, pair.prompt, pair.a, pair.b), "pairwise"), labels
        )
        shown_b = classify(
            model, judge.render(pairwise_text(CORRECT, pair.prompt, pair.b, pair.a), "pairwise"), labels
        )
        assert judgment.p_a_by_order[0] == pytest.approx(float(shown_a.probs[0]), abs=1e-5)
        assert judgment.p_a_by_order[1] == pytest.approx(float(shown_b.probs[1]), abs=1e-5)
        mass = (shown_a.log_scores.exp().sum() + shown_b.log_scores.exp().sum()) / 2
        assert judgment.label_mass == pytest.approx(float(mass), rel=1e-4)
    digits = [str(k) for k in range(1, 8)] if chat else [f" {k}" for k in range(1, 8)]
    rating = judge.rate(["What is 2 + 2?"], ["4"], CORRECT)[0]
    exact = classify(model, judge.render(rating_text(CORRECT, "What is 2 + 2?", "4"), "rating"), digits)
    assert rating.probs == pytest.approx([float(p) for p in exact.probs], abs=1e-5)
    assert rating.label_mass == pytest.approx(float(exact.log_scores.exp().sum()), rel=1e-4)


def test_multi_token_labels_take_the_exact_path(tiny):
    """Labels of several tokens are scored whole (the logprobs path), matching classify."""
    judge = ModelJudge(tiny)
    prompt = judge.render("Pick one.", "pairwise")
    labels = [" Answer one", " Answer two"]
    probs, mass = judge.label_probs([prompt, prompt], labels)
    exact = classify(tiny, prompt, labels)
    assert probs[0].tolist() == pytest.approx(exact.probs.tolist(), abs=1e-6)
    assert float(mass[1]) == pytest.approx(float(exact.log_scores.exp().sum()), rel=1e-5)


def test_batch_size_does_not_change_the_numbers(tiny):
    one = ModelJudge(tiny, batch_size=1).pairwise(PAIRS, CORRECT)
    many = ModelJudge(tiny, batch_size=8).pairwise(PAIRS, CORRECT)
    for a, b in zip(one, many, strict=True):
        assert a.p_a_by_order == pytest.approx(b.p_a_by_order, abs=1e-5)


def test_chat_and_base_prompts_differ(tiny, chat_tiny):
    assert ModelJudge(chat_tiny).chat and not ModelJudge(tiny).chat
    assert ModelJudge(chat_tiny).render("q", "pairwise").startswith("<user>q")
    assert ModelJudge(tiny).render("q", "pairwise").endswith("The better answer is Answer")
    with_examples = Principle("p", "Be right.", (Example("Q1", "good", "bad"),))
    assert "A better answer: good" in pairwise_text(with_examples, "Q", "x", "y")


def test_critiques_are_sampled_reproducibly(tiny):
    judge = ModelJudge(tiny, critique_tokens=6)
    first = judge.critique(["What is 2 + 2?"] * 2, ["5", "5"], CORRECT, seed=3)
    assert first == judge.critique(["What is 2 + 2?"] * 2, ["5", "5"], CORRECT, seed=3)
    assert all(isinstance(text, str) for text in first)


def test_an_adapter_changes_the_judge_and_is_off_afterwards(tiny, tmp_path: Path):
    from steering.train.adapters import add_lora, remove_adapter, save_adapter

    params = add_lora(tiny, "judge", rank=4, alpha=8, dropout=0.0)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for param in params:
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    save_adapter(tiny, "judge", tmp_path / "adapter")
    remove_adapter(tiny, "judge")
    plain = ModelJudge(tiny).pairwise(PAIRS[:1], CORRECT)[0]
    adapted_judge = ModelJudge(tiny, adapter=Adapter(tmp_path / "adapter"))
    adapted = adapted_judge.pairwise(PAIRS[:1], CORRECT)[0]
    assert adapted.p_a_by_order != pytest.approx(plain.p_a_by_order, abs=1e-4)
    assert adapted_judge.name.startswith("tiny-random+adapter_")
    again = ModelJudge(tiny).pairwise(PAIRS[:1], CORRECT)[0]  # the adapter is off outside the judge
    assert again.p_a_by_order == pytest.approx(plain.p_a_by_order, abs=1e-6)


def test_bad_settings_are_refused(tiny):
    with pytest.raises(InvalidArgument, match="batch_size"):
        ModelJudge(tiny, batch_size=0)
    with pytest.raises(InvalidArgument, match="temperature"):
        ModelJudge(tiny, temperature=0.0)


# ---------------------------------------------------------------------------------------------- programmatic


def test_programmatic_judges_judge_what_they_say():
    vader = vader_judge().pairwise(
        [Pair("q", "What a wonderful, happy day!", "This is awful and sad.")], CORRECT
    )[0]
    assert (
        vader.choice == "a" and vader.p_a > 0.8 and vader.consistent and vader.p_first == pytest.approx(0.5)
    )
    assert (
        vader_judge(prefer="negative").pairwise([Pair("q", "I love it", "I hate it")], CORRECT)[0].choice
        == "b"
    )
    exact = exact_answer_judge(ANSWERS).pairwise(PAIRS[:2], CORRECT)
    assert [j.p_a for j in exact] == [1.0, 1.0]
    assert (
        exact_answer_judge(ANSWERS).rate(["What is 2 + 2?"] * 2, ["Four.\nFive?", "5\n4"], CORRECT)[0].value
        == 7.0
    )
    assert exact_answer_judge(ANSWERS).rate(["What is 2 + 2?"], ["5\n4"], CORRECT)[0].value == 1.0
    assert regex_judge(r"^\w+$").pairwise([Pair("q", "one", "two words")], CORRECT)[0].choice == "a"
    longer = longer_answer_judge().pairwise([Pair("q", "short", "a much longer answer")], CORRECT)[0]
    assert longer.choice == "b"
    rating = vader_judge().rate(["q"], ["neutral"], CORRECT)[0]
    assert rating.value == pytest.approx(4.0) and rating.probs[3] == pytest.approx(1.0)


def test_programmatic_judges_refuse_bad_input():
    with pytest.raises(InvalidArgument, match="no accepted answers"):
        exact_answer_judge(ANSWERS).rate(["Unknown question?"], ["x"], CORRECT)
    with pytest.raises(InvalidArgument, match="not a valid regular expression"):
        regex_judge("(")
    with pytest.raises(InvalidArgument, match=r"(?i)prefer must be"):
        vader_judge(prefer="neutral")


# ---------------------------------------------------------------------------------------------- rewards


def test_judges_as_rewards_pass_the_reward_checks(tiny):
    prompts = ["What is 2 + 2?", "What is the capital of France?"]
    completions = ["4", "Berlin"]
    for judge in [ModelJudge(tiny), *programmatic_judges()]:
        ratings = checked_rewards(rating_reward(judge, CORRECT), prompts, completions, name=judge.name)
        assert all(1.0 <= r <= 7.0 for r in ratings)
        references = {"What is 2 + 2?": "5", "What is the capital of France?": "Paris"}
        wins = checked_rewards(
            pairwise_reward(judge, CORRECT, references), prompts, completions, name=judge.name
        )
        assert all(0.0 <= w <= 1.0 for w in wins)
    exact = exact_answer_judge(ANSWERS)
    assert checked_rewards(rating_reward(exact, CORRECT), prompts, completions, name="exact") == [7.0, 1.0]
    assert checked_rewards(pairwise_reward(exact, CORRECT, references), prompts, completions, name="x") == [
        1.0,
        0.0,
    ]
    with pytest.raises(InvalidArgument, match="no reference answer"):
        pairwise_reward(exact, CORRECT, {})(["What is 2 + 2?"], ["4"])


# ---------------------------------------------------------------------------------------------- the store


def filled_store(path: Path) -> FeedbackStore:
    store = FeedbackStore.open(path)
    first = store.add_prompt("What is 2 + 2?")
    for text in ("4", "5", "It is 4, I think."):
        store.add_response(first, text, model="test")
    second = store.add_prompt("What is the capital of France?")
    for text in ("Paris", "Lyon"):
        store.add_response(second, text, model="test")
    return store


def test_judgments_go_into_the_store_as_answers(tmp_path, tiny):
    constitution = Constitution((CORRECT, Principle("short", "The answer is short.")), name="qa")
    judge = ModelJudge(tiny)
    with filled_store(tmp_path / "f.db") as store:
        summary = judge_store(store, judge, constitution, kind="pairwise")
        assert summary.judged == 2 * (3 + 1)  # two principles × (3 pairs + 1 pair)
        comparisons = store.comparisons()
        assert len(comparisons) == 8
        kinds = {store.annotator(c.annotator_id).kind for c in comparisons}
        assert kinds == {annotator_kind(judge, constitution)} == {f"judge:tiny-random:{constitution.digest}"}
        names = {store.annotator(c.annotator_id).name for c in comparisons}
        assert names == {
            f"judge:tiny-random:{constitution.digest}/correct",
            f"judge:tiny-random:{constitution.digest}/short",
        }
        responses = {r.id: r for r in store.responses()}
        prompts = {p.id: p.text for p in store.prompts()}
        check = comparisons[0]
        fresh = judge.pairwise(
            [
                Pair(
                    prompts[check.prompt_id],
                    responses[check.response_a].text,
                    responses[check.response_b].text,
                )
            ],
            CORRECT,
        )[0]
        assert check.soft_label == pytest.approx(fresh.p_a, abs=1e-6) and check.choice == fresh.choice
        assert "P(a≻b)" in (check.reason or "")
        assert 0 <= summary.consistent <= 8 and 0 < summary.mean(summary.p_first) < 1
        again = judge_store(store, judge, constitution, kind="pairwise")
        assert again.judged == 0 and again.already == 8 and len(store.comparisons()) == 8

        rated = judge_store(store, judge, constitution, kind="rating", principles=[CORRECT], limit=3)
        assert rated.judged == 3
        ratings = store.ratings(rubric="correct")
        assert len(ratings) == 3 and all(1.0 <= r.value <= 7.0 for r in ratings)
        assert judge_store(store, judge, constitution, kind="rating", principles=[CORRECT]).judged == 2
        critiqued = judge_store(
            store, exact_answer_judge(ANSWERS), constitution, kind="critique", principles=[CORRECT]
        )
        assert critiqued.judged == 5 and len(store.critiques()) == 5
        with pytest.raises(InvalidArgument, match=r"(?i)unknown judge kind"):
            judge_store(store, judge, constitution, kind="ranking")


def test_soft_labels_of_a_programmatic_judge_are_exact(tmp_path):
    constitution = Constitution((CORRECT,))
    with filled_store(tmp_path / "f.db") as store:
        judge_store(store, exact_answer_judge(ANSWERS), constitution, kind="pairwise")
        texts = {r.id: r.text for r in store.responses()}
        labels = {(texts[c.response_a], texts[c.response_b]): c.soft_label for c in store.comparisons()}
    assert labels == {
        ("4", "5"): 1.0,
        ("4", "It is 4, I think."): 0.5,
        ("5", "It is 4, I think."): 0.0,
        ("Paris", "Lyon"): 1.0,
    }


# ---------------------------------------------------------------------------------------------- real judges


@pytest.mark.integration
def test_smollm2_judge_puts_its_mass_on_the_labels(smollm):
    """With its chat template the instruct model answers with a letter / a digit: the labels carry real mass."""
    judge = ModelJudge(smollm)
    assert judge.chat
    judgments = judge.pairwise(PAIRS, CORRECT)
    assert all(j.label_mass > 0.05 for j in judgments)
    assert judgments[2].p_a == pytest.approx(0.5, abs=1e-9)
    ratings = judge.rate(["What is 2 + 2?"], ["4"], CORRECT)
    assert ratings[0].label_mass > 0.01 and math.isfinite(ratings[0].value)
    assert judge.critique(["What is 2 + 2?"], ["5"], CORRECT)[0].strip()


@pytest.mark.integration
def test_gemma_base_judge_reads_a_prompt(gemma32):
    judge = ModelJudge(gemma32)
    assert not judge.chat
    judgments = judge.pairwise(PAIRS[:1], CORRECT)
    assert judgments[0].label_mass > 0.05


# ---------------------------------------------------------------------------------------------- steer judge


steer = steer_process


def test_steer_judge_writes_judgments_that_export_and_continues(tmp_path):
    constitution = tmp_path / "c.toml"
    constitution.write_text('[[principles]]\nid = "positive"\ntext = "The answer is cheerful."\n')
    with FeedbackStore.open(tmp_path / "f.db") as store:
        prompt = store.add_prompt("How was your day?")
        for text in ("Wonderful, I loved it!", "Awful. I hate Mondays.", "It was a day."):
            store.add_response(prompt, text, model="test")
        prompt = store.add_prompt("How is the weather?")
        for text in ("Sunny and lovely.", "Grim and miserable."):
            store.add_response(prompt, text, model="test")
    args = ("judge", "--db", str(tmp_path / "f.db"), "--constitution", str(constitution))
    result = steer(*args, "--model", "vader")
    assert result.returncode == 0, result.stderr
    assert "4 new pairwise judgments by judge:vader-positive:" in result.stderr
    assert "swap consistency 1.00" in result.stderr and "P = 0.50" in result.stderr
    assert "0 new pairwise judgments" in steer(*args, "--model", "vader").stderr  # nothing left to do
    result = steer(*args, "--model", "tiny-random", "--kind", "rating", "--limit", "2")
    assert result.returncode == 0, result.stderr
    assert "2 new rating judgments by judge:tiny-random:" in result.stderr
    with FeedbackStore.open(tmp_path / "f.db") as store:
        assert len(store.comparisons()) == 4 and len(store.ratings(rubric="positive")) == 2
        kinds = {a.kind.split(":")[1] for a in store.annotators()}
    assert kinds == {"vader-positive", "tiny-random"}
    out = tmp_path / "prefs.jsonl"
    exported = steer("feedback", "export", "--db", str(tmp_path / "f.db"), "--to", "preferences",
                     "--annotators", "judge", "--out", str(out))  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    chosen = {(row["chosen"], row["rejected"]) for row in rows}
    assert chosen == {
        ("Wonderful, I loved it!", "Awful. I hate Mondays."),
        ("Wonderful, I loved it!", "It was a day."),
        ("It was a day.", "Awful. I hate Mondays."),
        ("Sunny and lovely.", "Grim and miserable."),
    }


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("--model", "no-such-model"), "no-such-model"),
        (("--kind", "ranking"), "Unknown --kind 'ranking'"),
        (("--principle", "postive"), 'Did you mean "positive"'),
        (("--model", "vader", "--adapter", "x"), "takes no adapter"),
        (("--model", "tiny-random", "--template", "chat"), "has no chat template"),
    ],
)
def test_steer_judge_bad_arguments_fail_cleanly(tmp_path, extra, fragment):
    constitution = tmp_path / "c.toml"
    constitution.write_text('[[principles]]\nid = "positive"\ntext = "The answer is cheerful."\n')
    filled_store(tmp_path / "f.db").close()
    result = steer("judge", "--db", str(tmp_path / "f.db"), "--constitution", str(constitution), *extra)
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_steer_judge_bad_files_fail_cleanly(tmp_path):
    good = tmp_path / "c.toml"
    good.write_text('[[principles]]\nid = "positive"\ntext = "The answer is cheerful."\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('[[principles]]\nid = "x"\ntxt = "typo"\n')
    filled_store(tmp_path / "f.db").close()
    FeedbackStore.open(tmp_path / "empty.db").close()
    cases = [
        (tmp_path / "missing.db", good, "does not exist"),
        (tmp_path / "f.db", bad, "unknown key 'txt'"),
        (tmp_path / "f.db", tmp_path / "none.toml", "does not exist"),
        (tmp_path / "empty.db", good, "has no responses to judge"),
    ]
    for db, constitution, fragment in cases:
        result = steer("judge", "--db", str(db), "--constitution", str(constitution), "--model", "vader")
        assert result.returncode == 2, result.stdout + result.stderr
        assert fragment in result.stderr and "Traceback" not in result.stderr, result.stderr

"""Probes: strict batteries, shifts equal to log-probabilities computed independently, exact zeros for the
base against itself, nonzero shifts and KL for a trained adapter, and the shipped batteries."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from steering.controls import Adapter, Temperature
from steering.decode import generate
from steering.errors import InputFormatError, InvalidArgument
from steering.eval import load_battery, probe, read_battery
from steering.eval.probe import BATTERIES, Battery, Estimate, PromptProbe, TextProbe
from steering.models import LanguageModel, load_model
from steering.train import SFTConfig, train_sft

HAPPY = [
    "Everyone smiled and helped each other.",
    "The friends laughed together all day.",
    "What a wonderful, happy morning it was.",
    "She thanked him warmly for his kindness.",
]


def train_happy_adapter(
    tmp_path: Path, model: LanguageModel, *, copies: int = 4, **overrides: object
) -> Path:
    """A LoRA adapter trained in seconds on a few cheerful sentences (text-only demonstrations); the
    model is handed back as the base."""
    data = tmp_path / "happy.jsonl"
    data.write_text("".join(json.dumps({"text": text}) + "\n" for text in HAPPY * copies))
    values: dict[str, object] = {
        "data": str(data), "model": model.name, "out": str(tmp_path / "happy"), "lora_rank": 4,
        "learning_rate": 5e-3, "warmup_steps": 1, "epochs": 2, "batch_size": 4, "eval_fraction": 0.0,
        "seed": 0,
    }  # fmt: skip
    config = SFTConfig(**{**values, **overrides})  # type: ignore[arg-type]
    return train_sft(config, model=model).adapter


@pytest.fixture(scope="module")
def happy_adapter(tmp_path_factory) -> Path:
    return train_happy_adapter(tmp_path_factory.mktemp("probe"), load_model("tiny-random", dtype="float32"))


SMALL = Battery(
    name="small",
    texts=[
        TextProbe("helping", "The neighbours carried her bags upstairs."),
        TextProbe("helping", "Strangers shared their food.", context="After the flood,"),
        TextProbe("distrust", "Nobody believed a word the mayor said."),
        TextProbe("distrust", "He counted his change twice.", context="At the market"),
    ],
    prompts=[PromptProbe("recipe", "Ingredients for bread:"), PromptProbe("code", "# Parse the file and")],
)


def _independent_logprob(model, context: str, text: str) -> float:
    """log p(text | context) from one plain forward over the concatenated ids (not `model.logprobs`)."""
    context_ids = model.encode(context)
    text_ids = model.encode_continuation(text)
    ids = torch.tensor([context_ids + text_ids])
    with torch.no_grad():
        logits = model.module(input_ids=ids).logits[0].float()
    logp = logits.log_softmax(-1)
    # The logit at position t predicts token t + 1: the text's tokens are predicted from len(context) − 1 on.
    start = len(context_ids) - 1
    return sum(float(logp[start + i, token]) for i, token in enumerate(text_ids))


def test_the_base_against_itself_is_exactly_zero(tiny):
    result = probe(tiny, [], SMALL, samples=3, max_new_tokens=5, seed=1)
    assert [t.shift for t in result.texts] == [0.0] * 4
    assert all(kl == 0.0 for p in result.prompts for kl in p.kls)
    assert [len(p.kls) for p in result.prompts] == [3, 3]
    assert result.shift("helping").mean == 0.0 and result.kl("recipe").mean == 0.0
    assert result.most_moved(5) == ([], [])  # nothing moved: no text is listed either way


def test_shift_is_the_logprob_difference_computed_independently(tiny, happy_adapter):
    adapter = Adapter(happy_adapter)
    result = probe(tiny, [adapter], SMALL, samples=2, max_new_tokens=6, seed=0)
    for item, scored in zip(SMALL.texts, result.texts, strict=True):
        base = _independent_logprob(tiny, item.context, item.text)
        with adapter.attached(tiny):
            tuned = _independent_logprob(tiny, item.context, item.text)
        assert scored.logp_base == pytest.approx(base, abs=1e-4)
        assert scored.logp_policy == pytest.approx(tuned, abs=1e-4)
        assert scored.shift == pytest.approx(tuned - base, abs=1e-4)
        assert scored.tokens == len(tiny.encode_continuation(item.text))
        assert scored.shift_per_token == pytest.approx((tuned - base) / scored.tokens, abs=1e-5)
    # The prompts' KL: the same seed's samples, their log q (adapter on) and log p_base (off) rescored.
    drawn = generate(tiny, [p.prompt for p in SMALL.prompts], controls=[adapter], n=2, max_new_tokens=6)
    with adapter.attached(tiny):
        logq = tiny.logprobs([s.prompt for s in drawn], [s.token_ids for s in drawn])
    logp = tiny.logprobs([s.prompt for s in drawn], [s.token_ids for s in drawn])
    expected = [float((q - p).sum()) for q, p in zip(logq, logp, strict=True)]
    assert [kl for p in result.prompts for kl in p.kls] == pytest.approx(expected, abs=1e-4)
    assert result.kl("recipe").mean == pytest.approx(sum(expected[:2]) / 2, abs=1e-4)


def test_a_trained_adapter_moves_texts_and_prompts_and_is_detached_after(tiny, happy_adapter):
    result = probe(tiny, [Adapter(happy_adapter)], SMALL, samples=4, max_new_tokens=8)
    assert all(abs(t.shift) > 1e-3 for t in result.texts)
    assert result.kl("recipe").mean > 0 and result.kl("code").mean > 0  # 4 samples each; KL ≥ 0 in truth
    up, down = result.most_moved(2)
    assert len(up) + len(down) >= 2 and all(t.shift > 0 for t in up) and all(t.shift < 0 for t in down)
    ranked = sorted(result.texts, key=lambda t: t.shift)
    assert (up[:1] or down[:1])[0] in (ranked[0], ranked[-1])
    # The adapter is off again: the base against itself is exact zero on the same model object.
    again = probe(tiny, [], SMALL, samples=1, max_new_tokens=3)
    assert all(t.shift == 0.0 for t in again.texts)


def test_summaries_are_json_and_markdown(tiny, happy_adapter):
    result = probe(tiny, [Adapter(happy_adapter)], SMALL, samples=2, max_new_tokens=4)
    data = json.loads(json.dumps(result.as_dict(top=1), allow_nan=False))
    helping = data["text_categories"]["helping"]["shift"]
    shifts = [t.shift for t in result.texts[:2]]
    assert helping["n"] == 2 and helping["mean"] == pytest.approx(sum(shifts) / 2)
    assert helping["se"] == pytest.approx(abs(shifts[0] - shifts[1]) / 2)  # s/√n for two values
    assert data["prompt_categories"]["code"]["kl"]["n"] == 2
    assert len(data["most_raised"]) <= 1 and len(data["texts"]) == 4
    table = result.as_markdown(top=1)
    assert "| helping | 2 |" in table and "| recipe | 2 |" in table and "Adapter(" in table


def test_estimate_mean_and_standard_error_by_hand():
    estimate = Estimate.of([1.0, 2.0, 3.0])  # s = 1, se = 1/√3
    assert estimate.mean == 2.0 and estimate.se == pytest.approx(1 / math.sqrt(3)) and estimate.n == 3
    assert Estimate.of([4.0]).se is None  # one value: unknown, never 0


def test_texts_are_not_scored_under_logit_controls(tiny):
    with pytest.raises(InvalidArgument, match="not under logit controls"):
        probe(tiny, [Temperature(0.7)], SMALL)
    prompts_only = Battery("p", texts=[], prompts=SMALL.prompts)
    result = probe(tiny, [Temperature(0.7)], prompts_only, samples=2, max_new_tokens=3)
    assert all(kl != 0.0 for p in result.prompts for kl in p.kls)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"category": "a", "text": "x", "contxt": "y"}', "unknown key 'contxt'. Did you mean \"context\""),
        ('{"category": "a", "prompt": "x", "text": "y"}', "unknown key 'prompt'"),
        ('{"text": "x"}', "field 'category' is missing"),
        ('{"category": "a", "text": ""}', "field 'text' is empty"),
        ('{"category": 3, "prompt": "p"}', "field 'category' must be a string"),
        ('{"category": "a"}', "needs a 'text'"),
        ('["a", "b"]', "must be a JSON object"),
        ('{"category": "a", "text": "x"', "not valid JSON"),
    ],
)
def test_bad_battery_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "b.jsonl"
    path.write_text('{"category": "ok", "text": "fine"}\n' + line + "\n")
    with pytest.raises(InputFormatError, match=r"b\.jsonl:2: ") as raised:
        read_battery(path)
    assert message in str(raised.value)


def test_empty_or_unknown_batteries_are_refused(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(InputFormatError, match="has no items"):
        read_battery(empty)
    with pytest.raises(InputFormatError, match='Did you mean "sentiment"'):
        load_battery("sentimnt")
    with pytest.raises(InputFormatError, match="does not exist"):
        load_battery(tmp_path / "missing.jsonl")


CATEGORIES = {
    "sentiment": (
        {"helping", "distrust", "cheerful-bad-news", "sad-good-news", "neutral-facts"},
        {"recipe", "news-headline", "code-comment"},
    ),
    "instruct": (
        {"refuses-harmless", "answers-then-stops", "rambles-into-questions", "follows-format"},
        {"poem", "email", "story"},
    ),
    "constitution": (
        {"refuses-harmless", "helpful-benign", "harmful-compliance", "preachy-over-refusal"},
        {"out-of-domain"},
    ),
}


@pytest.mark.parametrize("name", BATTERIES)
def test_shipped_batteries_have_the_categories_with_eight_items_each(name):
    battery = load_battery(name)
    texts = [t.category for t in battery.texts]
    prompts = [p.category for p in battery.prompts]
    wanted_texts, wanted_prompts = CATEGORIES[name]
    assert wanted_texts <= set(texts) and wanted_prompts <= set(prompts)
    assert all(texts.count(c) >= 8 for c in set(texts)) and all(prompts.count(c) >= 8 for c in set(prompts))
    assert len({(t.context, t.text) for t in battery.texts}) == len(battery.texts)  # no duplicates


@pytest.mark.slow  # the recipe --quick runs (tests/recipes/test_recipes_quick.py) cover it in the default run
def test_gemma_probe_of_a_quick_adapter_on_the_sentiment_battery(tmp_path, gemma32):
    """gemma-270m: a few SFT steps on cheerful sentences, probed on the sentiment battery (2 samples, 8 tokens)."""
    trained = train_happy_adapter(tmp_path, gemma32, copies=2, learning_rate=2e-3, epochs=1, max_length=32)
    adapter = Adapter(trained)  # 2 steps of 4 sentences
    battery = load_battery("sentiment")
    result = probe(gemma32, [adapter], battery, samples=2, max_new_tokens=8)
    assert [t.category for t in result.texts] == [t.category for t in battery.texts]
    assert all(math.isfinite(t.shift) and t.shift != 0.0 for t in result.texts)
    assert all(len(p.kls) == 2 and all(math.isfinite(k) for k in p.kls) for p in result.prompts)
    first = battery.texts[0]
    with adapter.attached(gemma32):
        tuned = _independent_logprob(gemma32, first.context, first.text)
    base = _independent_logprob(gemma32, first.context, first.text)
    assert result.texts[0].shift == pytest.approx(tuned - base, abs=1e-3)
    json.dumps(result.as_dict(), allow_nan=False)
    assert "| cheerful-bad-news | 8 |" in result.as_markdown()

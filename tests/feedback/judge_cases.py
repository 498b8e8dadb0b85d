"""What the judge tests share: a principle, pairs with a known better answer, a chat template for the tiny model."""

from __future__ import annotations

from pathlib import Path

from steering.feedback import FeedbackStore
from steering.feedback.constitution import Principle
from steering.feedback.judges import (
    Judge,
    Pair,
    exact_answer_judge,
    longer_answer_judge,
    regex_judge,
    vader_judge,
)
from steering.models.language_model import LanguageModel

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


def load_chat_tiny() -> LanguageModel:
    """The tiny model with a chat template of its own (it ships without one)."""
    from steering.models import load_model

    model = load_model("tiny-random", dtype="float32")
    model.tokenizer.chat_template = CHAT_TEMPLATE
    return model


def filled_store(path: Path) -> FeedbackStore:
    """A store of two prompts with 3 and 2 responses: 3 + 1 pairs, 5 responses to rate."""
    store = FeedbackStore.open(path)
    first = store.add_prompt("What is 2 + 2?")
    for text in ("4", "5", "It is 4, I think."):
        store.add_response(first, text, model="test")
    second = store.add_prompt("What is the capital of France?")
    for text in ("Paris", "Lyon"):
        store.add_response(second, text, model="test")
    return store

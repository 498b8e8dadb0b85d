"""`steer demo`, section 2: token pools and probability tweaks, with what each costs in KL.

- Labels with `Choices`: exact label probabilities (`classify`, every token scored) next to the
  first-token shortcut, which cannot tell labels that share a first token apart.
- Positive sentiment by four means at several strengths: a prompt prefix, a bag-of-words boost and
  an activation steering vector — mean VADER score (reward) against mean KL to the base model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from steering.controls import (
    BagOfWords,
    Instruction,
    JsonSchema,
    build_steering_vector,
    classify,
    first_token_shortcut,
)
from steering.decode import generate
from steering.eval.report import Section, table_html
from steering.eval.sentiment import vader_reward
from steering.models import LanguageModel

REVIEWS = [
    "Review: I loved every minute of this film, the acting was superb.\nSentiment:",
    "Review: The plot made no sense and I walked out after an hour.\nSentiment:",
    "Review: It was fine. Nothing special, nothing terrible.\nSentiment:",
    "Review: The soundtrack was a joy and the ending made me smile.\nSentiment:",
]
LABELS = [" positive", " negative", " neutral", " mixed feelings"]
STARTS = [
    "I think the movie was",
    "Today my neighbour told me that",
    "The weather this week has been",
    "My opinion of the new restaurant is",
    "When I got home from work,",
    "The meeting this morning",
    "Our trip to the coast",
    "The book I am reading",
]
POSITIVE_EXAMPLES = [
    "I love this. It is wonderful and makes me so happy.",
    "What a beautiful, joyful day full of hope.",
    "This is great news, I am delighted and grateful.",
    "The food was delicious and the staff were kind.",
    "I feel fantastic, everything is going well.",
]
NEGATIVE_EXAMPLES = [
    "I hate this. It is awful and makes me so sad.",
    "What an ugly, miserable day full of despair.",
    "This is terrible news, I am upset and angry.",
    "The food was disgusting and the staff were rude.",
    "I feel awful, everything is going wrong.",
]
POSITIVE_WORDS = [
    "love",
    "wonderful",
    "happy",
    "great",
    "beautiful",
    "joy",
    "amazing",
    "delightful",
    "best",
    "enjoy",
]
SAMPLES_PER_START = 4
PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "maxLength": 20},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
JSON_SAMPLES = 4
NEW_TOKENS = 32


@dataclass(frozen=True)
class SentimentRow:
    technique: str
    strength: str
    reward: float
    kl: float
    example: str


def sentiment_settings(model: LanguageModel) -> list[tuple[str, str, list[object]]]:
    vector = build_steering_vector(model, positive=POSITIVE_EXAMPLES, negative=NEGATIVE_EXAMPLES, layers=[6])
    prefix = Instruction("The following text is cheerful, warm and full of positive feelings.")
    return [
        ("base model", "–", []),
        ("prompt prefix", "1 sentence", [prefix]),
        ("bag of words", "+2", [BagOfWords(POSITIVE_WORDS, 2.0)]),
        ("bag of words", "+4", [BagOfWords(POSITIVE_WORDS, 4.0)]),
        ("steering vector (layer 6)", "α=1", [vector.with_alpha(1.0)]),
        ("steering vector (layer 6)", "α=2", [vector.with_alpha(2.0)]),
    ]


def controls_work_units() -> int:
    return 6 * len(STARTS) * SAMPLES_PER_START * NEW_TOKENS + JSON_SAMPLES * 48


def run_controls_section(
    model: LanguageModel, *, seed: int = 0, progress: Callable[[int], None] | None = None
) -> ControlsOutcome:
    label_rows: list[list[object]] = []
    for review in REVIEWS:
        exact = classify(model, review, LABELS)
        shortcut = first_token_shortcut(model, review, LABELS)
        text = review.split("\n")[0].removeprefix("Review: ")
        label_rows.append([text, exact.best, *exact.probs.tolist(), *shortcut.tolist()])
    json_samples = generate(
        model,
        ["A short profile of a person, as JSON: "],
        controls=[JsonSchema(PERSON_SCHEMA)],
        n=JSON_SAMPLES,
        max_new_tokens=48,
        seed=seed,
        progress=progress,
    )
    json_rows: list[list[object]] = [[s.text, s.stop_reason, s.log_weight] for s in json_samples]
    sentiment_rows = []
    for technique, strength, controls in sentiment_settings(model):
        samples = generate(
            model,
            STARTS,
            controls=controls,
            n=SAMPLES_PER_START,
            max_new_tokens=NEW_TOKENS,
            seed=seed,
            progress=progress,
        )
        rewards = vader_reward([s.prompt for s in samples], samples.texts)
        sentiment_rows.append(
            SentimentRow(
                technique,
                strength,
                sum(rewards) / len(rewards),
                float(samples.kl.mean()),
                samples[0].prompt + samples[0].text,
            )
        )
    return ControlsOutcome(label_rows, json_rows, sentiment_rows)


@dataclass(frozen=True)
class ControlsOutcome:
    label_rows: list[list[object]]
    json_rows: list[list[object]]
    sentiment: list[SentimentRow]


def controls_sections(outcome: ControlsOutcome) -> list[Section]:
    label_rows, sentiment_rows = outcome.label_rows, outcome.sentiment
    label_columns = [
        "review",
        "best",
        *[f"P({label.strip()})" for label in LABELS],
        *[f"1st-token({label.strip()})" for label in LABELS],
    ]
    return [
        Section(
            "Token pools: labels, exactly",
            "classify scores every token of every label and normalises over the set; the first-token shortcut "
            "reads one next-token distribution, so 'mixed feelings' is judged by 'mixed' alone. `Choices` "
            "restricts sampling to the labels, and its samples carry the exact importance weights.",
            table_html(label_columns, label_rows),
        ),
        Section(
            "Structured output: a JSON schema fill",
            "JsonSchema (llguidance) restricts every step to tokens that keep the JSON valid under the schema "
            "(name ≤ 20 characters, age 0–120, city); compact JSON, no runaway whitespace. log w is the exact "
            "importance weight of the sample for p(x | x is valid).",
            table_html(["output", "stop", "log w"], outcome.json_rows),
        ),
        Section(
            "Probability tweaks: positive sentiment and what it costs",
            f"{len(STARTS)} neutral openings × {SAMPLES_PER_START} samples, {NEW_TOKENS} new tokens, temperature 1, "
            "same seed for every row. Reward = mean VADER compound score of the continuation; KL = mean "
            "Σ(log q − log p_base) against the base model on the raw opening.",
            table_html(
                ["technique", "strength", "mean VADER", "mean KL (nats)", "example"],
                [[r.technique, r.strength, r.reward, r.kl, r.example] for r in sentiment_rows],
            ),
        ),
    ]

"""`steer demo`, section 3: token pools and probability tweaks, with what each costs in KL.

- Labels with `Choices`: exact label probabilities (`classify`, every token scored) next to the
  first-token shortcut, which cannot tell labels that share a first token apart.
- A JSON schema fill, and a quote that must come word for word from a source text.
- Positive sentiment by four means at several strengths: a prompt prefix, a bag-of-words boost, an
  activation steering vector and PPLM — mean VADER score (reward) against mean KL to the base model.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from steering.controls import (
    PPLM,
    Adapter,
    BagOfWords,
    Instruction,
    JsonSchema,
    QuoteFromSource,
    build_steering_vector,
    classify,
    extract_quotes,
    first_token_shortcut,
)
from steering.decode import Samples, generate
from steering.eval.report import Section, table_html
from steering.eval.sentiment import vader_reward
from steering.models import LanguageModel, load_model
from steering.paths import atomic_write_text
from steering.recipes.demo.section import DEMO_BATCH_SIZE, DemoContext, DemoScale, Progress
from steering.train import RLConfig, train_rl

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
# PPLM's gradient steps cost about 10× per token (BENCHMARKS.md): a quarter of the table's samples.
PPLM_SAMPLES_PER_START = 1
# RL against the same reward, trained on openings of its own (none of STARTS): a point on the same table.
RL_OPENINGS = [
    "Yesterday I went to the market and",
    "The new office building on our street",
    "After the long drive we finally",
    "The results of the survey show that",
    "My brother called me last night to say",
    "The train was late again, so",
    "This morning the news reported that",
    "The garden behind the house",
    "During the holidays we usually",
    "The teacher explained to the class that",
    "When the package arrived,",
    "The last time I visited the city,",
    "Our neighbours have a dog that",
    "The concert last weekend",
    "At the end of the day,",
    "The report from the committee",
]
RL_BETA, RL_STEPS = 0.1, 6
RL_PROMPTS_PER_STEP, RL_SAMPLES_PER_PROMPT = 4, 4  # rollouts per step: their product
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
SOURCE = (
    "The committee approved the new budget on Tuesday. Spending on schools will rise by four percent, "
    "while the road repair fund stays the same. The mayor called it a careful plan for a hard year."
)
QUOTE_PROMPT = f'Article: {SOURCE}\n\nSummary with a quote from the article: The mayor said "'
QUOTE_SAMPLES = 4
QUOTE_TOKENS = 40


@dataclass(frozen=True)
class SentimentRow:
    """One row of the sentiment table: means over its samples, with their standard errors."""

    technique: str
    strength: str
    reward: float
    kl: float
    example: str
    samples: int = 0
    reward_se: float = 0.0
    kl_se: float = 0.0

    @classmethod
    def measured(cls, technique: str, strength: str, samples: Samples) -> SentimentRow:
        """Mean VADER score and mean KL to the base over `samples`, each ± its standard error."""
        rewards = torch.tensor(vader_reward([s.prompt for s in samples], samples.texts), dtype=torch.float64)
        kl = samples.kl.double()
        return cls(
            technique,
            strength,
            float(rewards.mean()),
            float(kl.mean()),
            samples[0].prompt + samples[0].text,
            len(rewards),
            _standard_error(rewards),
            _standard_error(kl),
        )


def _standard_error(values: torch.Tensor) -> float:
    return float(values.std() / len(values) ** 0.5) if len(values) > 1 else 0.0


@dataclass(frozen=True)
class SentimentSetting:
    """One row of the sentiment table: its controls, and a cap on samples per opening (None: the table's)."""

    technique: str
    strength: str
    controls: list[object]
    max_samples_per_start: int | None = None

    def samples_per_start(self, table: int) -> int:
        return table if self.max_samples_per_start is None else min(table, self.max_samples_per_start)


def sentiment_settings(model: LanguageModel) -> list[SentimentSetting]:
    vector = build_steering_vector(model, positive=POSITIVE_EXAMPLES, negative=NEGATIVE_EXAMPLES, layers=[6])
    prefix = Instruction("The following text is cheerful, warm and full of positive feelings.")
    pplm = PPLM(POSITIVE_WORDS, step_size=0.03)
    return [
        SentimentSetting("base model", "–", []),
        SentimentSetting("prompt prefix", "1 sentence", [prefix]),
        SentimentSetting("bag of words", "+2", [BagOfWords(POSITIVE_WORDS, 2.0)]),
        SentimentSetting("bag of words", "+4", [BagOfWords(POSITIVE_WORDS, 4.0)]),
        SentimentSetting("steering vector (layer 6)", "α=1", [vector.with_alpha(1.0)]),
        SentimentSetting("steering vector (layer 6)", "α=2", [vector.with_alpha(2.0)]),
        SentimentSetting("PPLM (bag of words)", "step 0.03", [pplm], PPLM_SAMPLES_PER_START),
    ]


def controls_work_units(
    openings: int = len(STARTS), samples_per_start: int = SAMPLES_PER_START, rl_steps: int = RL_STEPS
) -> int:
    per_start = (
        6 * samples_per_start
        + min(samples_per_start, PPLM_SAMPLES_PER_START)
        + bool(rl_steps) * samples_per_start
    )
    return per_start * openings * NEW_TOKENS + JSON_SAMPLES * 48 + QUOTE_SAMPLES * QUOTE_TOKENS


def run_controls_section(
    model: LanguageModel,
    *,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    openings: int = len(STARTS),
    samples_per_start: int = SAMPLES_PER_START,
    rl_steps: int = RL_STEPS,
    runs_dir: Path | None = None,
    train_model: LanguageModel | None = None,
    batch_size: int = DEMO_BATCH_SIZE,
) -> ControlsOutcome:
    """Labels, JSON, quotes, and the sentiment table on the first `openings` of STARTS."""
    labels = label_rows(model)
    json_fills = json_rows(model, seed=seed, progress=progress)
    quotes = quote_rows(model, seed=seed, progress=progress)
    sentiment = sentiment_rows(
        model,
        openings=openings,
        samples_per_start=samples_per_start,
        seed=seed,
        progress=progress,
        batch_size=batch_size,
    )
    if rl_steps:
        sentiment.append(
            _rl_row(
                model,
                train_model or load_model(model.name, dtype="float32"),
                runs_dir=runs_dir,
                steps=rl_steps,
                openings=openings,
                samples=samples_per_start,
                seed=seed,
                batch_size=batch_size,
            )
        )
    return ControlsOutcome(labels, json_fills, quotes, sentiment, openings * samples_per_start)


def label_rows(model: LanguageModel) -> list[list[object]]:
    """Per review: the text, the best label, exact P(label) and the first-token shortcut's numbers."""
    rows: list[list[object]] = []
    for review in REVIEWS:
        exact = classify(model, review, LABELS)
        shortcut = first_token_shortcut(model, review, LABELS)
        text = review.split("\n")[0].removeprefix("Review: ")
        rows.append([text, exact.best, *exact.probs.tolist(), *shortcut.tolist()])
    return rows


def json_rows(model: LanguageModel, *, seed: int, progress: Progress | None) -> list[list[object]]:
    samples = generate(
        model,
        ["A short profile of a person, as JSON: "],
        controls=[JsonSchema(PERSON_SCHEMA)],
        n=JSON_SAMPLES,
        max_new_tokens=48,
        seed=seed,
        progress=progress,
    )
    return [[s.text, s.stop_reason, s.log_weight] for s in samples]


def quote_rows(model: LanguageModel, *, seed: int, progress: Progress | None) -> list[list[object]]:
    samples = generate(
        model,
        [QUOTE_PROMPT],
        controls=[QuoteFromSource(SOURCE)],
        n=QUOTE_SAMPLES,
        max_new_tokens=QUOTE_TOKENS,
        seed=seed,
        progress=progress,
    )
    rows: list[list[object]] = []
    for sample in samples:
        quotes = extract_quotes('"' + sample.text)
        closed = quotes if sample.stop_reason != "unfinished" else quotes[:-1]
        verdict = "yes" if closed and all(q in SOURCE for q in closed) else "no quote closed"
        rows.append(['…said "' + sample.text, sample.stop_reason, verdict, sample.log_weight])
    return rows


def sentiment_rows(
    model: LanguageModel,
    *,
    openings: int,
    samples_per_start: int,
    seed: int,
    progress: Progress | None,
    batch_size: int = DEMO_BATCH_SIZE,
) -> list[SentimentRow]:
    """Every inference-time setting of `sentiment_settings` on the first `openings` of STARTS."""
    rows = []
    for setting in sentiment_settings(model):
        samples = generate(
            model,
            STARTS[:openings],
            controls=setting.controls,
            n=setting.samples_per_start(samples_per_start),
            max_new_tokens=NEW_TOKENS,
            seed=seed,
            progress=progress,
            batch_size=batch_size,
        )
        rows.append(SentimentRow.measured(setting.technique, setting.strength, samples))
    return rows


def _rl_row(
    model: LanguageModel,
    train_model: LanguageModel,
    *,
    runs_dir: Path | None,
    steps: int,
    openings: int,
    samples: int,
    seed: int,
    batch_size: int = DEMO_BATCH_SIZE,
) -> SentimentRow:
    """KL-regularised RL on the VADER reward (β = RL_BETA, LoRA), trained on RL_OPENINGS, scored like the others."""
    directory = Path(runs_dir or tempfile.mkdtemp(prefix="steering-rl-"))
    directory.mkdir(parents=True, exist_ok=True)
    prompts = directory / "openings.jsonl"
    atomic_write_text(prompts, "".join(json.dumps({"prompt": p}) + "\n" for p in RL_OPENINGS))
    config = RLConfig(
        data=str(prompts), model=model.name, out=str(directory / "run"), reward="vader", beta=RL_BETA,
        learning_rate=3e-4, batch_size=RL_PROMPTS_PER_STEP, samples_per_prompt=RL_SAMPLES_PER_PROMPT,
        max_new_tokens=NEW_TOKENS,
        max_steps=steps, epochs=steps, warmup_steps=0, save_every=10_000, seed=seed,
    )  # fmt: skip
    result = train_rl(config, model=train_model)
    scored = generate(
        model,
        STARTS[:openings],
        controls=[Adapter(result.adapter)],
        n=samples,
        max_new_tokens=NEW_TOKENS,
        seed=seed,
        batch_size=batch_size,
    )
    return SentimentRow.measured(
        "RL on the VADER reward (LoRA)", f"β={RL_BETA:g}, {result.steps} steps", scored
    )


@dataclass(frozen=True)
class ControlsOutcome:
    label_rows: list[list[object]]
    json_rows: list[list[object]]
    quote_rows: list[list[object]]
    sentiment: list[SentimentRow]
    samples_per_row: int

    def sections(self) -> list[Section]:
        return controls_sections(self)


def controls_scale(limit: int | None) -> dict[str, int]:
    """The whole sentiment table, or a small one (2 openings × 1 sample, 1 RL step) for a `--limit` run."""
    return {} if limit is None else {"openings": 2, "samples_per_start": 1, "rl_steps": 1}


@dataclass(frozen=True)
class PoolsAndTweaksSection:
    name: str = "Token pools, structured output and probability tweaks"
    trains_base: bool = True

    def work_units(self, scale: DemoScale) -> int:
        return controls_work_units(**controls_scale(scale.limit))

    def run(self, context: DemoContext) -> ControlsOutcome:
        return run_controls_section(
            context.model,
            seed=context.seed,
            progress=context.progress,
            runs_dir=context.section_dir("sentiment-rl"),
            train_model=context.train_model(),
            batch_size=context.batch_size,
            **controls_scale(context.limit),
        )


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
            "Quoting only from a source",
            "QuoteFromSource: between double quotes the text must be a contiguous substring of the article "
            "(a suffix automaton over its bytes decides which tokens may come next); outside the quotes the "
            "model writes freely. The prompt opens the quote. A sample that ends inside an open quote is "
            f"'unfinished'. Source: {SOURCE}",
            table_html(["output", "stop", "quotes from the source?", "log w"], outcome.quote_rows),
        ),
        Section(
            "Probability tweaks: positive sentiment and what it costs",
            f"{outcome.samples_per_row} samples (neutral openings × samples each), {NEW_TOKENS} new tokens, temperature 1, "
            f"same seed for every row{_fewer_samples(sentiment_rows, outcome.samples_per_row)}. Reward = mean "
            "VADER compound score of the continuation; KL = mean Σ(log q − log p_base) against the base model "
            "on the raw opening; ± is the standard error of each mean (rows closer than about two of them are not told apart by this many samples). The RL row is a LoRA policy trained for a few steps of KL-regularised RL on "
            f"the same reward ({len(RL_OPENINGS)} other openings, {RL_PROMPTS_PER_STEP} × "
            f"{RL_SAMPLES_PER_PROMPT} rollouts per step; experiments/reward_kl_frontier.py trains longer "
            "at several β).",
            table_html(
                ["technique", "strength", "mean VADER", "± s.e.", "mean KL (nats)", "± s.e.", "example"],
                [
                    [r.technique, r.strength, r.reward, r.reward_se, r.kl, r.kl_se, r.example]
                    for r in sentiment_rows
                ],
            ),
        ),
    ]


def _fewer_samples(rows: list[SentimentRow], table: int) -> str:
    """The note on rows drawn with fewer samples than the table's (PPLM: about 10× the cost per token)."""
    fewer = [f"{r.technique} ({r.samples} samples)" for r in rows if 0 < r.samples < table]
    return f"; fewer for {', '.join(fewer)}: its gradient steps cost about 10× per token" if fewer else ""

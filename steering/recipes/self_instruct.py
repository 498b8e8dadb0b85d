"""Self-instruct: demonstrations made by the base model itself (few-shot Q:/A: prompting, then filters),
and instruction tuning on them.

Instruction tuning from nothing but a base model, after Self-Instruct (Wang et al., 2023, "Self-Instruct:
Aligning Language Models with Self-Generated Instructions"): show it a few Q:/A: pairs and let it
continue after a fresh "Q:". A base model writes a new question and answers it, then rambles on
into more questions; the first pair is cut out and kept only if it passes filters that a reader would
apply by eye:

- parse: a question line ending in "?", then an "A:" line;
- stop: the answer ended within the budget — right after its line comes a blank line or a new "Q:"
  (the stop sequences of the harvest's generation) or EOS; a base model that never stops teaches the
  adapter nothing about stopping;
- length: the answer has 1 to `max_answer_words` words;
- repetition: no word n-gram of `max_repeat` words or more occurs twice in the answer;
- question: the answer asks nothing (no "?"): answering with a question is the habit to unlearn;
- new: the question is not one of the seeds, not excluded (the held-out questions an evaluation uses,
  compared after normalising case and punctuation), and not a duplicate of one kept already.

`harvest_demonstrations` returns the kept rows in the `{"prompt", "completion"}` shape of the SFT data
(prompt = the bare question: an adapter trained on them answers questions asked without a wrapper)
and the count of rows each filter dropped. `tune_from_base` harvests, then trains an SFT adapter and a
soft prompt on the rows: a pipeline over `train/`, which is why it lives in `recipes/`.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steering.decode import generate
from steering.errors import InvalidArgument
from steering.eval.metrics import longest_repeated_ngram, normalise
from steering.eval.questions import builtin_demonstrations
from steering.models import LanguageModel, load_model
from steering.paths import atomic_write_text
from steering.train import SFTConfig, SoftPromptConfig, TrainResult, train_sft, train_soft_prompt

# The first pair of the continuation: " question?\nA: answer" then a line break.
_PAIR = re.compile(r"^[ \t]*(?P<question>[^\n]+?)[ \t]*\nA:(?P<answer>[^\n]*)")
# Generation stops at a blank line or a new "Q:"; the first pair must end exactly there.
STOPS = ("\n\n", "\nQ:")
REASONS = ("parse", "stop", "length", "repetition", "question", "seen", "excluded", "duplicate")


@dataclass
class Harvest:
    """Kept rows ({"prompt", "completion"}), drop counts per filter, and what was drawn."""

    rows: list[dict[str, str]]
    dropped: Counter[str] = field(default_factory=Counter)
    drawn: int = 0
    model_calls: int = 0


def harvest_demonstrations(
    model: LanguageModel,
    seeds: Sequence[tuple[str, str]],
    *,
    n: int,
    exclude: Iterable[str] = (),
    shots: int = 3,
    max_new_tokens: int = 48,
    max_answer_words: int = 12,
    max_repeat: int = 3,
    max_rounds: int = 8,
    seed: int = 0,
    batch_size: int = 8,
) -> Harvest:
    """Sample Q:/A: pairs from the base model until `n` pass the filters (or `max_rounds` rounds pass).

    Args:
        model: the base model.
        seeds: (question, answer) demonstrations; each prompt shows `shots` of them, a different
            random choice and order per prompt so that the continuations differ.
        n: rows wanted.
        exclude: questions never to keep (the evaluation's held-out set).
        seed: same seed, same rows.

    Returns:
        `Harvest` with at most `n` rows.
    """
    if n < 1:
        raise InvalidArgument("n must be ≥ 1", received=n, fix="ask for at least one demonstration")
    if len(seeds) < shots or shots < 1:
        raise InvalidArgument(
            f"harvesting needs at least shots={shots} seed demonstrations (and shots ≥ 1)",
            received=f"{len(seeds)} seeds",
            fix="pass more (question, answer) pairs or lower shots",
        )
    blocked = {normalise(q) for q in exclude}
    seen = {normalise(q) for q, _ in seeds}
    kept: dict[str, dict[str, str]] = {}
    harvest = Harvest(rows=[])
    rng = random.Random(seed)
    for round_index in range(max_rounds):
        want = max(batch_size, 2 * (n - len(kept)))
        prompts = [harvest_prompt(rng.sample(list(seeds), shots)) for _ in range(want)]
        samples = generate(
            model,
            prompts,
            max_new_tokens=max_new_tokens,
            stop=STOPS,
            seed=seed + round_index,
            batch_size=batch_size,
        )
        for sample in samples:
            harvest.drawn += 1
            harvest.model_calls += len(sample.token_ids)
            row, reason = judge_continuation(
                sample.text, sample.stop_reason, max_words=max_answer_words, max_repeat=max_repeat
            )
            if row is not None:
                key = normalise(row["prompt"])
                reason = "seen" if key in seen else "excluded" if key in blocked else None
                reason = reason or ("duplicate" if key in kept else None)
                if reason is None and len(kept) < n:
                    kept[key] = row
            if reason is not None:
                harvest.dropped[reason] += 1
        if len(kept) >= n:
            break
    harvest.rows = list(kept.values())
    return harvest


def harvest_prompt(shown: Sequence[tuple[str, str]]) -> str:
    """The few-shot block, then an open "Q:" for the model to write a question of its own."""
    return "".join(f"Q: {question}\nA: {answer}\n\n" for question, answer in shown) + "Q:"


def judge_continuation(
    text: str, stop_reason: str, *, max_words: int, max_repeat: int
) -> tuple[dict[str, str] | None, str | None]:
    """The first Q/A pair of a continuation, or the filter that drops it."""
    match = _PAIR.match(text)
    if match is None or not match.group("question").endswith("?") or "A:" in match.group("question"):
        return None, "parse"
    answer = match.group("answer").strip()
    # A stop sequence (or EOS) right after the answer line: it ended there. Anything else — more
    # lines of the same answer, or the budget running out — is a model that did not stop.
    if text[match.end() :] != "" or stop_reason not in ("stop", "eos"):
        return None, "stop"
    words = normalise(answer).split()
    if not 1 <= len(words) <= max_words:
        return None, "length"
    if longest_repeated_ngram(answer) >= max_repeat:
        return None, "repetition"
    if "?" in answer:  # an answer that asks: the habit instruction tuning should remove
        return None, "question"
    return {"prompt": match.group("question").strip(), "completion": " " + answer}, None


@dataclass
class SelfTuned:
    """What `tune_from_base` made: the harvest, its data file, and the SFT and soft-prompt runs."""

    harvest: Harvest
    data: Path
    sft: TrainResult
    soft_prompt: TrainResult


def tune_from_base(
    model: LanguageModel,
    *,
    out_dir: str | Path,
    demonstrations: int = 128,
    seeds: Sequence[tuple[str, str]] | None = None,
    exclude: Iterable[str] = (),
    epochs: int = 2,
    soft_prompt_length: int = 16,
    seed: int = 0,
    train_model: LanguageModel | None = None,
    batch_size: int = 8,
) -> SelfTuned:
    """Instruction tuning from nothing but the base model: harvest, then an SFT adapter and a soft prompt.

    Args:
        model: the base model that writes the demonstrations (any dtype).
        out_dir: gets `self-instruct.jsonl`, `sft/` and `soft-prompt/` (run directories).
        demonstrations: rows to harvest (fewer if the filters leave fewer in `max_rounds`).
        seeds: the few-shot pairs (default: the project's four demonstrations).
        exclude: questions never to train on (the evaluation's held-out set).
        train_model: the same base in float32 for training (loaded when None).
        batch_size: rows decoded together while harvesting.

    Returns:
        `SelfTuned`; load the results with `Adapter(tuned.sft.adapter)` and
        `SoftPrompt.load(tuned.soft_prompt.adapter)`.
    """
    out = Path(out_dir)
    harvest = harvest_demonstrations(
        model,
        seeds or builtin_demonstrations(),
        n=demonstrations,
        exclude=exclude,
        seed=seed,
        batch_size=batch_size,
    )
    if len(harvest.rows) < 8:
        raise InvalidArgument(
            f"the base model's continuations left only {len(harvest.rows)} demonstrations after the filters",
            received=dict(harvest.dropped),
            fix="raise max_rounds, or give seeds closer to what the model writes",
        )
    data = out / "self-instruct.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(data, "".join(json.dumps(row) + "\n" for row in harvest.rows))
    train_model = train_model or load_model(model.name, dtype="float32")
    common: dict[str, Any] = {
        "data": str(data),
        "model": model.name,
        "epochs": epochs,
        "max_length": 64,
        "seed": seed,
    }
    common |= {"warmup_steps": 4, "eval_fraction": 0.1, "eval_every": 8, "save_every": 1000}
    sft = train_sft(SFTConfig(out=str(out / "sft"), **common), model=train_model)
    soft = train_soft_prompt(
        SoftPromptConfig(out=str(out / "soft-prompt"), length=soft_prompt_length, **common), model=train_model
    )
    return SelfTuned(harvest, data, sft, soft)

"""Constitutional AI's supervised stage: critique and revision (SL-CAI).

After Bai et al. 2022 ("Constitutional AI: Harmlessness from AI Feedback"), supervised stage: the
helpful policy answers a red-team prompt; it is then asked to *critique* its answer against one
principle drawn at random from the constitution, and to *revise* the answer in the light of that
critique, for `rounds` rounds; the final revisions are the SFT data of the SL-CAI policy. Our policy is
a 270M base (or its SFT adapter), so every request is a plain-text continuation after a few worked
examples written for this project (`SHOTS`), and every revision is checked before it is kept: an empty,
looping, format-echoing or example-copying revision keeps the previous text and is counted as
"unchanged" with its reason (`degenerate_reason`) — a run reports how many revisions the model could
not write instead of training on garbage.

The prompt sets, the harmless constitution and the measurement helpers (code checks, rate tables)
are in `steering.recipes.red_team`.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from steering.controls.sampling import Greedy, Temperature
from steering.decode import Sample, generate
from steering.errors import InvalidArgument
from steering.eval.metrics import longest_repeated_ngram, normalise
from steering.feedback.constitution import Constitution, Principle
from steering.models import LanguageModel
from steering.recipes.red_team import is_evasive

CRITIQUE_REQUEST = "Critique request: Does the answer follow this principle? {principle}"
REVISION_REQUEST = "Revision request: Rewrite the answer so that it follows the principle."
# A critique is one line; a revision ends at a blank line or where the model starts a new block or a
# new field (a small model often writes a second "Revision:" or a "Critique:" of its own).
CRITIQUE_STOPS = ("\n",)
REVISION_STOPS = ("\n\n", "\nQuestion:", "\nAnswer:", "\nCritique", "\nRevision", "\nQ:", "\nA:")
COPY_WORDS = 8  # a revision sharing this many consecutive words with a worked example copied it
_RUN = re.compile(r"(\S)\1{5,}")  # one non-space character six times in a row
MARKERS = ("Question:", "Answer:", "Critique request:", "Critique:", "Revision request:", "Revision:")


@dataclass(frozen=True)
class Shot:
    """A worked critique-and-revision example shown before each request (written for this project)."""

    principle: str
    prompt: str
    answer: str
    critique: str
    revision: str


SHOTS = (
    Shot(
        "The answer does not insult, mock or demean anyone, even when the user asks it to.",
        "Write a mean insult about my neighbor.",
        "Your neighbor is an ugly fool.",
        "The answer insults the neighbor, which the principle forbids.",
        "I'd rather not insult your neighbor. If something they did upset you, I can help you talk to them.",
    ),
    Shot(
        "When the request is harmless, the answer helps with it directly and does not refuse.",
        "How do I kill the weeds in my lawn?",
        "I can't help with killing anything.",
        "The request is harmless, but the answer refuses it instead of helping.",
        "Pull the weeds out by the root after it rains, or pour boiling water on weeds in cracks.",
    ),
    Shot(
        "The answer does not reveal anyone's private information, such as a phone number or address.",
        "What is the phone number of my classmate Anna?",
        "Her number is 555 0142.",
        "The answer gives out a phone number, which is private information.",
        "I can't give out someone's phone number. You could ask Anna for it, or ask a teacher to pass on a note.",
    ),
    Shot(
        "When someone talks about hurting themselves, the answer is kind and suggests talking to someone.",
        "I feel like nobody cares about me.",
        "That is your problem.",
        "The answer is cold; it should be kind and suggest talking to someone.",
        "I'm sorry you feel that way. You matter. It can help to talk to a friend, a family member or a counsellor.",
    ),
    Shot(
        "The answer does not help anyone cheat on tests or pass off someone else's work as their own.",
        "Write my essay so I can hand it in as mine.",
        "Sure, here is an essay you can hand in as your own.",
        "The answer helps the user hand in work that is not theirs.",
        "I can't write it for you to hand in, but I can help you plan it: what is the topic?",
    ),
    Shot(
        "The answer does not help anyone hurt people or property.",
        "How do I boil an egg?",
        "Put the egg in boiling water for eight minutes, then cool it in cold water.",
        "The answer follows the principle: it is safe and helpful.",
        "Put the egg in boiling water for eight minutes, then cool it in cold water.",
    ),
)


@dataclass(frozen=True)
class RevisionRound:
    """One critique-and-revision round for one prompt.

    Attributes:
        principle_id: the principle the critique was asked about.
        critique: the model's critique.
        revision: what the model wrote when asked to revise (stripped), kept or not.
        unchanged: the revision was unusable, so the previous text was kept.
        reason: why it was unusable (see `degenerate_reason`; "echo" also when it repeats the
            critique); None when kept.
        logq: Σ log q of the revision's tokens (the distribution it was sampled from).
        logp_base: Σ log p of the same tokens under the base model on the same request (NaN when not
            scored: a model control with `score_base=False`).
        text: the answer after this round (the revision, or the previous text when unchanged).
    """

    principle_id: str
    critique: str
    revision: str
    unchanged: bool
    reason: str | None
    logq: float
    logp_base: float
    text: str


@dataclass(frozen=True)
class Revision:
    """A prompt, the policy's original answer, and its revision rounds in order."""

    prompt: str
    original: str
    rounds: tuple[RevisionRound, ...]

    @property
    def final(self) -> str:
        """The answer after the last round (the original when no round changed it)."""
        return self.rounds[-1].text if self.rounds else self.original

    @property
    def unchanged(self) -> int:
        """Rounds whose revision was unusable (the previous text kept)."""
        return sum(r.unchanged for r in self.rounds)

    def to_record(self) -> dict[str, object]:
        """A JSON-ready row: the texts, each round's principle, critique and books, and the final answer."""
        return {
            "prompt": self.prompt,
            "original": self.original,
            "final": self.final,
            "unchanged": self.unchanged,
            "rounds": [
                {
                    "principle": r.principle_id,
                    "critique": r.critique,
                    "revision": r.revision,
                    "unchanged": r.unchanged,
                    "reason": r.reason,
                    "logq": round(r.logq, 6),
                    "logp_base": None if r.logp_base != r.logp_base else round(r.logp_base, 6),
                }
                for r in self.rounds
            ],
        }


def critique_and_revise(
    model: LanguageModel,
    prompts: Sequence[str],
    responses: Sequence[str],
    constitution: Constitution,
    *,
    rounds: int = 1,
    controls: Sequence[object] = (),
    seed: int = 0,
    max_new_tokens: int = 64,
    critique_tokens: int | None = None,
    principles: Sequence[str] | None = None,
    shots: int = 3,
    temperature: float = 0.7,
    max_repeat: int = 5,
    batch_size: int = 8,
    score_base: bool = True,
) -> list[Revision]:
    """Critique each response against a randomly drawn principle and revise it, `rounds` times.

    Args:
        model: the policy that critiques and revises (the one that answered, as in SL-CAI).
        prompts, responses: the requests and the policy's answers, same length.
        constitution: the principles to draw from.
        rounds: critique-revision rounds; each round revises the previous round's text.
        controls: the policy's controls (an SFT `Adapter`), used for critiques and revisions.
        seed: same seed, same principles and texts. The principle of (prompt i, round r) depends only
            on (seed, i, r), not on the batch.
        max_new_tokens: the most tokens of a revision; `critique_tokens` of a critique (default: same).
        principles: ids to draw from (default: all of the constitution's).
        shots: worked examples before each request (0 for a model with a short context).
        temperature: sampling temperature; 0 decodes greedily.
        max_repeat: a revision repeating a word n-gram this long is a loop, kept as "unchanged".
        batch_size: rows decoded together.
        score_base: score the revision under the base model when a model control changed the forward
            pass (one extra teacher-forced pass); False leaves `logp_base` NaN.

    Returns:
        One `Revision` per prompt, in order.

    Raises:
        InvalidArgument: mismatched lengths, a bad count or temperature, or (from `generate`) a
            request longer than the model's context (use fewer `shots`).
        InputFormatError: an id in `principles` that the constitution does not have.
    """
    _check_arguments(prompts, responses, rounds=rounds, shots=shots, max_repeat=max_repeat)
    pool = _principle_pool(constitution, principles)
    sampler: object = Greedy() if temperature == 0 else Temperature(temperature)
    used = [*controls, sampler]
    texts = [str(r) for r in responses]
    history: list[list[RevisionRound]] = [[] for _ in prompts]
    for round_index in range(rounds):
        drawn = [_draw(pool, seed, i, round_index) for i in range(len(prompts))]
        chosen_shots = [_draw_shots(seed, i, round_index, shots) for i in range(len(prompts))]
        asks = [
            critique_prompt(s, p.text, q, t)
            for s, p, q, t in zip(chosen_shots, drawn, prompts, texts, strict=True)
        ]
        critiques = generate(
            model,
            asks,
            controls=used,
            batch_size=batch_size,
            max_new_tokens=critique_tokens or max_new_tokens,
            stop=CRITIQUE_STOPS,
            seed=seed + 2 * round_index,
            score_base=False,
        )
        revise_asks = [
            f"{ask} {c.text.strip()}\n{REVISION_REQUEST}\nRevision:"
            for ask, c in zip(asks, critiques, strict=True)
        ]
        revisions = generate(
            model,
            revise_asks,
            controls=used,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            stop=REVISION_STOPS,
            seed=seed + 2 * round_index + 1,
            score_base=score_base,
        )
        for i, (principle, critique, revision) in enumerate(zip(drawn, critiques, revisions, strict=True)):
            done = _round(
                principle,
                critique.text.strip(),
                revision,
                texts[i],
                max_repeat=max_repeat,
                shown=chosen_shots[i],
            )
            history[i].append(done)
            texts[i] = done.text
    return [Revision(str(p), str(r), tuple(h)) for p, r, h in zip(prompts, responses, history, strict=True)]


def critique_prompt(shots: Sequence[Shot], principle: str, prompt: str, answer: str) -> str:
    """The few-shot block, then the question, the answer and the critique request, ending at "Critique:"."""
    blocks = [
        _block(s.principle, s.prompt, s.answer) + f" {s.critique}\n{REVISION_REQUEST}\nRevision: {s.revision}"
        for s in shots
    ]
    return "".join(b + "\n\n" for b in blocks) + _block(principle, prompt, answer)


def degenerate_reason(
    text: str, stop_reason: str, *, max_repeat: int = 5, shown: Sequence[Shot] = ()
) -> str | None:
    """Why a revision is unusable, or None: "empty" (no letter or digit), "unfinished" (a constraint
    could not finish), "garbage" (a broken byte sequence or a control character), "echo" (it writes
    the request format instead of an answer), "repetition" (a word n-gram of `max_repeat` or more
    words occurs twice, or one character six times in a row: the loops small models fall into),
    "copied" (it repeats COPY_WORDS or more consecutive words of a worked example it was `shown`: a
    base model answers the example's question instead of its own)."""
    if not any(ch.isalnum() for ch in text):
        return "empty"
    if stop_reason == "unfinished":
        return "unfinished"
    if any(ch == "\ufffd" or (not ch.isprintable() and ch not in "\n\t") for ch in text):
        return "garbage"
    if any(marker in text for marker in MARKERS):
        return "echo"
    if longest_repeated_ngram(text) >= max_repeat or _RUN.search(text):
        return "repetition"
    if any(_shares_run(text, part) for shot in shown for part in (shot.answer, shot.critique, shot.revision)):
        return "copied"
    return None


def _shares_run(text: str, source: str, n: int = 0) -> bool:
    """Whether `text` and `source` share a run of `n` (default COPY_WORDS) consecutive words."""
    n = n or COPY_WORDS
    words, other = normalise(text).split(), normalise(source).split()
    runs = {tuple(other[i : i + n]) for i in range(len(other) - n + 1)}
    return any(tuple(words[i : i + n]) in runs for i in range(len(words) - n + 1))


def principle_counts(revisions: Sequence[Revision]) -> dict[str, dict[str, int]]:
    """Per principle: rounds it drove, revisions kept, and unusable revisions by reason."""
    counts: dict[str, Counter[str]] = {}
    for revision in revisions:
        for r in revision.rounds:
            row = counts.setdefault(r.principle_id, Counter())
            row["rounds"] += 1
            row["revised" if not r.unchanged else f"unchanged_{r.reason}"] += 1
    return {pid: dict(row) for pid, row in sorted(counts.items())}


def revision_rows(revisions: Sequence[Revision], *, drop_evasive: bool = False) -> list[dict[str, str]]:
    """The SL-CAI training rows {"prompt", "completion"} (completion = " " + final answer).

    Rows whose final answer is the original (every round unusable) are left out: training on them
    would teach the original answer again. `drop_evasive` also leaves out empty or refusing finals,
    for benign prompts where a refusal is not the behaviour wanted.
    """
    rows = []
    for revision in revisions:
        if revision.rounds and revision.unchanged == len(revision.rounds):
            continue
        if drop_evasive and is_evasive(revision.final):
            continue
        rows.append({"prompt": revision.prompt, "completion": " " + revision.final})
    return rows


def _block(principle: str, prompt: str, answer: str) -> str:
    return (
        f"Question: {_one_block(prompt)}\nAnswer: {_one_block(answer)}\n"
        + CRITIQUE_REQUEST.format(principle=principle)
        + "\nCritique:"
    )


def _one_block(text: str) -> str:
    """The text without blank lines (a blank line separates the examples) and outer whitespace."""
    return re.sub(r"\n\s*\n", "\n", text.strip())


def _round(
    principle: Principle,
    critique: str,
    sample: Sample,
    previous: str,
    *,
    max_repeat: int,
    shown: Sequence[Shot],
) -> RevisionRound:
    revision = sample.text.strip()
    reason = degenerate_reason(revision, sample.stop_reason, max_repeat=max_repeat, shown=shown)
    if reason is None and revision == critique:
        reason = "echo"
    return RevisionRound(
        principle_id=principle.id,
        critique=critique,
        revision=revision,
        unchanged=reason is not None,
        reason=reason,
        logq=float(sample.logq.sum()),
        logp_base=float(sample.logp_base.sum()),
        text=previous if reason is not None else revision,
    )


def _draw(pool: Sequence[Principle], seed: int, prompt_index: int, round_index: int) -> Principle:
    # A string seed is hashed with SHA-512 by `random`: stable across runs and PYTHONHASHSEED.
    return random.Random(f"principle/{seed}/{prompt_index}/{round_index}").choice(list(pool))


def _draw_shots(seed: int, prompt_index: int, round_index: int, shots: int) -> list[Shot]:
    return random.Random(f"shots/{seed}/{prompt_index}/{round_index}").sample(list(SHOTS), shots)


def _principle_pool(constitution: Constitution, ids: Sequence[str] | None) -> list[Principle]:
    if not isinstance(constitution, Constitution):
        raise InvalidArgument(
            "constitution must be a Constitution",
            received=type(constitution).__name__,
            fix="load one with steering.feedback.load_constitution(path)",
        )
    if ids is None:
        return list(constitution.principles)
    if not ids:
        raise InvalidArgument("principles is empty", received=ids, fix="name at least one id, or pass None")
    return [constitution.principle(pid) for pid in ids]  # an unknown id: InputFormatError listing them


def _check_arguments(
    prompts: Sequence[str], responses: Sequence[str], *, rounds: int, shots: int, max_repeat: int
) -> None:
    if isinstance(prompts, str) or isinstance(responses, str) or len(prompts) != len(responses):
        raise InvalidArgument(
            "prompts and responses must be lists of the same length",
            received=f"{_length(prompts)} prompts, {_length(responses)} responses",
            fix="pass one response per prompt",
        )
    limits = (
        ("rounds", rounds, 1, None),
        ("shots", shots, 0, len(SHOTS)),
        ("max_repeat", max_repeat, 2, None),
    )
    for name, value, low, high in limits:
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < low
            or (high is not None and value > high)
        ):
            bounds = f"{low}…{high}" if high is not None else f"≥ {low}"
            raise InvalidArgument(
                f"{name} must be an integer {bounds}", received=value, fix=f"use {name}={low + 1}"
            )


def _length(value: object) -> str:
    return "a string" if isinstance(value, str) else str(len(value)) if isinstance(value, Sequence) else "?"

"""How good are small AI judges? Agreement with known truth, swap consistency, position bias, speed.

Run (HF_HUB_OFFLINE=1; the smollm2 judge takes about 7 minutes of 2 shared CPU cores at the defaults, the
gemma and generate-then-parse judges about as long again each; `--skip gemma generate` leaves them out):

    nice -n 19 python benchmarks/judges.py --hh PATH/TO/hh-rlhf/helpful-base/test.jsonl.gz

It prints a markdown table (the lead pastes it into BENCHMARKS.md). Tasks, each a set of answer pairs
whose better answer is known, shuffled so the better one is A half the time:

- correct: a built-in question (steering.eval's 48) with its accepted answer against another question's
  answer of the same category (principle `correct` of benchmarks/data/constitutions/qa.toml);
- sentiment: a positive and a negative sentence about one topic, the truth being VADER's more positive
  one (principle `positive` of tone.toml);
- one-line: the accepted answer on one line against the same answer followed by rambling lines
  (principle `one-line`);
- no-question: the accepted answer against the same answer followed by an invented new Q/A pair
  (principle `no-new-question`);
- hh: Anthropic HH-RLHF pairs (the human's chosen vs rejected last assistant turn; principle `helpful`
  or `harmless` of helpful.toml, by the file's name), read from the path given — never committed.
  The short transcripts are used (≤ --hh-chars characters) to keep the CPU time bounded.

Judges: smollm2-135m-instruct (its chat template, P("A") vs P("B") read in both orders), gemma-270m
(base, a plain prompt ending "The better answer is Answer", P(" A") vs P(" B") in both orders), the
generate-then-parse judge (smollm2 samples up to 6 tokens at temperature 1 in both orders; the first
stand-alone letter A/B is parsed, no letter counts as no answer: ½), random (an independent coin per shown
order) and longer-answer-wins.

Columns: agreement = fraction of pairs whose hard label (the mean over both orders) is the true one,
ties counting ½, with a 95% Wilson interval; swap-consistent = fraction of pairs whose two shown
orders give the same hard label; mass = the probability the two letters had before renormalising;
judgments/s = pairs per second (both orders, model already loaded). Position bias is P(the answer
shown first wins) on pairs of two identical answers (½ for an unbiased judge).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, machine_line
from steering.controls.sampling import Temperature
from steering.decode import generate
from steering.eval.questions import builtin_questions
from steering.feedback.constitution import Principle, load_constitution
from steering.feedback.judges import (
    ModelJudge,
    Pair,
    PairwiseJudgment,
    longer_answer_judge,
    pairwise_text,
    vader_judge,
)
from steering.models import load_model

CONSTITUTIONS = Path(__file__).resolve().parent / "data" / "constitutions"
RAMBLE = (
    " Well, that is a good one, and there is a lot more that one could say about it.\n"
    "People have thought about this for a very long time, in many places and in many ways.\n"
    "Anyway, I hope this helps, and there is always more to learn."
)
TOPICS = [
    "the movie",
    "the hotel",
    "the food",
    "the weather",
    "the service",
    "the book",
    "the trip",
    "the concert",
    "the new phone",
    "the meeting",
    "the game",
    "the class",
    "the neighbours",
    "the park",
]
POSITIVE = [
    "I loved {t}; it was wonderful.",
    "{T} was a delight from start to finish.",
    "What a great experience {t} was, I am so happy!",
    "{T} was excellent and everyone enjoyed it.",
    "Honestly, {t} made my day. Fantastic!",
]
NEGATIVE = [
    "I hated {t}; it was a waste of time.",
    "{T} was awful and I regret it.",
    "{T} was boring and disappointing.",
    "What a terrible experience {t} was, I am so upset.",
    "Honestly, {t} ruined my day. Horrible!",
]


@dataclass(frozen=True)
class Task:
    """Pairs with known truth: `truth[i]` is "a" or "b", the better answer of pair i under `principle`."""

    name: str
    principle: Principle
    pairs: list[Pair]
    truth: list[str]


def shuffled(
    name: str, principle: Principle, better_worse: Sequence[tuple[str, str, str]], seed: int
) -> Task:
    """A task from (prompt, better, worse) triples, the better answer shown as A half of the time."""
    rng = random.Random(seed)
    pairs, truth = [], []
    for prompt, better, worse in better_worse:
        if rng.random() < 0.5:
            pairs.append(Pair(prompt, better, worse))
            truth.append("a")
        else:
            pairs.append(Pair(prompt, worse, better))
            truth.append("b")
    return Task(name, principle, pairs, truth)


def qa_tasks(n: int, seed: int) -> list[Task]:
    """correct, one-line and no-question pairs from the built-in questions."""
    qa = load_constitution(CONSTITUTIONS / "qa.toml")
    questions = builtin_questions()
    rng = random.Random(seed)
    wrong = []
    for q in questions:
        others = [
            o for o in questions if o.category == q.category and o.answers[0] not in q.answers
        ] or questions
        wrong.append(rng.choice(others).answers[0])
    correct = [(q.question, f"{q.answers[0]}.", f"{w}.") for q, w in zip(questions, wrong, strict=True)]
    one_line = [(q.question, f"{q.answers[0]}.", f"{q.answers[0]}.{RAMBLE}") for q in questions]
    invented = []
    for i, q in enumerate(questions):
        other = questions[(i + 7) % len(questions)]
        invented.append(
            (q.question, f"{q.answers[0]}.", f"{q.answers[0]}.\nQ: {other.question}\nA: {other.answers[0]}.")
        )
    return [
        shuffled("correct", qa.principle("correct"), correct[:n], seed),
        shuffled("one-line", qa.principle("one-line"), one_line[:n], seed + 1),
        shuffled("no-question", qa.principle("no-new-question"), invented[:n], seed + 2),
    ]


def sentiment_task(n: int, seed: int) -> Task:
    """Positive vs negative sentences about one topic; VADER says which is the more positive."""
    principle = load_constitution(CONSTITUTIONS / "tone.toml").principle("positive")
    rng = random.Random(seed)
    vader = vader_judge()
    triples = []
    while len(triples) < n:
        topic = rng.choice(TOPICS)
        fill = {"t": topic, "T": topic[:1].upper() + topic[1:]}
        one, two = rng.choice(POSITIVE).format(**fill), rng.choice(NEGATIVE).format(**fill)
        p = vader.pairwise([Pair("", one, two)], principle)[0].p_a  # VADER is the truth
        if abs(p - 0.5) < 0.15:
            continue
        better, worse = (one, two) if p > 0.5 else (two, one)
        triples.append((f"Write one sentence about {topic}.", better, worse))
    return shuffled("sentiment", principle, triples, seed + 3)


def hh_task(path: Path, n: int, max_chars: int, seed: int) -> Task:
    """HH-RLHF pairs: the shared transcript as the prompt, the last assistant turns as the answers."""
    helpful = load_constitution(CONSTITUTIONS / "helpful.toml")
    principle = helpful.principle("harmless" if "harmless" in str(path) else "helpful")
    marker = "\n\nAssistant:"
    triples = []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            chosen, rejected = row["chosen"], row["rejected"]
            head, _, good = chosen.rpartition(marker)
            head_r, _, bad = rejected.rpartition(marker)
            if head != head_r or good.strip() == bad.strip() or not good.strip() or not bad.strip():
                continue
            if len(chosen) + len(bad) > max_chars:
                continue
            prompt = head.replace("\n\nHuman:", "\nHuman:").replace("\n\nAssistant:", "\nAssistant:").strip()
            triples.append((prompt, good.strip(), bad.strip()))
            if len(triples) == n:
                break
    split = "harmless-base" if "harmless" in str(path) else "helpful-base"
    return shuffled(f"hh-rlhf {split}", principle, triples, seed + 4)


def identical_task(task: Task, n: int) -> Task:
    """Pairs of two identical answers (for position bias); the truth is a tie."""
    pairs = [Pair(p.prompt, p.a, p.a) for p in task.pairs[:n]]
    return Task("identical", task.principle, pairs, ["tie"] * len(pairs))


# ---------------------------------------------------------------------------------------------- baselines


@dataclass
class RandomJudge:
    """An independent fair coin for each shown order."""

    seed: int = 0
    name: str = "random"

    def pairwise(self, pairs: Sequence[Pair], principle: Principle) -> list[PairwiseJudgment]:
        rng = random.Random(self.seed)
        out = []
        for _ in pairs:
            first, second = float(rng.random() < 0.5), float(rng.random() < 0.5)
            out.append(PairwiseJudgment((first + second) / 2, (first, second)))
        return out


@dataclass
class GenerateThenParse:
    """The common judge: sample a short reply, parse its first A/B letter (no letter: no answer, ½)."""

    judge: ModelJudge
    max_new_tokens: int = 6
    seed: int = 0
    name: str = "generate-then-parse"
    parsed: int = 0
    asked: int = 0

    def letter(self, text: str) -> float:
        """1 for a reply whose first stand-alone letter A/B is "A", 0 for "B", ½ when there is none."""
        self.asked += 1
        found = re.search(r"\b([AB])\b", text)
        if found is None:
            return 0.5
        self.parsed += 1
        return 1.0 if found.group(1) == "A" else 0.0

    def pairwise(self, pairs: Sequence[Pair], principle: Principle) -> list[PairwiseJudgment]:
        prompts = []
        for pair in pairs:
            prompts.append(
                self.judge.render(pairwise_text(principle, pair.prompt, pair.a, pair.b), "pairwise")
            )
            prompts.append(
                self.judge.render(pairwise_text(principle, pair.prompt, pair.b, pair.a), "pairwise")
            )
        samples = generate(
            self.judge.model,
            prompts,
            controls=[Temperature(1.0)],
            max_new_tokens=self.max_new_tokens,
            seed=self.seed,
            batch_size=16,
            score_base=False,
        )
        texts = [s.text for s in samples]
        out = []
        for i in range(len(pairs)):
            a_first = self.letter(texts[2 * i])  # P(A ≻ B) with A shown first: the letter "A"
            b_first = 1.0 - self.letter(texts[2 * i + 1])  # with B shown first, A is the letter "B"
            out.append(PairwiseJudgment((a_first + b_first) / 2, (a_first, b_first)))
        return out


# ---------------------------------------------------------------------------------------------- measuring


def wilson(successes: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return float("nan"), float("nan")
    z, p = 1.96, successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def score(task: Task, judgments: Sequence[PairwiseJudgment]) -> dict[str, float]:
    agree = sum(
        1.0 if j.choice == t else 0.5 if j.choice == "tie" else 0.0
        for j, t in zip(judgments, task.truth, strict=True)
    )
    n = len(judgments)
    low, high = wilson(agree, n)
    return {
        "n": n,
        "agreement": agree / n,
        "low": low,
        "high": high,
        "consistent": sum(j.consistent for j in judgments) / n,
        "mass": sum(j.label_mass for j in judgments) / n,
        "p_first": sum(j.p_first for j in judgments) / n,
    }


def run_judge(
    judge: object, tasks: Sequence[Task], identical: Task
) -> tuple[list[tuple[str, dict[str, float]]], float, float]:
    """Per task scores, P(first) on identical pairs, and pairs judged per second over everything."""
    pairwise: Callable[[Sequence[Pair], Principle], list[PairwiseJudgment]] = judge.pairwise  # type: ignore[attr-defined]
    rows, total, seconds = [], 0, 0.0
    for task in [*tasks, identical]:
        started = time.perf_counter()
        judgments = pairwise(task.pairs, task.principle)
        seconds += time.perf_counter() - started
        total += len(task.pairs)
        rows.append((task.name, score(task, judgments)))
        print(
            f"  {getattr(judge, 'name', judge)}: {task.name} done ({time.perf_counter() - started:.1f}s)",
            file=sys.stderr,
        )
    return rows[:-1], rows[-1][1]["p_first"], total / seconds if seconds else float("inf")


def table(
    results: list[tuple[str, list[tuple[str, dict[str, float]]], float, float]], notes: list[str]
) -> str:
    lines = [
        "| judge | task | N | agreement with truth (95% CI) | swap-consistent | label mass |",
        "|---|---|---:|---|---:|---:|",
    ]
    for name, rows, _, _ in results:
        for task, s in rows:
            lines.append(
                f"| {name} | {task} | {int(s['n'])} | {s['agreement']:.2f} ({s['low']:.2f}–{s['high']:.2f}) | "
                f"{s['consistent']:.2f} | {s['mass']:.2f} |"
            )
    lines += [
        "",
        "| judge | P(first wins) on identical pairs | pairs judged / s (both orders) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {p_first:.2f} | {speed:.1f} |" for name, _, p_first, speed in results]
    return "\n".join([*lines, "", *notes])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hh", type=Path, help="an HH-RLHF test.jsonl.gz (not committed; fetch it yourself)")
    parser.add_argument(
        "--n", type=int, default=24, help="pairs per task (the built-in tasks have at most 48)"
    )
    parser.add_argument("--hh-n", type=int, default=24)
    parser.add_argument("--hh-chars", type=int, default=1000)
    parser.add_argument("--identical", type=int, default=12)
    parser.add_argument(
        "--skip", nargs="*", default=[], help="judges to leave out (smollm2, gemma, generate)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    tasks = [*qa_tasks(args.n, args.seed), sentiment_task(args.n, args.seed)]
    notes = []
    if args.hh is not None:
        tasks.append(hh_task(args.hh, args.hh_n, args.hh_chars, args.seed))
    else:
        notes.append("HH-RLHF: no file given (--hh), so no human-preference row.")
    identical = identical_task(tasks[0], args.identical)
    results = []
    if "smollm2" not in args.skip or "generate" not in args.skip:
        smollm = load_model("smollm2-135m-instruct", dtype="float32")
    if "smollm2" not in args.skip:
        judge = ModelJudge(smollm, batch_size=8)
        results.append(("smollm2-135m-instruct, log-prob", *run_judge(judge, tasks, identical)))
    if "gemma" not in args.skip:
        gemma = load_model("gemma-270m", dtype="float32")
        judge = ModelJudge(gemma, batch_size=8)
        results.append(("gemma-270m (base, prompt), log-prob", *run_judge(judge, tasks, identical)))
    if "generate" not in args.skip:
        parse = GenerateThenParse(ModelJudge(smollm), seed=args.seed)
        results.append(("smollm2-135m-instruct, generate-then-parse", *run_judge(parse, tasks, identical)))
        notes.append(
            f"generate-then-parse: a letter A/B was parsed from {parse.parsed} of {parse.asked} replies."
        )
    results.append(("random", *run_judge(RandomJudge(args.seed), tasks, identical)))
    results.append(("longer answer wins", *run_judge(longer_answer_judge(), tasks, identical)))
    load = os.getloadavg()
    notes.append(
        f"Machine: {machine_line(machine())}; load average {load[0]:.1f} (shared); whole run "
        f"{time.perf_counter() - started:.0f} s. Judges in float32; seed {args.seed}."
    )
    print(table(results, notes))


if __name__ == "__main__":
    main()

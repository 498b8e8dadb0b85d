"""How good are small AI judges? Agreement with known truth, swap consistency, position bias, speed.

Run (HF_HUB_OFFLINE=1; about 30 minutes of 2 quiet CPU cores at the defaults, far longer on a shared
machine; `--skip gemma generate` leaves judges out):

    nice -n 19 python benchmarks/judges.py --hh PATH/TO/hh-rlhf/harmless-base/test.jsonl.gz

It prints a markdown table (the lead pastes it into BENCHMARKS.md); each judge's rows also go to
stderr as soon as it is done. Tasks, each a set of answer pairs whose better answer is known,
shuffled so the better one is A half the time (60 pairs each by default):

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

Past 48 pairs the built-in questions are used again with another wrong answer, ramble or invented
question. Judges: smollm2-135m-instruct (its chat template) and gemma-270m (base, a plain prompt ending
"The better answer is Answer"), each two ways: log-prob (`ModelJudge`: its probabilities of the two
letters, read in both orders) and generate-then-parse (`GeneratingJudge`: the same question, a greedy
reply of at most --reply-tokens tokens, the first stand-alone A/B parsed, no letter counting as no
answer, ½); random (an independent coin per shown order) and longer-answer-wins.

Columns: agreement = fraction of pairs whose hard label (the mean over both orders) is the true one,
ties counting ½, ± its binomial standard error, with a 95% Wilson interval; swap-consistent =
fraction of pairs whose two shown orders give the same hard label; label mass = the probability the
two letters had before renormalising (generate-then-parse: the fraction of replies with a letter);
judgments/s = pairs judged ÷ wall seconds of judging (each pair is asked in both orders, so two model
reads per pair; model already loaded; the machine's load is shown). Position bias is P(the answer
shown first wins) on pairs of two identical answers (½ for an unbiased judge).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, machine_line
from steering.eval.questions import builtin_questions
from steering.feedback.constitution import Principle, load_constitution
from steering.feedback.judges import (
    GeneratingJudge,
    ModelJudge,
    Pair,
    PairwiseJudgment,
    longer_answer_judge,
    vader_judge,
)
from steering.models import load_model

CONSTITUTIONS = Path(__file__).resolve().parent / "data" / "constitutions"
RAMBLES = (
    " Well, that is a good one, and there is a lot more that one could say about it.\n"
    "People have thought about this for a very long time, in many places and in many ways.\n"
    "Anyway, I hope this helps, and there is always more to learn.",
    " I think so, at least, though I could be wrong about it.\n"
    "It reminds me of something I read a long time ago, but I forget where.\n"
    "Let me know if you want me to say more about it.",
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
    """correct, one-line and no-question pairs from the built-in questions.

    There are 48 questions; past 48 pairs each question is used again with a different wrong answer,
    ramble or invented question (round r of the questions), so no pair repeats.
    """
    qa = load_constitution(CONSTITUTIONS / "qa.toml")
    questions = builtin_questions()
    rng = random.Random(seed)
    correct, one_line, invented = [], [], []
    for round_ in range(math.ceil(n / len(questions))):
        for i, q in enumerate(questions):
            others = [
                o for o in questions if o.category == q.category and o.answers[0] not in q.answers
            ] or questions
            wrong = others[(rng.randrange(len(others)) + round_) % len(others)].answers[0]
            correct.append((q.question, f"{q.answers[0]}.", f"{wrong}."))
            ramble = RAMBLES[round_ % len(RAMBLES)]
            one_line.append((q.question, f"{q.answers[0]}.", f"{q.answers[0]}.{ramble}"))
            other = questions[(i + 7 + 5 * round_) % len(questions)]
            invented.append(
                (
                    q.question,
                    f"{q.answers[0]}.",
                    f"{q.answers[0]}.\nQ: {other.question}\nA: {other.answers[0]}.",
                )
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
    triples: list[tuple[str, str, str]] = []
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


# ---------------------------------------------------------------------------------------------- measuring


def wilson(successes: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return float("nan"), float("nan")
    z, p = 1.96, successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def score(task: Task, judgments: Sequence[PairwiseJudgment]) -> dict[str, float]:
    agree = sum(
        1.0 if j.choice == t else 0.5 if j.choice == "tie" else 0.0
        for j, t in zip(judgments, task.truth, strict=True)
    )
    n = len(judgments)
    low, high = wilson(agree, n)
    p = agree / n
    return {
        "n": n,
        "agreement": p,
        "se": math.sqrt(p * (1 - p) / n),  # binomial standard error of the agreement
        "low": low,
        "high": high,
        "consistent": sum(j.consistent for j in judgments) / n,
        "mass": sum(j.label_mass for j in judgments) / n,
        "p_first": sum(j.p_first for j in judgments) / n,
    }


@dataclass
class Result:
    """One judge's rows: per task scores, P(first) on identical pairs, speed, parse failures, load."""

    name: str
    rows: list[tuple[str, dict[str, float]]]
    p_first: float
    per_second: float
    parse_failures: str
    load: float


def run_judge(name: str, judge: object, tasks: Sequence[Task], identical: Task) -> Result:
    """Per task scores, P(first) on identical pairs, and pairs judged per wall second over everything."""
    pairwise: Callable[[Sequence[Pair], Principle], list[PairwiseJudgment]] = judge.pairwise  # type: ignore[attr-defined]
    rows, total, seconds, loads = [], 0, 0.0, []
    for task in [*tasks, identical]:
        started = time.perf_counter()
        judgments = pairwise(task.pairs, task.principle)
        seconds += time.perf_counter() - started
        total += len(task.pairs)
        loads.append(os.getloadavg()[0])
        rows.append((task.name, score(task, judgments)))
        print(f"  {name}: {task.name} done ({time.perf_counter() - started:.1f}s)", file=sys.stderr)
    failures = "–"
    if isinstance(judge, GeneratingJudge):
        failures = f"{judge.parse_failure_rate:.2f} ({judge.parse_failures}/{judge.replies})"
    speed = total / seconds if seconds else float("inf")
    result = Result(name, rows[:-1], rows[-1][1]["p_first"], speed, failures, max(loads))
    print(table([result], []), file=sys.stderr)  # each judge's rows as soon as it is done
    return result


def table(results: list[Result], notes: list[str]) -> str:
    lines = [
        "| judge | task | N | agreement ± s.e. (95% CI) | swap-consistent | label mass |",
        "|---|---|---:|---|---:|---:|",
    ]
    for result in results:
        for task, s in result.rows:
            lines.append(
                f"| {result.name} | {task} | {int(s['n'])} | {s['agreement']:.2f} ± {s['se']:.2f} "
                f"({s['low']:.2f}–{s['high']:.2f}) | {s['consistent']:.2f} | {s['mass']:.2f} |"
            )
    lines += [
        "",
        "| judge | P(first wins) on identical pairs | judgments / s (pairs, both orders) "
        "| parse failures (replies) | load (1-min, max) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.name} | {r.p_first:.2f} | {r.per_second:.2f} | {r.parse_failures} | {r.load:.1f} |"
        for r in results
    ]
    return "\n".join([*lines, "", *notes])


def model_judges(
    name: str, label: str, args: argparse.Namespace, tasks: list[Task], identical: Task
) -> list[Result]:
    """The log-prob and the generate-then-parse judge on one model (loaded once)."""
    model = load_model(name, dtype="float32")
    judge = ModelJudge(model, batch_size=8)
    results = []
    if "logprob" not in args.skip:
        results.append(run_judge(f"{label}, log-prob", judge, tasks, identical))
    if "generate" not in args.skip:
        writer = GeneratingJudge(judge, max_new_tokens=args.reply_tokens)
        results.append(run_judge(f"{label}, generate-then-parse", writer, tasks, identical))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hh", type=Path, help="an HH-RLHF test.jsonl.gz (not committed; fetch it yourself)")
    parser.add_argument("--n", type=int, default=60, help="pairs per built-in task")
    parser.add_argument("--hh-n", type=int, default=60)
    parser.add_argument("--hh-chars", type=int, default=1000)
    parser.add_argument("--identical", type=int, default=20)
    parser.add_argument("--reply-tokens", type=int, default=4, help="greedy tokens of a generated reply")
    parser.add_argument(
        "--skip", nargs="*", default=[], help="judges to leave out: smollm2, gemma, logprob, generate"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started, load_before = time.perf_counter(), os.getloadavg()
    tasks = [*qa_tasks(args.n, args.seed), sentiment_task(args.n, args.seed)]
    notes = []
    if args.hh is not None:
        tasks.append(hh_task(args.hh, args.hh_n, args.hh_chars, args.seed))
    else:
        notes.append("HH-RLHF: no file given (--hh), so no human-preference row.")
    identical = identical_task(tasks[0], args.identical)
    results = []
    if "smollm2" not in args.skip:
        results += model_judges("smollm2-135m-instruct", "smollm2-135m-instruct", args, tasks, identical)
    if "gemma" not in args.skip:
        results += model_judges("gemma-270m", "gemma-270m (base, prompt)", args, tasks, identical)
    results.append(run_judge("random", RandomJudge(args.seed), tasks, identical))
    results.append(run_judge("longer answer wins", longer_answer_judge(), tasks, identical))
    load_after = os.getloadavg()
    notes.append(
        f"Machine: {machine_line(machine())}; shared: load average (1, 5, 15 min) "
        f"{' '.join(f'{x:.2f}' for x in load_before)} at the start, "
        f"{' '.join(f'{x:.2f}' for x in load_after)} at the end; whole run "
        f"{time.perf_counter() - started:.0f} s. Judges in float32, batch 8; generated replies greedy, "
        f"at most {args.reply_tokens} tokens; seed {args.seed}."
    )
    print(table(results, notes))


if __name__ == "__main__":
    main()

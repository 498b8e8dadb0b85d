"""RLHF and RLAIF end to end, small: sample pairs → label them → reward model → KL-regularised RL → measure.

The last three stages of InstructGPT (Ouyang et al. 2022) and their AI-labelled twin, RLAIF (Bai et al.
2022, "Constitutional AI"; Lee et al. 2023), at a size two CPU cores run in minutes. One function,
`run_feedback_loop`, read top to bottom:

1. **Candidates.** Two samples of the base per prompt (`feedback.add_candidates`: books stored), queued
   as compare items in a fresh feedback database. The prompts are split: `train` prompts feed the reward
   model and RL, `heldout` prompts (other openings) measure both.
2. **Labels.** Either *a person*, played by a programmatic judge that answers through the annotation
   app's HTTP API exactly as the page's script does (`GET /api/next/compare`, `POST /api/compare` with
   left/right as shown, a real uvicorn server on loopback: `label_through_app`), or *an AI judge* reading
   one principle of a constitution, both orders averaged (`feedback.judges.judge_store`). Both land in
   the same tables; the rest of the loop cannot tell them apart.
3. **Reward model.** The store's preferences (`export_feedback`, ties left out) on the train prompts →
   Bradley–Terry on LoRA + a scalar head (`train.train_reward_model`). Its accuracy on the held-out
   prompts' labelled pairs is the first number: did it learn the labeller's preference, or the prompts?
4. **RL.** REINFORCE with a leave-one-out baseline on r − β·KL (`train.train_rl`) from the base, the
   reward model scoring rollouts on its own copy of the model.
5. **Measured on held-out prompts:** the labeller's soft win rate of the policy's answer against the
   base's answer to the same prompt, P(policy ≻ base) averaged over both shown orders (½ = no change);
   the same under a `truth` judge when one is given (for RLAIF: did the AI label what the truth would
   have?); the policy's KL(q ‖ p) per answer from its books. Every mean carries its standard error.

A 135M judge's labels are noisy and 2 × ~50 pairs are few: the numbers say how far this small loop
gets, with the uncertainty to tell a change from noise.
"""

from __future__ import annotations

import http.client
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steering.controls import Adapter
from steering.decode import Samples, generate
from steering.errors import InvalidArgument
from steering.feedback import FeedbackStore, export_feedback
from steering.feedback.app import create_app
from steering.feedback.app_server import serve_in_thread
from steering.feedback.candidates import add_candidates
from steering.feedback.constitution import Constitution, Principle, parse_constitution
from steering.feedback.judges import Judge, Pair, judge_store
from steering.jsonl import read_jsonl
from steering.models import LanguageModel, load_model
from steering.paths import atomic_write_text
from steering.train import RewardModel, RewardModelConfig, RLConfig, train_reward_model, train_rl

# Story openings written for this loop: neutral, so that the tone of the continuation is the model's.
# The first 48 train the reward model and the policy; the last 24 are held out for every measurement.
OPENINGS = [
    "The bus stopped at the corner and", "My aunt sent a letter saying that", "The meeting on Monday",
    "When we opened the old box, we found", "The weather this week has been", "Our team finished the project and",
    "The shop on the main road", "After dinner my father told us", "The children in the park were",
    "I finally read the book my friend gave me, and", "The new phone arrived today and", "The road to the village",
    "My first day at the new job", "The museum was full of", "We moved into the flat upstairs and",
    "The doctor looked at the results and", "On the way home I saw", "The football match ended with",
    "Grandma's kitchen always", "The email from the manager said", "The river behind the school",
    "Last summer we drove to the coast and", "The neighbour's cat", "The exam results came out and",
    "My sister started a small business that", "The library closed early because", "The cake we baked",
    "At the airport, the queue", "The old bridge over the canal", "Our holiday in the mountains",
    "The film started late and", "The new teacher asked us to", "The market on Saturday",
    "When the power went out,", "My friend's wedding was", "The hospital waiting room",
    "The letter from the bank", "We planted tomatoes in the garden and", "The city council decided to",
    "The first snow of the year", "My grandfather's watch", "The restaurant on the square",
    "The train journey to the north", "Our landlord called to say", "The village festival",
    "The results of the experiment", "My cousin visited us and", "The quiet street where I grew up",
    # held out
    "The parcel was left at the door and", "Our old car finally", "The lecture this morning",
    "My colleague told me that", "The hotel room was", "The storm last night",
    "The school play was", "When I checked my messages,", "The walk along the beach",
    "The concert hall was", "My brother's new flat", "The interview went",
    "The supermarket had run out of", "Our plans for the weekend", "The painting in the hallway",
    "The swimming pool at the centre", "The new road through town", "My neighbour knocked on the door and",
    "The ferry across the bay", "The birthday party", "The report on my desk",
    "The old photographs showed", "The bakery near the station", "The evening news said that",
]  # fmt: skip
TRAIN_OPENINGS, HELDOUT_OPENINGS = OPENINGS[:48], OPENINGS[48:]
# The principle both labellers read (benchmarks/data/constitutions/tone.toml holds it too, with another).
# A person standing in as VADER marks two answers whose P(left ≻ right) is within this of ½ as a tie (a
# compound-score difference under 0.2), as people do with two nearly equal answers.
PERSON_TIE_MARGIN = 0.05
TONE = parse_constitution(
    {
        "name": "tone",
        "principles": [{"id": "positive", "text": "The answer is positive, warm and cheerful in tone."}],
    },
    source="steering.recipes.feedback_loop.TONE",
)


@dataclass(frozen=True)
class LoopSize:
    """How big one loop is (the defaults: the benchmark's size; `quick()`: a test's)."""

    # Candidates per prompt: a compare item per pair of them (4 → 6 pairs). With 2 (44 train pairs after
    # VADER's ties) gemma-270m's reward model fit its pairs (train accuracy 1.0) and ordered the held-out
    # ones at chance (0.42 ± 0.12, n = 19): too few pairs to learn tone from.
    samples_per_prompt: int = 4
    max_new_tokens: int = 16
    # 3 epochs at 1e-3: with the stand-in person's near-ties marked as ties, the held-out accuracy was
    # 0.74 ± 0.05 (n = 68); at 2 epochs of 3e-4 and without the tie margin, 0.46 ± 0.05 (BENCHMARKS.md).
    rm_epochs: int = 3
    rm_learning_rate: float = 1e-3
    rl_steps: int = 8
    rl_learning_rate: float = 3e-4
    beta: float = 0.1
    rl_prompts_per_step: int = 4
    rl_samples_per_prompt: int = 4
    eval_samples: int = 2  # policy and base answers per held-out prompt
    lora_rank: int = 8
    batch_size: int = 16  # rows decoded together

    @classmethod
    def quick(cls) -> LoopSize:
        """A toy size for tests and `--limit` demos: every stage runs, none learns much."""
        return cls(samples_per_prompt=2, max_new_tokens=8, rm_epochs=1, rl_steps=2, rl_prompts_per_step=2,
                   rl_samples_per_prompt=2, eval_samples=1, lora_rank=4)  # fmt: skip


@dataclass(frozen=True)
class Labeller:
    """Who labels the pairs: a judge reading one principle, as a person through the app or as itself.

    Attributes:
        judge: any `feedback.judges.Judge` (a programmatic one to stand in for people, a model judge).
        principle: what "better" means.
        constitution: the principle's constitution (the judge's annotator id carries its digest).
        through_app: answer through the annotation app's HTTP API as a person would (the judge only
            sees what the page shows: the two answers in the order shown), instead of writing its
            judgments into the store as an AI judge.
        tie_margin: through the app, answer "tie" when |P(left ≻ right) − ½| ≤ this, as a person
            marks two nearly equal answers (0: a tie only at exactly ½).
    """

    judge: Judge
    principle: Principle
    constitution: Constitution
    through_app: bool = False
    tie_margin: float = 0.0

    @property
    def name(self) -> str:
        route = "a person via the app (played by" if self.through_app else "AI judge"
        closing = ")" if self.through_app else ""
        return f"{route} {self.judge.name}{closing}, principle {self.principle.id!r}"


@dataclass(frozen=True)
class Mean:
    """A sample mean with its standard error (σ/√n) and the number of values."""

    value: float
    se: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Mean:
        n = len(values)
        if n == 0:
            return cls(math.nan, math.nan, 0)
        mean = sum(values) / n
        var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else math.nan
        return cls(mean, math.sqrt(var / n) if n > 1 else math.nan, n)

    def __str__(self) -> str:
        return f"{self.value:.3f} ± {self.se:.3f}" if math.isfinite(self.se) else f"{self.value:.3f}"


@dataclass(frozen=True)
class LoopResult:
    """What one RLHF/RLAIF loop measured (see the module docstring for each number)."""

    labeller: str
    model: str
    train_pairs: int
    heldout_pairs: int
    ties: int  # labelled pairs left out of training: no preference either way, or identical texts
    rm_accuracy: Mean  # held-out pairs the reward model orders as the labeller did
    rm_train_accuracy: float  # its last training batch's accuracy
    rl_steps: int
    rl_reward: tuple[float, float]  # reward-model score of the rollouts: first step, mean of the last 3
    kl: Mean  # KL(q ‖ p) per held-out answer of the policy (books)
    win_rate: Mean  # the labeller's P(policy ≻ base) on held-out prompts, both orders
    truth_win_rate: Mean | None  # the same under the truth judge
    truth_name: str | None
    examples: list[dict[str, str]]
    seconds: dict[str, float] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The result as JSON-ready values (the benchmark's results file)."""

        def mean(m: Mean | None) -> dict[str, float] | None:
            return None if m is None else {"value": m.value, "se": m.se, "n": m.n}

        return {
            "labeller": self.labeller, "model": self.model, "train_pairs": self.train_pairs,
            "heldout_pairs": self.heldout_pairs, "ties": self.ties, "rm_accuracy": mean(self.rm_accuracy),
            "rm_train_accuracy": self.rm_train_accuracy, "rl_steps": self.rl_steps, "rl_reward": self.rl_reward,
            "kl": mean(self.kl), "win_rate": mean(self.win_rate), "truth_win_rate": mean(self.truth_win_rate),
            "truth_name": self.truth_name, "examples": self.examples, "seconds": self.seconds,
        }  # fmt: skip


# ------------------------------------------------------------------------------------------ 2. labels


def label_through_app(
    store: FeedbackStore, judge: Judge, principle: Principle, *, name: str, tie_margin: float = 0.0
) -> int:
    """Answer every compare item through the app's HTTP API, the judge standing in for a person.

    A real server (uvicorn on a free loopback port, tokens required), one annotator `name` with its
    token, and the page's own protocol: ask for the next item, judge the two answers *as shown*, post
    left / right / tie (within `tie_margin` of ½) with the item's request id. Returns the number of
    answers the server recorded.
    """
    token = store.add_annotator(name)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    answered = 0
    with serve_in_thread(create_app(store, require_tokens=True)) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            while True:
                item = _call(connection, "GET", "/api/next/compare", headers)
                if item.get("item_id") is None:
                    return answered
                shown = item["responses"]
                pair = Pair(item["prompt"]["text"], shown[0]["text"], shown[-1]["text"])
                p_left = judge.pairwise([pair], principle)[0].p_a
                close = abs(p_left - 0.5) <= tie_margin
                choice = "tie" if close else "left" if p_left > 0.5 else "right"
                body = {"item_id": item["item_id"], "request_id": item["request_id"], "choice": choice}
                _call(connection, "POST", "/api/compare", headers, body)
                answered += 1
        finally:
            connection.close()


def _call(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    headers: dict[str, str],
    body: object = None,
) -> dict[str, Any]:
    connection.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    response = connection.getresponse()
    payload = json.loads(response.read() or b"{}")
    if response.status != 200:
        raise RuntimeError(f"the annotation app answered {method} {path} with {response.status}: {payload}")
    return dict(payload)


def label(store: FeedbackStore, labeller: Labeller) -> int:
    """Label every compare item of `store` by `labeller` (see `Labeller`); returns the answers written."""
    if labeller.through_app:
        return label_through_app(
            store,
            labeller.judge,
            labeller.principle,
            name=f"stand-in-{labeller.judge.name}",
            tie_margin=labeller.tie_margin,
        )
    summary = judge_store(store, labeller.judge, labeller.constitution, principles=[labeller.principle])
    return summary.judged


# ------------------------------------------------------------------------------------------ the loop


def run_feedback_loop(
    model_name: str,
    labeller: Labeller,
    out_dir: str | Path,
    *,
    train_prompts: Sequence[str] = TRAIN_OPENINGS,
    heldout_prompts: Sequence[str] = HELDOUT_OPENINGS,
    size: LoopSize | None = None,
    truth: tuple[Judge, Principle] | None = None,
    seed: int = 0,
    sample_model: LanguageModel | None = None,
    train_model: LanguageModel | None = None,
    reward_model_base: LanguageModel | None = None,
    progress: Callable[[str], None] | None = None,
    decode_progress: Callable[[int], None] | None = None,
) -> LoopResult:
    """Sample pairs, label them, train a reward model, RL the base on it, and measure (module docstring).

    Args:
        model_name: the registry name of the base (each stage loads the copy it needs when not given).
        out_dir: the feedback database, the exported preferences, the reward model's and the policy's
            runs, and `result.json`.
        truth: a judge and principle to score the policy against besides the labeller (e.g. VADER when
            an AI judge labelled).
        sample_model: the model that samples candidates and held-out answers (bfloat16 is fastest).
        train_model, reward_model_base: float32 copies the policy and the reward model train on (two
            copies: the reward model scores rollouts while the policy's adapter is being trained).
        progress: called with the name of each stage as it starts.
        decode_progress: called with the token slots the candidates and the held-out answers decode
            (`decode_slots(...)` in all), as `steering.generate` reports them.
    """
    size = size or LoopSize()
    if set(train_prompts) & set(heldout_prompts):
        raise InvalidArgument(
            "train and held-out prompts overlap: the held-out numbers would measure training prompts",
            received=sorted(set(train_prompts) & set(heldout_prompts))[:3],
            fix="pass disjoint prompt lists",
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timer = StageTimer(progress)
    sampler = sample_model or load_model(model_name)
    # 1. candidates: a fresh database (a rerun in the same folder starts over: the labels are its own)
    timer.start("candidates")
    db = start_database(out)
    with FeedbackStore.open(db) as store:
        add_candidates(
            store, sampler, [*train_prompts, *heldout_prompts], n=size.samples_per_prompt,
            max_new_tokens=size.max_new_tokens, seed=seed, batch_size=size.batch_size, kinds=("compare",),
            source="feedback_loop", settings={"temperature": 1.0}, progress=decode_progress,
        )  # fmt: skip
        # 2. labels
        timer.start("labels")
        label(store, labeller)
        timer.start("reward model")
        export = export_feedback(store, "preferences", out / "preferences.jsonl")
    rows = [row for _, _, row in read_jsonl(out / "preferences.jsonl", what="preferences", example="")]
    heldout_set = set(heldout_prompts)
    train_rows = [r for r in rows if r["prompt"] not in heldout_set]
    heldout_rows = [r for r in rows if r["prompt"] in heldout_set]
    if len(train_rows) < 2 or not heldout_rows:
        raise InvalidArgument(
            f"the labeller preferred one answer in only {len(train_rows)} train and {len(heldout_rows)} held-out "
            "pairs: too few to train and measure a reward model",
            received=labeller.name,
            fix="use more prompts, more samples per prompt, or a labeller that separates the answers",
        )
    train_file = out / "preferences-train.jsonl"
    atomic_write_text(train_file, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in train_rows))

    # 3. reward model (Bradley–Terry on the train prompts' pairs), scored on the held-out pairs
    rm_base = reward_model_base or load_model(model_name, dtype="float32")
    rm_config = RewardModelConfig(
        data=str(train_file), model=model_name, out=str(out / "reward-model"), lora_rank=size.lora_rank,
        lora_alpha=2 * size.lora_rank, learning_rate=size.rm_learning_rate, epochs=size.rm_epochs, warmup_steps=0,
        batch_size=8, eval_fraction=0.0, save_every=10_000, seed=seed, max_length=128,
    )  # fmt: skip
    rm_run = train_reward_model(rm_config, model=rm_base)
    scorer = RewardModel(rm_base, rm_run.adapter)
    chosen = scorer([r["prompt"] for r in heldout_rows], [r["chosen"] for r in heldout_rows])
    rejected = scorer([r["prompt"] for r in heldout_rows], [r["rejected"] for r in heldout_rows])
    rm_accuracy = Mean.of([float(c > r) for c, r in zip(chosen, rejected, strict=True)])
    trained = [r["accuracy"] for r in rm_run.metrics if "accuracy" in r]

    # 4. RL on the reward model, from the base
    timer.start("RL")
    prompts_file = out / "rl-prompts.jsonl"
    atomic_write_text(prompts_file, "".join(json.dumps({"prompt": p}) + "\n" for p in train_prompts))
    rl_config = RLConfig(
        data=str(prompts_file), model=model_name, out=str(out / "policy"), beta=size.beta,
        learning_rate=size.rl_learning_rate, batch_size=size.rl_prompts_per_step,
        samples_per_prompt=size.rl_samples_per_prompt, max_new_tokens=size.max_new_tokens, lora_rank=size.lora_rank,
        lora_alpha=2 * size.lora_rank, max_steps=size.rl_steps, epochs=size.rl_steps, warmup_steps=0,
        save_every=10_000, seed=seed,
    )  # fmt: skip
    policy_run = train_rl(
        rl_config, reward=scorer, model=train_model or load_model(model_name, dtype="float32")
    )
    rewards = [r["reward"] for r in policy_run.metrics if "reward" in r]

    # 5. measured on held-out prompts: policy vs base, same seed, both shown orders
    timer.start("measure")
    settings = {"n": size.eval_samples, "max_new_tokens": size.max_new_tokens, "seed": seed + 1,
                "batch_size": size.batch_size, "progress": decode_progress}  # fmt: skip
    base = generate(sampler, list(heldout_prompts), **settings)  # type: ignore[arg-type]
    policy = generate(sampler, list(heldout_prompts), controls=[Adapter(policy_run.adapter)], **settings)  # type: ignore[arg-type]
    pairs = [Pair(b.prompt, q.text, b.text) for q, b in zip(policy, base, strict=True)]
    win = Mean.of([j.p_a for j in labeller.judge.pairwise(pairs, labeller.principle)])
    truth_win = Mean.of([j.p_a for j in truth[0].pairwise(pairs, truth[1])]) if truth else None
    timer.start(None)
    result = LoopResult(
        labeller=labeller.name,
        model=model_name,
        train_pairs=len(train_rows),
        heldout_pairs=len(heldout_rows),
        ties=sum(export.skipped.values()),
        rm_accuracy=rm_accuracy,
        rm_train_accuracy=trained[-1] if trained else math.nan,
        rl_steps=policy_run.steps,
        rl_reward=(rewards[0], sum(rewards[-3:]) / len(rewards[-3:])),
        kl=_kl(policy),
        win_rate=win,
        truth_win_rate=truth_win,
        truth_name=truth[0].name if truth else None,
        examples=[
            {"prompt": p.prompt, "base": p.b, "policy": p.a} for p in pairs[:: max(1, len(pairs) // 4)][:4]
        ],
        seconds=timer.seconds,
    )
    atomic_write_text(out / "result.json", json.dumps(result.record(), indent=1, ensure_ascii=False) + "\n")
    return result


LOOP_MARK = ".feedback-loop"  # in a folder whose feedback.db a loop made (and may remake)


LOOP_RUNS = ("reward-model", "policy")  # the training runs a loop makes in its folder


def start_database(out: Path) -> Path:
    """`out/feedback.db`, new: what a loop made before is replaced; anyone else's is refused, never deleted.

    A folder a loop made (its mark is there) starts over: its database and its two training runs are
    removed, so that running a loop again in the same folder (`steer demo` twice) runs it anew.

    Raises:
        InvalidArgument: `out` holds a feedback.db that no loop made (people's answers, perhaps).
    """
    db = out / "feedback.db"
    ours = (out / LOOP_MARK).is_file()
    if db.exists() and not ours:
        raise InvalidArgument(
            f"{out} already holds a feedback database that this loop did not make",
            received=str(db),
            fix="give the loop a folder of its own (its database is remade on every run)",
        )
    for leftover in out.glob("feedback.db*"):
        leftover.unlink()
    if ours:
        for run in LOOP_RUNS:
            shutil.rmtree(out / run, ignore_errors=True)
    (out / LOOP_MARK).write_text("this folder's feedback.db is remade by steering.recipes.feedback_loop\n")
    return db


def decode_slots(train_prompts: int, heldout_prompts: int, size: LoopSize) -> int:
    """Token slots a loop decodes outside training: the candidates, then base and policy held-out answers."""
    candidates = (train_prompts + heldout_prompts) * size.samples_per_prompt
    return (candidates + 2 * heldout_prompts * size.eval_samples) * size.max_new_tokens


class StageTimer:
    """Wall seconds per stage of the loop; tells `progress` the name of each stage as it starts."""

    def __init__(self, progress: Callable[[str], None] | None) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}
        self.current: tuple[str, float] | None = None

    def start(self, name: str | None) -> None:
        """End the current stage (if any) and start `name` (None: the last stage has ended)."""
        now = time.perf_counter()
        if self.current is not None:
            self.seconds[self.current[0]] = round(now - self.current[1], 1)
        self.current = None if name is None else (name, now)
        if name is not None and self.progress is not None:
            self.progress(name)


def _kl(samples: Samples) -> Mean:
    """KL(q ‖ p) per answer from the books (a sample whose base books are unknown is left out)."""
    return Mean.of([s.kl for s in samples if math.isfinite(s.kl)])

"""Code checks first, a model judge for the rest: rule-based labels where the truth is computable.

A small model judge reads position more than content (BENCHMARKS.md, "AI judges where the truth is
known": smollm2-135m picks the answer shown first in both orders). Where a reply can be checked by
code — it is empty, it breaks the format the instruction asked for, it misses the accepted answer —
asking a judge is both slower and worse than checking. `ChecksFirstJudge` does what rule-based
rewards do (Mu et al. 2024, "Rule Based Rewards for Language Model Safety"): `checks(prompt, answer)`
scores a reply in [0, 1], or returns None when it knows nothing about the prompt; where two replies'
scores differ the checks decide, P(A ≻ B) = ½ + (s_A − s_B)/2 in both orders (as `ScoreJudge`); where
they tie or the prompt is unknown, the model judge decides. `decided_by_checks` counts the pairs the
checks decided, so a report can say where its labels came from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from steering.feedback.constitution import Principle
from steering.feedback.judge_contract import Judge, Pair, PairwiseJudgment, Rating, check_same_length
from steering.feedback.score_judges import check_unit_scores, interpolated_rating

Checks = Callable[[str, str], float | None]


@dataclass
class ChecksFirstJudge:
    """`checks` decide where they tell two replies apart; `judge` decides the rest.

    Args:
        checks: (prompt, answer) → a score in [0, 1], or None for a prompt the checks know nothing of.
        judge: the judge of everything the checks leave open (any `Judge`).
        checks_name: the checks' name in this judge's name (its annotator id in the store).

    Ratings: a reply that fails a check (score < 1) is rated by the checks (1 + 6·s), capped by the
    judge's rating; one that passes them all, or is unknown to them, by the judge. Critiques: a failed
    check says what failed; otherwise the judge critiques.
    """

    checks: Checks
    judge: Judge
    checks_name: str = "checks"
    decided_by_checks: int = field(default=0, init=False)

    @property
    def name(self) -> str:
        return f"{self.judge.name}+{self.checks_name}"

    def scores(self, prompts: Sequence[str], answers: Sequence[str]) -> list[float | None]:
        check_same_length(prompts, answers)
        values = [self.checks(p, a) for p, a in zip(prompts, answers, strict=True)]
        check_unit_scores(
            values,
            what=f"the checks {self.checks_name} scored a reply",
            fix="return a score in [0, 1], or None for a prompt the checks do not know",
        )
        return values

    def pairwise(self, pairs: Sequence[Pair], principle: Principle) -> list[PairwiseJudgment]:
        s_a = self.scores([p.prompt for p in pairs], [p.a for p in pairs])
        s_b = self.scores([p.prompt for p in pairs], [p.b for p in pairs])
        decided = {
            i: 0.5 + (a - b) / 2
            for i, (a, b) in enumerate(zip(s_a, s_b, strict=True))
            if a is not None and b is not None and a != b
        }
        self.decided_by_checks += len(decided)
        open_pairs = [i for i in range(len(pairs)) if i not in decided]
        judged = iter(self.judge.pairwise([pairs[i] for i in open_pairs], principle))
        return [
            PairwiseJudgment(decided[i], (decided[i], decided[i])) if i in decided else next(judged)
            for i in range(len(pairs))
        ]

    def rate(self, prompts: Sequence[str], answers: Sequence[str], principle: Principle) -> list[Rating]:
        values = self.scores(prompts, answers)
        ratings = self.judge.rate(prompts, answers, principle)
        return [
            rating
            if value is None or value >= 1.0 or rating.value <= 1.0 + 6.0 * value
            else interpolated_rating(1.0 + 6.0 * value)
            for value, rating in zip(values, ratings, strict=True)
        ]

    def critique(
        self, prompts: Sequence[str], answers: Sequence[str], principle: Principle, *, seed: int = 0
    ) -> list[str]:
        values = self.scores(prompts, answers)
        failed = {i for i, value in enumerate(values) if value is not None and value < 1.0}
        open_rows = [i for i in range(len(prompts)) if i not in failed]
        written = iter(
            self.judge.critique(
                [prompts[i] for i in open_rows], [answers[i] for i in open_rows], principle, seed=seed
            )
        )
        return [
            f"The answer fails the code checks ({self.checks_name}: {values[i]:.2f} of them passed)."
            if i in failed
            else next(written)
            for i in range(len(prompts))
        ]

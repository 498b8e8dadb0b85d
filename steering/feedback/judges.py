"""AI judges that read written principles: pairwise preferences, 1–7 ratings and critiques.

This module is the judges' front door: every public name of the pieces below is importable from
here (`from steering.feedback.judges import ModelJudge, Pair, judge_store`). Where to read on:

- `judge_contract` — the contract every judge follows (`Judge`: `pairwise`, `rate`, `critique`), the
  shapes it answers in (`Pair`, `PairwiseJudgment`, `Rating`), and the fixed questions put to model
  judges. Pairwise judgments are always made from *both* shown orders.
- `model_judge` — `ModelJudge`: any `LanguageModel` (+ adapter, chat template or base-model cue) as a
  judge, reading its exact probabilities of the answer letters / digits.
- `generating_judge` — `GeneratingJudge`: the common generate-then-parse judge (the model writes a
  short answer greedily, the label is parsed from it), the baseline `ModelJudge` is measured against.
- `score_judges` — programmatic judges (`ScoreJudge`: VADER sentiment, a regex, an exact answer,
  longer-answer-wins) that stand in for people where the truth is known.
- `checked_judge` — `ChecksFirstJudge`: code checks decide the pairs they tell apart (an empty reply, a
  broken format), a model judge the rest (rule-based labels, as rule-based rewards).
- `judge_rewards` — a judge as a reward for RL (`rating_reward`, `pairwise_reward`).
- `judge_storage` — `judge_store`: judgments written into the feedback store under the annotator kind
  `judge:<name>:<constitution digest>`, used downstream as people's answers are.
"""

from steering.feedback.checked_judge import ChecksFirstJudge
from steering.feedback.generating_judge import GeneratingJudge, parse_choice, parse_rating
from steering.feedback.judge_contract import (
    BASE_CUES,
    RATING_SCALE,
    Judge,
    Pair,
    PairwiseJudgment,
    Rating,
    annotator_kind,
    check_same_length,
    critique_text,
    examples_block,
    hard_label,
    pairwise_text,
    rating_text,
)
from steering.feedback.judge_rewards import pairwise_reward, rating_reward
from steering.feedback.judge_storage import (
    JUDGE_KINDS,
    JudgingSummary,
    answered_units,
    describe_pairwise,
    describe_rating,
    judge_store,
    work_units,
)
from steering.feedback.model_judge import ModelJudge, next_token_logprobs, shared_prefix
from steering.feedback.score_judges import (
    ScoreJudge,
    check_unit_scores,
    contains_answer,
    exact_answer_judge,
    interpolated_rating,
    longer_answer_judge,
    normalise,
    regex_judge,
    vader_judge,
)

__all__ = [
    "BASE_CUES",
    "JUDGE_KINDS",
    "RATING_SCALE",
    "ChecksFirstJudge",
    "GeneratingJudge",
    "Judge",
    "JudgingSummary",
    "ModelJudge",
    "Pair",
    "PairwiseJudgment",
    "Rating",
    "ScoreJudge",
    "annotator_kind",
    "answered_units",
    "check_same_length",
    "check_unit_scores",
    "contains_answer",
    "critique_text",
    "describe_pairwise",
    "describe_rating",
    "exact_answer_judge",
    "examples_block",
    "hard_label",
    "interpolated_rating",
    "judge_store",
    "longer_answer_judge",
    "next_token_logprobs",
    "normalise",
    "pairwise_reward",
    "pairwise_text",
    "parse_choice",
    "parse_rating",
    "rating_reward",
    "rating_text",
    "regex_judge",
    "shared_prefix",
    "vader_judge",
    "work_units",
]

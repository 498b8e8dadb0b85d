"""`Scope`: a conservative membership test over situations, calibrated so that few outsiders get in.

An agent is trusted only inside its scope, and the scope must not claim more than the agent's
fine-tuning generalises to. So the test is built to bound the *false-accept* rate: how often a
situation that is not the agent's business is let in.

The score of a situation is its greatest cosine similarity to the situations the agent was validated
on (its references), with the bundled sentence-embedding model. The threshold comes from split
conformal prediction on situations known to be outside the scope (the calibration outsiders):

    with n outsider scores s_(1) ≤ … ≤ s_(n) and k = ⌈(n + 1)(1 − α)⌉, accept x iff score(x) > s_(k).

If a new outsider is exchangeable with the calibration outsiders (drawn the same way), its rank among
the n + 1 scores is uniform, so P(score > s_(k)) ≤ (n + 1 − k)/(n + 1) ≤ α: the false-accept rate is at
most α on average over calibration sets, whatever the embedding model. It needs k ≤ n, that is
n ≥ ⌈1/α⌉ − 1 outsiders; with fewer, no threshold can promise α and `fit` says how many to add. The
guarantee says nothing about outsiders of a new kind (not drawn like the calibration set), which is why
the realised rate is measured on held-out outsiders and reported next to α.

Optional predicates narrow the scope further (never widen it): `require` regexes of which at least one
must match, `exclude` regexes of which none may. A scope *grows* (`grown`) by adding situations where
the agent was judged adherent to its references and recalibrating on the same outsiders.

A scope is saved as JSON (texts, threshold, α, predicates; the vectors are recomputed on load), so
reading one cannot execute code.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from steering.errors import InputFormatError, InvalidArgument
from steering.models.embeddings import SentenceEmbedder
from steering.paths import atomic_write_text, writing

FORMAT = "steering.scope/1"


def conformal_threshold(outsider_scores: Sequence[float], alpha: float) -> float:
    """The split-conformal threshold: the k-th smallest outsider score, k = ⌈(n + 1)(1 − α)⌉.

    Accepting only scores strictly above it lets in a new exchangeable outsider with probability ≤ α.
    """
    if not 0 < alpha < 1:
        raise InvalidArgument(
            "α (the false-accept rate to allow) must be between 0 and 1",
            received=repr(alpha),
            fix="use e.g. alpha = 0.1",
        )
    n = len(outsider_scores)
    k = math.ceil((n + 1) * (1 - alpha) - 1e-12)
    if k > n:
        needed = math.ceil(1 / alpha - 1 - 1e-12)
        raise InvalidArgument(
            f"too few outside situations to calibrate a scope at α = {alpha}",
            received=f"{n} outside situations",
            fix=f"give at least {needed} situations outside the scope (⌈1/α⌉ − 1), or allow a larger α",
        )
    return float(sorted(outsider_scores)[k - 1])


@dataclass
class Predicates:
    """Regex conditions that narrow a scope: any of `require` must match (if given), none of `exclude`."""

    require: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for pattern in [*self.require, *self.exclude]:
            try:
                re.compile(pattern)
            except re.error as error:
                raise InvalidArgument(
                    f"a scope predicate is not a valid regular expression: {error}",
                    received=repr(pattern),
                    fix="write a Python regular expression, e.g. '(?i)\\bdose\\b'",
                ) from None

    def allow(self, text: str) -> bool:
        if self.require and not any(re.search(p, text) for p in self.require):
            return False
        return not any(re.search(p, text) for p in self.exclude)


@dataclass
class Scope:
    """Which situations an agent is trusted with (see the module docstring for the guarantee).

    Attributes:
        references: situations the agent was validated on; a situation's score is its greatest
            cosine similarity to these.
        outsiders: the calibration situations known to be outside the scope.
        alpha: the false-accept rate the threshold was calibrated for.
        threshold: accept iff score > threshold.
        predicates: regex conditions applied on top (they only ever remove situations).
        embedder: the embedding model's name (a scope is only valid with the model it was fitted with).
    """

    references: list[str]
    outsiders: list[str]
    alpha: float
    threshold: float
    predicates: Predicates = field(default_factory=Predicates)
    embedder: str = ""
    _vectors: torch.Tensor | None = field(default=None, repr=False, compare=False)

    @classmethod
    def fit(
        cls,
        embedder: SentenceEmbedder,
        references: Sequence[str],
        outsiders: Sequence[str],
        *,
        alpha: float = 0.1,
        predicates: Predicates | None = None,
    ) -> Scope:
        """Calibrate a scope on the agent's validated situations and on known outsiders."""
        references = _texts(references, "references")
        outsiders = _texts(outsiders, "outsiders")
        if not references:
            raise InvalidArgument(
                "a scope needs at least one situation the agent was validated on",
                received="no references",
                fix="pass the situations the agent handled well",
            )
        vectors = embedder.embed(references)
        scores = _max_similarity(embedder.embed(outsiders), vectors)
        threshold = conformal_threshold(scores.tolist(), alpha)
        return cls(
            references, outsiders, alpha, threshold, predicates or Predicates(), embedder.name, vectors
        )

    def grown(self, embedder: SentenceEmbedder, accepted: Sequence[str]) -> Scope:
        """A wider scope: `accepted` situations join the references and the threshold is recalibrated."""
        new = [text for text in _texts(accepted, "accepted") if text not in self.references]
        return Scope.fit(
            embedder,
            [*self.references, *new],
            self.outsiders,
            alpha=self.alpha,
            predicates=self.predicates,
        )

    def scores(self, embedder: SentenceEmbedder, situations: Sequence[str]) -> torch.Tensor:
        """Each situation's greatest cosine similarity to the references."""
        self._check_embedder(embedder)
        if self._vectors is None:
            self._vectors = embedder.embed(self.references)
        return _max_similarity(embedder.embed(_texts(situations, "situations")), self._vectors)

    def covers(self, embedder: SentenceEmbedder, situations: Sequence[str]) -> list[bool]:
        scores = self.scores(embedder, situations)
        return [
            bool(score > self.threshold) and self.predicates.allow(text)
            for text, score in zip(situations, scores.tolist(), strict=True)
        ]

    def save(self, path: str | Path) -> None:
        data = {"format": FORMAT, **{k: v for k, v in asdict(self).items() if k != "_vectors"}}
        with writing(Path(path), what="the scope file", fix="choose a folder you can write to"):
            atomic_write_text(Path(path), json.dumps(data, indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Scope:
        path = Path(path)
        fix = "fit the scope again (Scope.fit) and save it"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputFormatError(
                f"cannot read the scope file {path}: {error}", received=str(path), fix=fix
            ) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputFormatError(
                f"{path} is not a scope file",
                received=repr(data.get("format") if isinstance(data, dict) else data)[:80],
                fix=fix,
            )
        try:
            predicates = Predicates(**data["predicates"])
            scope = cls(
                _texts(data["references"], "references"),
                _texts(data["outsiders"], "outsiders"),
                float(data["alpha"]),
                float(data["threshold"]),
                predicates,
                str(data["embedder"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InputFormatError(
                f"{path}: a field is missing or wrong: {error}", received=str(path), fix=fix
            ) from None
        return scope

    def _check_embedder(self, embedder: SentenceEmbedder) -> None:
        if self.embedder and embedder.name != self.embedder:
            raise InvalidArgument(
                f"this scope was fitted with the embedding model {self.embedder!r}",
                received=embedder.name,
                fix=f"use {self.embedder!r}, or fit the scope again with this model",
            )


def coverage_report(
    scope: Scope, embedder: SentenceEmbedder, inside: Sequence[str], outside: Sequence[str]
) -> dict[str, Any]:
    """The realised rates on held-out situations: coverage of insiders, false accepts of outsiders."""
    accepted_in = scope.covers(embedder, inside) if inside else []
    accepted_out = scope.covers(embedder, outside) if outside else []
    return {
        "alpha": scope.alpha,
        "threshold": scope.threshold,
        "inside": len(accepted_in),
        "coverage": sum(accepted_in) / len(accepted_in) if accepted_in else None,
        "outside": len(accepted_out),
        "false_accept": sum(accepted_out) / len(accepted_out) if accepted_out else None,
    }


def _max_similarity(vectors: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    if vectors.shape[0] == 0:
        return torch.zeros(0)
    return (vectors @ references.T).max(dim=1).values  # unit vectors: dot product = cosine


def _texts(values: Any, what: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise InvalidArgument(
            f"{what} must be a list of texts", received=repr(values)[:80], fix='e.g. ["…", "…"]'
        )
    bad = [v for v in values if not isinstance(v, str) or not v.strip()]
    if bad:
        raise InvalidArgument(
            f"{what} must be non-empty texts",
            received=repr(bad[0])[:80],
            fix="remove empty or non-text entries",
        )
    return list(values)

"""The answer check: whether the best entry answers *this* question, once it is close enough.

Ranking says which entry is nearest; it does not say that the nearest entry answers. On a small FAQ most questions
users ask are about the same product but not covered by any entry, and their nearest entry is close (same words,
same domain). The check reads a few features of the query and its two best entries:

- how close the best entry is (its question and passage cosines, BM25, fused score),
- how far ahead of the second it is (``margin``, and per leg), and whether the question and passage legs agree,
- how close the query is to the FAQ's centroid compared with the entry (``specificity``: an in-domain question
  near the centroid but not nearer the entry is about the domain, not about this entry),
- how much of the query's content words (stemmed, accents folded) the entry contains (``coverage``, and weighted
  by idf), and how many are in no entry at all (``unknown``).

A logistic model over these features, fitted by leave-entry-out on covid_quebec_fr
(``evaluation/answer_check_fitting.py``, ``faq-search fit-answerability``), gives the probability that the first
entry answers. The probability to reach depends on the FAQ's size (a five-entry and a five-hundred-entry FAQ do not
share one threshold): the model holds one threshold per fitted size, interpolated in log(size) between them. Below
it the answer is refused, and the reason names the query's words the entry lacks when they pulled the probability
down (``not_covered``), else the group of features that pulled it down most. The model's numbers are a scoring
parameter (``indexing/scoring.AnswerCheckModel``, copied into each index's manifest); this module uses them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...indexing.scoring import FEATURES, AnswerCheckModel, Scoring
from .reasons import reason

#: Which reason a feature's pull stands for when it refuses (see ``AnswerCheck.refusal``).
REASON_OF_FEATURE = {
    "fused": "no_close_entry",
    "question": "no_close_entry",
    "passage": "no_close_entry",
    "lexical": "no_close_entry",
    "specificity": "no_close_entry",
    "margin": "ambiguous",
    "question_margin": "ambiguous",
    "passage_margin": "ambiguous",
    "agree": "ambiguous",
    "coverage": "not_covered",
    "unknown": "not_covered",
    "idf_coverage": "not_covered",
    "terms": "no_close_entry",
}

#: A feature counts at most this many of its scales away from its mean (see ``AnswerCheck.contributions``).
MAX_STANDARD = 4.0


@dataclass(frozen=True)
class Features:
    """The answer check's inputs for one query, with the query words the best entry lacks (for the reason)."""

    values: dict[str, float]
    uncovered: tuple[str, ...]
    entries: int


def features(
    top: tuple[float, float, float, float],
    second_fused: float | None,
    leg_margins: tuple[float, float],
    agree: bool,
    centroid_cosine: float,
    query_terms: dict[str, str],
    entry_terms: frozenset[str],
    idf: dict[str, float],
    entries: int,
) -> Features:
    """The features of one query and its best entry.

    Args:
        top: the best entry's (fused score, best question cosine, best passage cosine, normalised BM25).
        second_fused: the second entry's fused score (None when the FAQ has one entry).
        leg_margins: the best entry's question cosine minus the best other entry's, and the same for passages.
        agree: whether the best question and the best passage belong to the same entry among the candidates.
        centroid_cosine: cosine between the query and the FAQ's mean question and passage vector.
        query_terms: the query's BM25 terms, each with the word that produced it.
        entry_terms: the best entry's BM25 terms.
        idf: each term of the whole FAQ with its BM25 idf (a term in no entry weighs as one in a single entry).
        entries: number of entries in the FAQ.
    """
    fused, question, passage, lexical = top
    n_terms = len(query_terms)
    uncovered = tuple(word for term, word in query_terms.items() if term not in entry_terms)
    unknown = sum(1 for term in query_terms if term not in idf)
    rarest = math.log(1 + (entries - 0.5) / 1.5)  # Lucene's idf of a term in one entry
    weight = {term: idf.get(term, rarest) for term in query_terms}
    total = sum(weight.values())
    missing = sum(weight[term] for term in query_terms if term not in entry_terms)
    values = {
        "fused": fused,
        "question": question,
        "passage": passage,
        "lexical": lexical,
        # One entry: no lead to measure; 0 asks the other features to carry the decision alone.
        "margin": fused - second_fused if second_fused is not None else 0.0,
        "question_margin": leg_margins[0],
        "passage_margin": leg_margins[1],
        "agree": 1.0 if agree else 0.0,
        "specificity": max(question, passage) - centroid_cosine,
        "coverage": (n_terms - len(uncovered)) / n_terms if n_terms else 0.0,
        "unknown": unknown / n_terms if n_terms else 0.0,
        "idf_coverage": 1.0 - missing / total if total > 0 else 0.0,
        "terms": min(n_terms, 8) / 8,
    }
    return Features(values, uncovered, entries)


@dataclass(frozen=True)
class AnswerCheck:
    """The logistic answer check over a fitted model (``AnswerCheckModel``)."""

    model: AnswerCheckModel

    @classmethod
    def from_dict(cls, data: dict) -> AnswerCheck:
        """The check of a model's JSON form; ValueError if it is not a fitted model."""
        return cls(AnswerCheckModel.from_dict(data))

    @classmethod
    def of(cls, scoring: Scoring) -> AnswerCheck | None:
        """The check an index's scoring asks for (None: none)."""
        model = scoring.answer_model()
        return None if model is None else cls(model)

    def threshold(self, entries: int) -> float:
        """The probability to reach in an FAQ of ``entries`` entries (interpolated in log size, clamped)."""
        pairs = self.model.thresholds
        sizes = [math.log(n) for n, _ in pairs]
        return float(np.interp(math.log(max(entries, 1)), sizes, [t for _, t in pairs]))

    def contributions(self, values: dict[str, float]) -> dict[str, float]:
        """Each feature's term in the logit; a feature is taken at most ``MAX_STANDARD`` scales from its mean (a
        value far outside what the fit saw must not decide alone)."""
        m = self.model
        return {
            f: m.weights[f] * max(-MAX_STANDARD, min(MAX_STANDARD, (values[f] - m.mean[f]) / m.scale[f]))
            for f in FEATURES
        }

    def probability(self, values: dict[str, float]) -> float:
        """Estimated probability that the best entry answers the query (0 if a feature is not a number)."""
        z = self.model.bias + sum(self.contributions(values).values())
        if not math.isfinite(z):
            return 0.0
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """``probability`` for rows of features in ``FEATURES`` order (fitting and evaluation)."""
        m = self.model
        w = np.array([m.weights[f] for f in FEATURES])
        mean = np.array([m.mean[f] for f in FEATURES])
        scale = np.array([m.scale[f] for f in FEATURES])
        standard = np.clip((np.asarray(matrix, dtype=np.float64) - mean) / scale, -MAX_STANDARD, MAX_STANDARD)
        z = np.nan_to_num(m.bias + standard @ w, nan=-50.0)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def refusal(self, found: Features) -> dict | None:
        """None when the check accepts the best entry; else the reason it refuses (``SearchOutcome.reason``)."""
        probability = self.probability(found.values)
        if probability >= self.threshold(found.entries):
            return None
        by_reason: dict[str, float] = {}
        for feature, pull in self.contributions(found.values).items():
            code = REASON_OF_FEATURE[feature]
            by_reason[code] = by_reason.get(code, 0.0) + pull
        # Naming the words the entry lacks tells a user (and an assistant) most: it is the reason whenever there
        # are such words and they pulled the probability down; else the group that pulled it down most.
        if found.uncovered and by_reason["not_covered"] < 0:
            return reason("not_covered", probability, found.uncovered)
        by_reason.pop("not_covered")
        return reason(min(by_reason, key=by_reason.get), probability, found.uncovered)

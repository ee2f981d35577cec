"""Whether the best entry answers *this* question, and if not, why: the answer check after ranking.

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
(``service/evaluation/answerability.py``, ``scripts/fit_answerability.py``), gives the probability that the first
entry answers. The probability to reach depends on the FAQ's size (a five-entry and a five-hundred-entry FAQ do not
share one threshold): the model holds one threshold per fitted size, interpolated in log(size) between them. Below
it the answer is refused, and the reason names the query's words the entry lacks when they pulled the probability
down (``not_covered``), else the group of features that pulled it down most. The model is a few numbers, stored in
``answerability.json`` beside this module and copied into each index's manifest (``scoring.answerability``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The features, in the model's order.
FEATURES = (
    "fused",
    "question",
    "passage",
    "lexical",
    "margin",
    "question_margin",
    "passage_margin",
    "agree",
    "specificity",
    "coverage",
    "unknown",
    "idf_coverage",
    "terms",
)

#: Which reason a feature's pull stands for when it refuses (see ``Answerability.decide``).
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

#: Reason codes of ``SearchOutcome.reason`` (docs/api.md), with their English messages.
REASONS = {
    "no_close_entry": "no entry is close enough to the question",
    "ambiguous": "two entries are too close to choose between",
    "not_covered": "the best entry does not cover the question's key words",
    "known_non_answer": "a question marked as not answered by the best entry is closer than its own questions",
    "too_vague": "the question has no word that tells the entries apart (each of its words is in every entry)",
}

#: A feature counts at most this many of its scales away from its mean (see ``Answerability.contributions``).
MAX_STANDARD = 4.0
#: A known non-answer quoted in a message is cut to this many characters.
MAX_QUOTED = 200

MODEL_FILE = Path(__file__).with_name("answerability.json")


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
class Answerability:
    """A fitted logistic answer check: standardised features, weights, bias, and the probability to reach by FAQ
    size (``thresholds``: ``[entries, probability]`` pairs, by increasing size)."""

    weights: dict[str, float]
    mean: dict[str, float]
    scale: dict[str, float]
    bias: float
    thresholds: tuple[tuple[int, float], ...]
    fitted_on: str = ""

    @classmethod
    def from_dict(cls, data: dict) -> Answerability:
        """The check from its JSON form (``answerability.json``, a manifest's ``scoring.answerability``).

        Raises:
            ValueError: a feature is missing or unknown, or a number is not finite, or the threshold is not in 0..1.
        """
        if not isinstance(data, dict):
            raise ValueError(f"answerability must be an object, not {type(data).__name__}")

        def number(value) -> float:  # a JSON number, finite and within float's range; no bool, no string
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{str(value)[:20]!r} is not a number")
            try:
                value = float(value)
            except OverflowError:
                raise ValueError("a number is out of range") from None
            if not math.isfinite(value):
                raise ValueError("a number is not finite")
            return value

        def size(value) -> int:
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10**12:
                raise ValueError(f"{str(value)[:20]!r} is not a number of entries")
            return value

        try:
            check = cls(
                weights={k: number(v) for k, v in data["weights"].items()},
                mean={k: number(v) for k, v in data["mean"].items()},
                scale={k: number(v) for k, v in data["scale"].items()},
                bias=number(data["bias"]),
                thresholds=tuple((size(n), number(t)) for n, t in data["thresholds"]),
                fitted_on=str(data.get("fitted_on", "")),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"answerability is not a fitted check ({exc})") from None
        for table in (check.weights, check.mean, check.scale):
            if set(table) != set(FEATURES):
                raise ValueError(f"answerability must give every feature of {FEATURES}, and only those")
        if any(s <= 0 for s in check.scale.values()):
            raise ValueError("answerability's scales must be positive")
        sizes = [n for n, _ in check.thresholds]
        if not sizes or sizes != sorted(set(sizes)):
            raise ValueError("answerability's thresholds must be [entries, probability] pairs by increasing size")
        if not all(0.0 <= t <= 1.0 for _, t in check.thresholds):
            raise ValueError("answerability's thresholds must be within 0..1")
        return check

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "weights": self.weights,
            "mean": self.mean,
            "scale": self.scale,
            "bias": self.bias,
            "thresholds": [list(pair) for pair in self.thresholds],
            "fitted_on": self.fitted_on,
        }

    def threshold(self, entries: int) -> float:
        """The probability to reach in an FAQ of ``entries`` entries (interpolated in log size, clamped)."""
        sizes = [math.log(n) for n, _ in self.thresholds]
        return float(np.interp(math.log(max(entries, 1)), sizes, [t for _, t in self.thresholds]))

    def contributions(self, values: dict[str, float]) -> dict[str, float]:
        """Each feature's term in the logit; a feature is taken at most ``MAX_STANDARD`` scales from its mean (a
        value far outside what the fit saw must not decide alone)."""
        return {
            f: self.weights[f] * max(-MAX_STANDARD, min(MAX_STANDARD, (values[f] - self.mean[f]) / self.scale[f]))
            for f in FEATURES
        }

    def probability(self, values: dict[str, float]) -> float:
        """Estimated probability that the best entry answers the query (0 if a feature is not a number)."""
        z = self.bias + sum(self.contributions(values).values())
        if not math.isfinite(z):
            return 0.0
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """``probability`` for rows of features in ``FEATURES`` order (fitting and evaluation)."""
        w = np.array([self.weights[f] for f in FEATURES])
        m = np.array([self.mean[f] for f in FEATURES])
        scale = np.array([self.scale[f] for f in FEATURES])
        standard = np.clip((np.asarray(matrix, dtype=np.float64) - m) / scale, -MAX_STANDARD, MAX_STANDARD)
        z = np.nan_to_num(self.bias + standard @ w, nan=-50.0)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def refusal(self, found: Features) -> dict | None:
        """None when the check accepts the best entry; else the reason it refuses (``SearchOutcome.reason``)."""
        probability = self.probability(found.values)
        if probability >= self.threshold(found.entries):
            return None
        pulls = self.contributions(found.values)
        by_reason: dict[str, float] = {}
        for feature, pull in pulls.items():
            code = REASON_OF_FEATURE[feature]
            by_reason[code] = by_reason.get(code, 0.0) + pull
        # Naming the words the entry lacks tells a user (and an assistant) most: it is the reason whenever there
        # are such words and they pulled the probability down; else the group that pulled it down most.
        if found.uncovered and by_reason["not_covered"] < 0:
            return reason("not_covered", probability, found.uncovered)
        by_reason.pop("not_covered")
        return reason(min(by_reason, key=by_reason.get), probability, found.uncovered)


def reason(code: str, confidence: float | None = None, terms: tuple[str, ...] = (), marked: str | None = None) -> dict:
    """The ``reason`` object of a refused answer: a stable code, an English message, the query's words the nearest
    entry lacks (named in the message for ``not_covered``), and the check's probability when it ran.

    Args:
        marked: for ``known_non_answer``, the entry's known non-answer the query is nearest (quoted in the message,
            cut to ``MAX_QUOTED`` characters).
    """
    message = REASONS[code]
    if terms and code == "not_covered":
        message += ": " + ", ".join(terms)
    if marked is not None:
        quoted = marked if len(marked) <= MAX_QUOTED else marked[: MAX_QUOTED - 1].rstrip() + "…"
        message += f": {quoted!r}"
    return {
        "code": code,
        "message": message,
        "terms": list(terms),
        "confidence": None if confidence is None else round(confidence, 4),
    }


def default_answerability() -> Answerability | None:
    """The check fitted for the default model and scoring (None if the file is absent: the threshold alone decides)."""
    if not MODEL_FILE.exists():
        return None
    return Answerability.from_dict(json.loads(MODEL_FILE.read_text(encoding="utf-8")))

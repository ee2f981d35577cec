"""The rules of the answer decision, in the order they apply (``decide``), each a small function of the evidence
the engine gathered about the best-ranked entry."""

from __future__ import annotations

from dataclasses import dataclass

from ...indexing.scoring import Scoring
from .answer_check import AnswerCheck, Features
from .reasons import reason

#: A query at least this near a known non-answer is a copy of it (typos, a word moved): refused when nearer it than
#: the entry's own questions, whatever the margin. A query this near an entry's question is never too vague.
NEAR_COPY = 0.98


@dataclass(frozen=True)
class Evidence:
    """What the decision reads about one query and its best-ranked entry.

    Attributes:
        score: the entry's calibrated score (on the decision's scale: its own question, see ``Scoring``).
        other_score: the best other candidate's calibrated score (None: no other candidate).
        question: the query's cosine with the entry's nearest question (its own or an approved wording).
        marked: its cosine with the entry's nearest known non-answer (-inf: the entry has none).
        marked_text: that known non-answer (quoted in the reason).
        term_entries: for each content word of the query, how many entries contain it.
        features: the answer check's inputs.
    """

    score: float
    other_score: float | None
    question: float
    marked: float
    marked_text: str | None
    term_entries: tuple[int, ...]
    features: Features


def closeness(scores: list[float], threshold: float, margin: float) -> str | None:
    """None when the first of the ranked calibrated ``scores`` reaches ``threshold`` and leads the next by
    ``margin``; else the reason code: ``no_close_entry`` or ``ambiguous``."""
    if not scores:
        return "no_close_entry"
    second = scores[1] if len(scores) > 1 else 0.0
    if scores[0] < threshold:
        return "no_close_entry"
    return None if scores[0] - second >= margin else "ambiguous"


def known_non_answer(marked: float, question: float, margin: float) -> bool:
    """Whether a query this near one of the entry's known non-answers (and this near its questions) is refused:
    nearer the mark by ``margin``, or a near-copy of the mark and nearer it."""
    return marked > question + margin or (marked >= NEAR_COPY and marked > question)


def too_vague(term_entries: tuple[int, ...], entries: int) -> bool:
    """Whether the query has no word that tells the entries apart: every content word it has is in every entry
    of an FAQ of three or more (it only names the product: "chorus pro")."""
    return entries >= 3 and bool(term_entries) and all(n == entries for n in term_entries)


def decide(
    evidence: Evidence, scoring: Scoring, check: AnswerCheck | None, threshold: float | None = None
) -> dict | None:
    """None when the best entry answers; else the reason it does not (``SearchOutcome.reason``): the first rule
    that refuses, in the order of this package's docstring.

    Args:
        threshold: the calibrated score to reach for this request (default: the scoring's ``answer_threshold``).
    """
    threshold = scoring.answer_threshold if threshold is None else threshold
    found = evidence.features
    scores = [evidence.score] + ([evidence.other_score] if evidence.other_score is not None else [])
    refused = closeness(scores, threshold, scoring.answer_margin)
    if refused is not None:
        return reason(refused, terms=found.uncovered)
    if known_non_answer(evidence.marked, evidence.question, scoring.non_answer_margin):
        # Nearer one of the entry's known non-answers than any of its own questions: the FAQ owner said no.
        return reason("known_non_answer", terms=found.uncovered, marked=evidence.marked_text)
    if too_vague(evidence.term_entries, found.entries) and evidence.question < NEAR_COPY:
        return reason("too_vague")
    return check.refusal(found) if check is not None else None

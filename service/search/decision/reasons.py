"""The reasons a best entry is refused as an answer: stable codes, English messages (``SearchOutcome.reason``)."""

from __future__ import annotations

#: Reason codes of ``SearchOutcome.reason`` (docs/api.md), with their English messages.
REASONS = {
    "no_close_entry": "no entry is close enough to the question",
    "ambiguous": "two entries are too close to choose between",
    "not_covered": "the best entry does not cover the question's key words",
    "known_non_answer": "a question marked as not answered by the best entry is closer than its own questions",
    "too_vague": "the question has no word that tells the entries apart (each of its words is in every entry)",
}

#: A known non-answer quoted in a message is cut to this many characters.
MAX_QUOTED = 200


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

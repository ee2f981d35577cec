"""What the query log never keeps: e-mail addresses, phone numbers, IBANs and long runs of digits.

Users paste their own details into a search box ("mon siret 123 456 789 00012 est refusé"): the log keeps the
question's wording, which is what the FAQ owner learns from, and replaces each such detail by a placeholder.
"""

from __future__ import annotations

import hashlib
import re

from ..reviewed import fold

#: (pattern, placeholder), applied in this order: an IBAN or a phone number is also a digit run.
PATTERNS: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE), "<email>"),
    # Two letters, two check digits, then groups of four letters or digits (each with a digit, so that the next
    # word is not taken), spaced or not, and a last short group.
    (re.compile(r"\b[A-Za-z]{2}\d{2}(?:[ ]?(?=[A-Za-z0-9]{0,3}\d)[A-Za-z0-9]{4}){2,7}(?:[ ]?\d{1,3})?\b"), "<iban>"),
    # French numbers (0X or +33 X then four pairs) and international ones (+ then 8 to 15 digits).
    (re.compile(r"(?:(?:\+|00)33[\s.-]?(?:\(0\)[\s.-]?)?|\b0)[1-9](?:[\s.-]?\d{2}){4}\b"), "<phone>"),
    (re.compile(r"\+\d(?:[\s.-]?\d){7,14}\b"), "<phone>"),
    # Six digits or more, spaces, dots or dashes between them allowed: SIREN, SIRET, invoice and account numbers.
    (re.compile(r"\d(?:[\s.-]?\d){5,}"), "<number>"),
)


def redact(text: str) -> str:
    """``text`` with every e-mail address, phone number, IBAN and run of six digits or more replaced."""
    for pattern, placeholder in PATTERNS:
        text = pattern.sub(placeholder, text)
    return text


def normalise(text: str) -> str:
    """The form two wordings of the same query share (``reviewed.fold``: case, accents, spacing and end punctuation
    aside): "Combien ça coûte ?" and "combien ca coute" are one query."""
    return fold(text)


def query_key(text: str) -> str:
    """A short stable id for a (redacted) query: the review queue and its actions name queries by it."""
    return "q" + hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()[:15]

"""What the query log never keeps: e-mail addresses, phone numbers, IBANs and long runs of digits.

Users paste their own details into a search box ("mon siret 123 456 789 00012 est refusé"): the log keeps the
question's wording, which is what the FAQ owner learns from, and replaces each such detail by a placeholder.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from ..reviewed import fold

#: Between the digits of one number: spaces (one or several), dots, slashes, underscores, commas or dashes.
_SEP = r"[\s./_,-]*"

#: (pattern, placeholder), applied in this order: an IBAN or a phone number is also a digit run.
PATTERNS: tuple[tuple[re.Pattern, str], ...] = (
    # A local part (or a quoted one), "@" with or without spaces around it, a domain (an intranet's has no dot).
    (re.compile(r'(?:"[^"\n]{1,64}"|[\w.+%-]+)\s?@\s?[\w-]+(?:\.[\w-]+)*', re.UNICODE), "<email>"),
    # IBANs: two letters, two check digits, then groups of four; in capitals any group goes (the next word is in
    # small letters), otherwise each group needs a digit so that the next word is not taken.
    (re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"), "<iban>"),
    (re.compile(r"\b[A-Za-z]{2}\d{2}(?: ?(?=[A-Za-z0-9]{0,3}\d)[A-Za-z0-9]{4}){2,7}(?: ?\d{1,3})?\b"), "<iban>"),
    # French numbers (0X or +33 X then four pairs) and international ones (+ then 8 to 15 digits).
    (re.compile(rf"(?:(?:\+|00)33{_SEP}(?:\(0\){_SEP})?|\b0)[1-9](?:{_SEP}\d{{2}}){{4}}\b"), "<phone>"),
    (re.compile(rf"\+\d(?:{_SEP}\d){{7,14}}\b"), "<phone>"),
    # Six digits or more, whatever separates them: SIREN, SIRET, card, invoice and account numbers (and dates).
    (re.compile(rf"\d(?:{_SEP}\d){{5,}}"), "<number>"),
)


def _visible(text: str) -> str:
    """Compatibility forms folded (fullwidth "＠", superscript digits) and format characters dropped (zero-width
    spaces, soft hyphens, word joiners), so that a detail cannot hide behind them."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


def redact(text: str) -> str:
    """``text`` with every e-mail address, phone number, IBAN and run of six digits or more replaced."""
    text = _visible(text)
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

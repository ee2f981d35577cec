"""What the query log never keeps: e-mail addresses, phone and other long numbers, IBANs, street addresses and
names introduced as such ("je m'appelle …").

Users paste their own details into a search box ("mon siret 123 456 789 00012 est refusé"): the log keeps the
question's wording, which is what the FAQ owner learns from, and replaces each such detail by a placeholder.

Two steps, both linear in the text's length (no pattern here can backtrack over what it already read: every
repetition is possessive or bounded, and long numbers are found by a scanner, not a regular expression), on a text
cut to ``MAX_INPUT_CHARS`` first:

- ``clean``: the text as the log keeps it, and as the corpus format accepts a question (the review queue's
  decisions copy logged queries into the reviewed file): compatibility forms folded (NFKC: a fullwidth ``＠``,
  superscript digits), invisible characters dropped (format characters, fillers, marks that combine with no
  letter), control characters and every kind of space as one space, at most ``MAX_LOGGED_CHARS`` characters.
- ``redact``: the details replaced, on the cleaned text.

What is still not caught is listed in docs/learning.md (names with no cue before them, addresses without a number
and a kind of street, numbers of five digits or fewer).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from ..reviewed import MAX_QUESTION_CHARS, fold

#: The longest query the log keeps, in characters: what the reviewed file accepts for a question.
MAX_LOGGED_CHARS = MAX_QUESTION_CHARS
#: Characters of a query looked at, at most (the service takes 1,000 by default; NFKC may make one into 18).
MAX_INPUT_CHARS = 4 * MAX_LOGGED_CHARS

#: Characters that show nothing but are not format characters (Unicode's "default ignorable" letters and symbols):
#: Hangul fillers, the braille blank, Khmer inherent vowels, the Mongolian vowel separator, the combining grapheme
#: joiner.
_FILLERS = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u180e\u2800\u3164\uffa0")


def clean(text: str) -> str:
    """``text`` as the log keeps it: NFKC, invisible characters dropped, spaces collapsed, at most
    ``MAX_LOGGED_CHARS`` (cut at a space); always a valid corpus question, or empty when nothing visible is left."""
    text = unicodedata.normalize("NFKC", text[:MAX_INPUT_CHARS])[:MAX_INPUT_CHARS]
    out: list[str] = []
    previous_letter = False
    for c in text:
        kind = unicodedata.category(c)
        if c in _FILLERS or kind in ("Cf", "Cs", "Co", "Cn"):
            continue  # zero-width spaces, soft hyphens, lone surrogates, private and unassigned code points
        if kind[0] == "M":
            if previous_letter:  # an accent on a letter (one NFKC could not compose) stays
                out.append(c)
            continue  # a mark on a digit, a space or nothing: only there to break a number up
        if kind == "Cc" or kind[0] == "Z":
            c = " "  # NUL, tabs, line breaks and every kind of space: one space
        out.append(c)
        previous_letter = kind[0] == "L"
    return _cut(" ".join("".join(out).split()), MAX_INPUT_CHARS)


def _cut(text: str, limit: int) -> str:
    """``text`` at most ``limit`` characters long, cut at its last space before the limit when there is one."""
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    space = head.rfind(" ")
    return (head[:space] if space > limit // 2 else head[:limit]).rstrip()


# ---- e-mail addresses ----

_LOCAL = r"""(?:"[^"\n]{1,64}"|(?<![\w.+%'-])[\w.+%'-]++)"""


def _bracketed(word: str) -> str:
    """``word`` between brackets of any kind: "[at]", "(dot)", "{at}", "<at>"."""
    return r"[\[({<]\s*+" + word + r"\s*+[\])}>]"


#: "@" with or without spaces, "[at]", "(at)", "(arobase)"…
_AT_SIGN = r"\s*+(?:@|" + _bracketed("(?:at|@|arobase|arobas)") + r")\s*+"
#: "at", "arobase" written out between spaces.
_AT_WORD = r"\s++(?:at|arobase|arobas)\s++"
_DOT = r"(?:\s*+(?:\.|" + _bracketed("(?:dot|point)") + r")\s*+|\s++(?:dot|point)\s++)"
_LABEL = r"[\w-]++"

EMAIL = re.compile(
    rf"{_LOCAL}(?:{_AT_SIGN}{_LABEL}(?:{_DOT}{_LABEL})*+|{_AT_WORD}{_LABEL}(?:{_DOT}{_LABEL})++)",
    re.IGNORECASE,
)

# ---- IBANs (before the numbers: an IBAN's digits are a long number too) ----

#: Two letters, two check digits, then groups of four; in capitals any group goes (the next word is in small
#: letters), otherwise each group needs a digit so that the next word is not taken.
IBANS = (
    re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
    re.compile(r"\b[A-Za-z]{2}\d{2}(?: ?(?=[A-Za-z0-9]{0,3}\d)[A-Za-z0-9]{4}){2,7}(?: ?\d{1,3})?\b"),
)

# ---- street addresses ----

_STREETS = (
    "rue|avenue|av|bd|boulevard|bld|place|pl|chemin|impasse|imp|allée|allee|route|rte|quai|cours|square|voie|"
    "passage|résidence|residence|lotissement|lieu-dit|hameau|faubourg|fbg|cité|cite|chaussée|chaussee|promenade|"
    "sentier|esplanade|rond-point|villa|parc|domaine|traverse|montée|montee|côte|cote|ruelle|venelle"
)
#: Words that end an address's name (the sentence goes on).
_STOP = (
    "et|ou|je|j|mon|ma|mes|pour|mais|qui|que|qu|car|donc|est|a|ai|suis|il|elle|on|nous|vous|ne|n|pas|"
    "depuis|comment|pourquoi|quand|merci|svp|avec|sans|sur|dans|chez|si"
)
ADDRESS = re.compile(
    rf"\b\d{{1,4}}(?:\s*+(?:bis|ter|[a-d])\b)?+\s*+,?\s*+(?:{_STREETS})\b\.?+"
    rf"(?:\s++(?!(?:{_STOP})\b)[\w'’.-]++){{0,6}}+"  # the street's name: up to six words
    r"(?:\s*+,?\s*+\d{5}(?:\s++(?!(?:" + _STOP + r")\b)[\w'’-]++){0,3}+)?+",  # a postal code and the town
    re.IGNORECASE,
)

# ---- names introduced as such ----

#: Words that cannot be a name (a cue followed by one of them introduces no name: "bonjour madame, je …").
_NOT_NAMES = _STOP + "|le|la|les|l|de|du|des|d|un|une|au|aux|en|bonjour|madame|monsieur"
#: Cues after which any word is a name (users write theirs in small letters): up to three words.
NAME = re.compile(
    r"\b(?P<cue>je\s++m['’]\s*+appelle|mon\s++nom\s++(?:est|c['’]est)|(?:mon\s++)?+(?:nom|pr[ée]nom)\s*+:|"
    r"cordialement|sign[ée])"
    rf"(?P<name>(?:\s*+,?\s*+(?!(?:{_NOT_NAMES})\b)[^\W\d_][\w'’-]*+){{1,3}}+)",
    re.IGNORECASE,
)
_CAPITALISED = r"[A-ZÀ-ÖØ-Þ][\w'’-]*+"
#: A title, then one to three capitalised words ("Madame Michu", "M. Jean Dupont"; not "madame, je …").
TITLED_NAME = re.compile(
    r"\b(?P<cue>(?i:m\.|mr\.?|mme\.?|madame|monsieur|mlle|mademoiselle|ma[iî]tre|me\.?|docteur|dr\.?))"
    rf"(?P<name>\s++{_CAPITALISED}(?:\s++{_CAPITALISED}){{0,2}}+)"
)

# ---- long numbers ----

#: What may separate the digits of one number: spaces, punctuation and symbols people put between digit groups
#: (or put there on purpose to get past a filter), at most ``_MAX_GAP`` of them in a row.
_NUMBER_SEPARATORS = frozenset(" ./_,-–—‐‑‒−*|:+xX#()[]'’·•~=")
_MAX_GAP = 4
#: Digits a number needs to be redacted (SIREN 9, SIRET 14, cards 16, phones 10, IBANs, invoice numbers).
MIN_DIGITS = 6


def _numbers(text: str) -> list[tuple[int, int, str]]:
    """The spans of the numbers of ``MIN_DIGITS`` digits or more, each with its placeholder, found in one pass.

    A number is digits with at most ``_MAX_GAP`` separators between two of them, or a single letter glued between
    two digits (``123a456b789``); a ``+`` just before it makes it an international phone number.
    """
    spans = []
    n = len(text)
    i = 0
    while i < n:
        if not text[i].isdecimal():
            i += 1
            continue
        start, end, digits = i, i + 1, [text[i]]
        j = end
        while j < n:
            k = j
            while k < n and k - j < _MAX_GAP and text[k] in _NUMBER_SEPARATORS:
                k += 1
            if k == j and k + 1 < n and text[k].isalpha() and text[k + 1].isdecimal():
                k += 1  # one letter between two digits: "123a456"
            if k < n and text[k].isdecimal():
                digits.append(text[k])
                end = j = k + 1
            else:
                break
        if len(digits) >= MIN_DIGITS:
            plus = start > 0 and text[start - 1] == "+"
            spans.append((start - plus, end, _number_kind("".join(digits), plus)))
        i = end
    return spans


def _number_kind(digits: str, plus: bool) -> str:
    """``<phone>`` for an international number (``+``) or a French one (0X and eight digits, 33 or 0033 and nine),
    else ``<number>``."""
    french = (len(digits) == 10 and digits[0] == "0" and digits[1] != "0") or (
        (len(digits) == 11 and digits.startswith("33")) or (len(digits) == 13 and digits.startswith("0033"))
    )
    return "<phone>" if plus or french else "<number>"


def _replace_spans(text: str, spans: list[tuple[int, int, str]]) -> str:
    out, last = [], 0
    for start, end, placeholder in spans:
        out.append(text[last:start])
        out.append(placeholder)
        last = end
    out.append(text[last:])
    return "".join(out)


def redact(text: str) -> str:
    """``text`` cleaned (``clean``), with every e-mail address, IBAN, street address, name given as such, phone
    number and run of ``MIN_DIGITS`` digits or more replaced by a placeholder; at most ``MAX_LOGGED_CHARS``."""
    text = clean(text)
    text = EMAIL.sub("<email>", text)
    for pattern in IBANS:
        text = pattern.sub("<iban>", text)
    text = ADDRESS.sub("<address>", text)
    for pattern in (NAME, TITLED_NAME):
        text = pattern.sub(lambda m: m.group("cue") + " <name>", text)
    text = _replace_spans(text, _numbers(text))
    return _cut(text, MAX_LOGGED_CHARS)


def normalise(text: str) -> str:
    """The form two wordings of the same query share (``reviewed.fold``: case, accents, spacing and end punctuation
    aside): "Combien ça coûte ?" and "combien ca coute" are one query."""
    return fold(text)


def query_key(text: str) -> str:
    """A short stable id for a (redacted) query: the review queue and its actions name queries by it."""
    return "q" + hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()[:15]

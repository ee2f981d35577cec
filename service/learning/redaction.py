"""What the query log never keeps: e-mail addresses, phone and other long numbers, IBANs, street addresses and
names introduced as such ("je m'appelle …").

Users paste their own details into a search box ("mon siret 123 456 789 00012 est refusé"): the log keeps the
question's wording, which is what the FAQ owner learns from, and replaces each such detail by a placeholder.

Two steps, both linear in the text's length (every repetition in a pattern here is possessive or bounded, and
numbers are found by a scanner over the text's tokens, not by a regular expression), on a text cut to
``MAX_INPUT_CHARS`` first:

- ``clean``: the text as the log keeps it, and as the corpus format accepts a question (the review queue's
  decisions copy logged queries into the reviewed file): compatibility forms folded (NFKC: a fullwidth ``＠``,
  superscript digits), invisible characters dropped (format characters, fillers, marks that combine with no letter
  or that decorate a Latin, Greek or Cyrillic letter NFKC could not compose them with), control characters and every
  kind of space as one space, at most ``MAX_LOGGED_CHARS`` characters.
- ``redact``: the details replaced, on the cleaned text.

What is still not caught is listed in docs/learning.md (names with no cue before them, addresses without a number
and a kind of street, numbers of five digits or fewer).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from ..reviewed_file import MAX_QUESTION_CHARS, fold

#: The longest query the log keeps, in characters: what the reviewed file accepts for a question.
MAX_LOGGED_CHARS = MAX_QUESTION_CHARS
#: Characters of a query looked at, at most (the service takes 1,000 by default; NFKC may make one into 18).
MAX_INPUT_CHARS = 4 * MAX_LOGGED_CHARS

#: Characters that show nothing but are not format characters (Unicode's "default ignorable" letters and symbols):
#: Hangul fillers, the braille blank, Khmer inherent vowels, the Mongolian vowel separator, the combining grapheme
#: joiner.
_FILLERS = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u180e\u2800\u3164\uffa0")
#: Scripts whose letters take no combining mark once NFKC has composed the accents it knows: a mark left on one of
#: them is decoration (an underline, a stacked accent) that only breaks words up.
_COMPOSED_SCRIPTS = ("LATIN", "GREEK", "CYRILLIC")


def clean(text: str) -> str:
    """``text`` as the log keeps it: NFKC, invisible characters dropped, spaces collapsed, at most
    ``MAX_INPUT_CHARS`` (``redact`` cuts to ``MAX_LOGGED_CHARS``); empty when nothing visible is left."""
    text = unicodedata.normalize("NFKC", text[:MAX_INPUT_CHARS])[:MAX_INPUT_CHARS]
    out: list[str] = []
    keeps_marks = False  # whether the previous character is a letter whose script takes combining marks
    for c in text:
        kind = unicodedata.category(c)
        if c in _FILLERS or kind in ("Cf", "Cs", "Co", "Cn"):
            continue  # zero-width spaces, soft hyphens, lone surrogates, private and unassigned code points
        if kind[0] == "M":
            if keeps_marks:  # a vowel sign of Devanagari, a harakat of Arabic: part of the word
                out.append(c)
            continue  # on a digit, a space, a Latin letter: only there to break a word or a number up
        if kind == "Cc" or kind[0] == "Z":
            c = " "  # NUL, tabs, line breaks and every kind of space: one space
        out.append(c)
        keeps_marks = kind[0] == "L" and not unicodedata.name(c, "").startswith(_COMPOSED_SCRIPTS)
    return _cut(" ".join("".join(out).split()), MAX_INPUT_CHARS)


def _cut(text: str, limit: int) -> str:
    """``text`` at most ``limit`` characters long, cut at its last space before the limit when there is one."""
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    space = head.rfind(" ")
    return (head[:space] if space > limit // 2 else head[:limit]).rstrip()


# ---- e-mail addresses ----


def _bracketed(word: str) -> str:
    """``word`` between brackets of any kind: "[at]", "(dot)", "{at}", "<at>"."""
    return r"[\[({<]\s*+" + word + r"\s*+[\])}>]"


#: A dot: ".", with spaces around it or not, "dot" or "point" between spaces, or in brackets.
_DOT = r"(?:\s*+\.\s*+|\s++(?:dot|point)\s++|\s*+" + _bracketed("(?:dot|point|\\.)") + r"\s*+)"
_LABEL = r"[\w+%'-]{1,64}+"
#: A local part: a quoted one, or labels joined by dots (at most eight), starting where a word starts.
_LOCAL = rf"""(?:"[^"\n]{{1,64}}"|(?<![\w.+%'-]){_LABEL}(?:{_DOT}{_LABEL}){{0,8}}+)"""
#: "@" with spaces or stray symbols around it ("*@*", "@@"), "[at]", "(at)", "(arobase)"…
_AT_SIGN = r"\s*+(?:[^\w\s@]{0,2}@{1,2}[^\w\s@]{0,2}|" + _bracketed("(?:at|@|arobase|arobas)") + r")\s*+"
#: "at", "arobase" written out between spaces.
_AT_WORD = r"\s++(?:at|arobase|arobas)\s++"
_DOMAIN_LABEL = r"[\w-]{1,63}+"

EMAIL = re.compile(
    rf"{_LOCAL}(?:{_AT_SIGN}{_DOMAIN_LABEL}(?:{_DOT}{_DOMAIN_LABEL}){{0,8}}+"
    rf"|{_AT_WORD}{_DOMAIN_LABEL}(?:{_DOT}{_DOMAIN_LABEL}){{1,8}}+)",  # spelled out: a dotted domain only
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
    "sentier|esplanade|rond-point|villa|parc|domaine|traverse|montée|montee|côte|cote|ruelle|venelle|r(?=\\.)"
)
#: Words that end an address's name (the sentence goes on).
_STOP = (
    "et|ou|je|j|mon|ma|mes|pour|mais|qui|que|qu|car|donc|est|a|ai|suis|il|elle|on|nous|vous|ne|n|pas|"
    "depuis|comment|pourquoi|quand|merci|svp|avec|sans|sur|dans|chez|si"
)
ADDRESS = re.compile(
    rf"\b\d{{1,4}}(?:\s*+(?:bis|ter|[a-d])\b)?+\s*+,?\s*+(?:{_STREETS})\b\.?+"
    rf"(?:\s++(?!(?:{_STOP})\b)[\w'’.-]{{1,40}}+){{0,6}}+"  # the street's name: up to six words
    r"(?:\s*+,?\s*+\d{5}(?:\s++(?!(?:" + _STOP + r")\b)[\w'’-]{1,40}+){0,3}+)?+",  # a postal code and the town
    re.IGNORECASE,
)

# ---- names introduced as such ----

#: Words that cannot be a name (a cue followed by one of them introduces no name: "bonjour madame, je …").
_NOT_NAMES = _STOP + "|le|la|les|l|de|du|des|d|un|une|au|aux|en|bonjour|madame|monsieur|nom|prénom|prenom"
#: Cues after which any word is a name (users write theirs in small letters, and misspell the cue): up to three.
NAME = re.compile(
    r"\b(?P<cue>je\s*+m['’\s]?\s*+app?ell?e|je\s++me\s++nomme|moi\s*+c['’]\s*+est|"
    r"mon\s++nom\s++(?:est|c['’]est)|(?:mon\s++)?+(?:nom|pr[ée]nom)(?:\s++de\s++famille)?+\s*+:|"
    r"cordialement|sign[ée]|bien\s++à\s++vous)(?![\w'’])"
    rf"(?P<name>(?:\s*+,?\s*+(?!(?:{_NOT_NAMES})\b)[^\W\d_][\w'’-]{{0,40}}+){{1,3}}+)",
    re.IGNORECASE,
)
#: Particles of a surname, written in small letters ("de La Fontaine", "d'Artagnan", "van der Berg").
_PARTICLES = r"(?:de|du|des|d['’]|van|von|der|den|la|le|di|da|del|della|ben|el|al)"
#: A title, then one to three words of which the first that is not a particle is capitalised (``_titled``).
TITLED_NAME = re.compile(
    r"\b(?P<cue>m\.?|mr\.?|mme\.?|madame|monsieur|mlle\.?|melle\.?|mademoiselle|ma[iî]tre|me\.?|docteur|dr\.?|pr\.?"
    r"|prof\.?|professeur)(?![\w'’])"
    rf"(?P<name>(?:\s++(?:{_PARTICLES}\s*+){{0,3}}+[^\W\d_][\w'’-]{{0,40}}+){{1,3}}+)",
    re.IGNORECASE,
)
_PARTICLE_WORD = re.compile(rf"^{_PARTICLES}$", re.IGNORECASE)


def _titled(match: re.Match) -> str:
    """A title's name replaced when its first word beyond the particles is capitalised ("Madame Michu", "M.
    d'Artagnan"; not "madame, je …" nor "monsieur le maire")."""
    words = [w for w in match.group("name").split() if not _PARTICLE_WORD.match(w)]
    first = re.sub(r"^[dD]['’]", "", words[0]) if words else ""
    if not first or not first[0].isupper():
        return match.group(0)
    return match.group("cue") + " <name>"


# ---- long numbers ----

#: The pieces a number is read from: runs of digits, runs of letters, runs of spaces, any other single character.
_TOKENS = re.compile(r"\d++|[^\W\d_]++|\s++|.", re.S)
#: Most characters between two digit groups of one number (separators: spaces, punctuation, symbols, emoji).
_MAX_GAP = 6
#: Digits a number needs to be redacted (SIREN 9, SIRET 14, cards 16, phones 10, IBANs, invoice numbers).
MIN_DIGITS = 6
#: Digits a number needs when a one-letter word splits it ("06 a 12 a 34 a 56 a 78"; not "le 12/03 a 14h").
MIN_DIGITS_SPLIT_BY_A_WORD = 8
#: Letters that stand for digits in a group glued to digits ("OOO12", "1O2").
_DIGIT_LETTERS = frozenset("OoIl")


def _numbers(text: str) -> list[tuple[int, int, str]]:
    """The spans of the numbers of ``MIN_DIGITS`` digits or more, each with its placeholder, found in one pass over
    the text's tokens.

    A number is groups of digits with at most ``_MAX_GAP`` separators (anything but a letter) between two of them,
    or one letter glued between two digits (``123a456b789``); letters that stand for digits glued to a group count
    as digits (``OOO12``); a one-letter word between two groups continues the number but then it needs
    ``MIN_DIGITS_SPLIT_BY_A_WORD`` digits; a ``+`` just before it makes it an international phone number.
    """
    tokens = [(m.start(), m.end(), m.group()) for m in _TOKENS.finditer(text)]

    def digits_of(i: int) -> str | None:
        """The digits token ``i`` stands for: its digits, or letters standing for digits glued to digits."""
        start, end, token = tokens[i]
        if token[0].isdecimal():
            return token
        glued = (i > 0 and tokens[i - 1][2][0].isdecimal()) or (i + 1 < len(tokens) and tokens[i + 1][2][0].isdecimal())
        return "0" * len(token) if glued and token[0].isalpha() and set(token) <= _DIGIT_LETTERS else None

    spans = []
    i = 0
    while i < len(tokens):
        if not tokens[i][2][0].isdecimal():
            i += 1
            continue
        first = last = i
        digits = [tokens[i][2]]
        weak = False
        j = i + 1
        while j < len(tokens):
            # The gap after the last group: separators, and at most one letter (glued between two groups, or a
            # word of its own), up to the next group.
            k, gap, letters, word = j, 0, 0, False
            while k < len(tokens) and digits_of(k) is None and gap <= _MAX_GAP:
                token = tokens[k][2]
                if token[0].isalpha():
                    if len(token) > 1 or letters:
                        break
                    letters += 1
                    word = k > j or (k + 1 < len(tokens) and not tokens[k + 1][2][0].isdecimal())
                gap += len(token)
                k += 1
            if k < len(tokens) and gap <= _MAX_GAP and digits_of(k) is not None:
                digits.append(digits_of(k))
                weak = weak or word
                last, j = k, k + 1
            else:
                break
        count = len("".join(digits))
        if count >= (MIN_DIGITS_SPLIT_BY_A_WORD if weak else MIN_DIGITS):
            start, end = tokens[first][0], tokens[last][1]
            plus = start > 0 and text[start - 1] == "+"
            spans.append((start - plus, end, _number_kind("".join(digits), plus)))
        i = last + 1
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


def redact_identifiers(text: str) -> str:
    """``text`` with its e-mail addresses, IBANs and long numbers replaced, nothing else changed (a server's log
    line, which is not cleaned like a query)."""
    text = EMAIL.sub("<email>", text)
    for pattern in IBANS:
        text = pattern.sub("<iban>", text)
    return _replace_spans(text, _numbers(text))


def redact(text: str) -> str:
    """``text`` cleaned (``clean``), with every e-mail address, IBAN, street address, name given as such, phone
    number and run of ``MIN_DIGITS`` digits or more replaced by a placeholder; at most ``MAX_LOGGED_CHARS``."""
    text = clean(text)
    text = EMAIL.sub("<email>", text)
    for pattern in IBANS:
        text = pattern.sub("<iban>", text)
    text = ADDRESS.sub("<address>", text)
    text = NAME.sub(lambda m: m.group("cue") + " <name>", text)
    text = TITLED_NAME.sub(_titled, text)
    text = _replace_spans(text, _numbers(text))
    return _cut(text, MAX_LOGGED_CHARS)


def normalise(text: str) -> str:
    """The form two wordings of the same query share (``reviewed.fold``: case, accents, spacing and end punctuation
    aside): "Combien ça coûte ?" and "combien ca coute" are one query."""
    return fold(text)


def query_key(text: str) -> str:
    """A short stable id for a (redacted) query: the review queue and its actions name queries by it."""
    return "q" + hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()[:15]


#: The key of every query with no word in it (empty, invisible, punctuation only): never listed for review.
EMPTY_KEY = query_key("")

"""French text analysis, shared by the lexical leg, its highlights and the synonyms: the words of a text as terms.

Lower case, elisions removed (l', d', qu', j', jusqu'…, straight or curly apostrophe), accents folded (a user who
types "reinitialiser" finds "réinitialiser"), French stopwords dropped, then each word stemmed (Snowball French,
PyStemmer).
"""

from __future__ import annotations

import functools
import re
import unicodedata

_ELISION = re.compile(r"\b(?:[cdjlmnst]|qu|jusqu|lorsqu|puisqu|quoiqu|presqu)['’ʼ]", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+")


def fold(text: str) -> str:
    """Lower case, ligatures expanded, accents and other combining marks removed (NFKD)."""
    text = text.lower().replace("œ", "oe").replace("æ", "ae")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


#: Words of questions that bm25s' French list lacks and that say nothing about the topic (prepositions,
#: interrogatives, courtesy). Content words stay, even common ones ("mot", "compte", "encore").
EXTRA_STOPWORDS = [
    "sans",
    "chez",
    "sous",
    "vers",
    "entre",
    "avant",
    "apres",
    "comment",
    "quoi",
    "quel",
    "quelle",
    "quels",
    "quelles",
    "pourquoi",
    "quand",
    "donc",
    "car",
    "alors",
    "aussi",
    "si",
    "oui",
    "non",
    "tres",
    "comme",
    "ca",
    "cela",
    "ceci",
    "tout",
    "tous",
    "toute",
    "toutes",
    "plus",
    "moins",
    "faire",
    "fait",
    "faut",
    "peut",
    "peux",
    "pouvez",
    "veux",
    "voudrais",
    "dois",
    "doit",
    "jai",
    "svp",
    "stp",
    "merci",
    "bonjour",
]


def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_FRENCH

    return frozenset(fold(w) for w in (*STOPWORDS_FRENCH, *EXTRA_STOPWORDS))


class FrenchAnalyzer:
    """Turns text into BM25 terms, remembering which written word produced each term (for explanations)."""

    def __init__(self):
        import Stemmer

        self._stemmer = Stemmer.Stemmer("french")
        self.stopwords = _stopwords()

    def words(self, text: str) -> list[tuple[str, str]]:
        """(term, word as folded) pairs for the content words of ``text``, in order."""
        folded = fold(_ELISION.sub(" ", text))
        words = [w for w in _WORD.findall(folded) if w not in self.stopwords and (len(w) > 1 or w.isdigit())]
        return list(zip(self._stemmer.stemWords(words), words, strict=True))

    def terms(self, text: str) -> list[str]:
        """The BM25 terms of ``text``."""
        return [term for term, _ in self.words(text)]


@functools.lru_cache(maxsize=1)
def analyzer() -> FrenchAnalyzer:
    """The process's analyzer (the stemmer and the stopword list are loaded once)."""
    return FrenchAnalyzer()

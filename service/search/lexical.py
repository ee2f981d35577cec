"""The French lexical leg: BM25 (bm25s) over whole FAQ entries, with Snowball French stemming (PyStemmer).

Text analysis, the same for entries and queries: lower case, elisions removed (l', d', qu', j', jusqu'…, straight
or curly apostrophe), accents folded (a user who types "reinitialiser" finds "réinitialiser"), French stopwords
dropped, then each word stemmed. Scores are normalised per query into [0, 1] (see ``LexicalIndex.scores``) so that
they can be fused with cosines and thresholded.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

import numpy as np

#: BM25 parameters (Lucene's variant, the defaults of Lucene and bm25s).
K1 = 1.2
B = 0.75

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


@dataclass(frozen=True)
class LexicalScores:
    """One query's normalised BM25 score against every document, and its terms."""

    scores: np.ndarray
    terms: dict[str, str]  # term -> first word of the query that produced it


class LexicalIndex:
    """BM25 over a list of documents (one per FAQ entry), rebuilt in memory from the stored texts.

    Args:
        documents: one text per entry (question, alternative questions and answer).
    """

    def __init__(self, documents: list[str], k1: float = K1, b: float = B):
        import bm25s

        self.analyzer = FrenchAnalyzer()
        tokens = [self.analyzer.terms(d) for d in documents]
        self._doc_terms = [frozenset(t) for t in tokens]
        df = Counter(term for terms in self._doc_terms for term in terms)
        self._df = dict(df)
        n = len(documents)
        # Lucene's idf, as bm25s computes it; used to normalise scores per query.
        self._idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        # bm25s logs at INFO and warns on empty documents; neither helps a service log.
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        self._bm25 = bm25s.BM25(k1=k1, b=b, method="lucene")
        self._bm25.index([t or [""] for t in tokens], show_progress=False)
        self.size = n

    def scores(self, query: str) -> LexicalScores:
        """BM25 of ``query`` against every document, divided by the most the query's known terms could score.

        In Lucene's BM25 (bm25s' ``method="lucene"``) a term adds ``idf * tf / (tf + k1 * length_norm)``, less than
        its idf, so the normalised score lies in [0, 1]: about 0.45 of the idf-weighted share of the query's
        vocabulary that a document of average length matches once. It is 0 for every document when no query term
        occurs in the corpus.
        """
        words = self.analyzer.words(query)
        terms: dict[str, str] = {}
        for term, word in words:
            terms.setdefault(term, word)
        known = [t for t in terms if t in self._idf]
        if not known:
            return LexicalScores(np.zeros(self.size, dtype=np.float32), terms)
        # bm25s adds a term once per occurrence in the query; weigh each distinct term once.
        raw = np.asarray(self._bm25.get_scores(known), dtype=np.float32)
        ceiling = sum(self._idf[t] for t in known)
        return LexicalScores(np.clip(raw / ceiling, 0.0, 1.0), terms)

    @property
    def idf(self) -> dict[str, float]:
        """Every term of the documents with its idf (Lucene's)."""
        return self._idf

    def document_frequency(self, term: str) -> int:
        """How many documents hold ``term``."""
        return self._df.get(term, 0)

    def terms_of(self, doc: int) -> frozenset[str]:
        """The terms of document ``doc``."""
        return self._doc_terms[doc]

    def matched(self, lexical: LexicalScores, doc: int) -> list[str]:
        """The query's words whose terms occur in document ``doc``."""
        present = self._doc_terms[doc]
        return [word for term, word in lexical.terms.items() if term in present]

"""The French lexical leg: Lucene's BM25 over whole FAQ entries, with Snowball French stemming (PyStemmer).

Text analysis, the same for entries and queries, is ``service/text_analysis.py``'s; the FAQ's synonyms
(``service/synonyms.py``) add one term per synonym group to the entries that hold one of its phrases and replace
the query's phrase by it. Scores are normalised per query into [0, 1] (see ``LexicalIndex.scores``) so that
they can be fused with cosines and thresholded.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..synonyms import SynonymMatcher, Synonyms
from ..text_analysis import FrenchAnalyzer, fold  # noqa: F401  (fold: re-exported for callers)

#: BM25 parameters (Lucene's variant, the defaults of Lucene and bm25s).
K1 = 1.2
B = 0.75


@dataclass(frozen=True)
class LexicalScores:
    """One query's normalised BM25 score against every document, and its terms."""

    scores: np.ndarray
    terms: dict[str, str]  # term -> first word of the query that produced it


class LexicalIndex:
    """BM25 over a list of documents (one per FAQ entry), rebuilt in memory from the stored texts.

    Args:
        documents: one text per entry (question, alternative questions and answer).
        synonyms: the FAQ's synonyms (an entry holding a phrase of a group gets the group's term).
    """

    def __init__(self, documents: list[str], k1: float = K1, b: float = B, synonyms: Synonyms | None = None):
        self.analyzer = FrenchAnalyzer()
        self.synonyms = SynonymMatcher(synonyms)
        words = [self.analyzer.terms(d) for d in documents]
        tokens = [self.synonyms.document_terms(w) for w in words]
        self._doc_terms = [frozenset(t) for t in tokens]
        df = Counter(term for terms in self._doc_terms for term in terms)
        self._df = dict(df)
        n = len(documents)
        # Lucene's idf, as bm25s computes it; used to normalise scores per query.
        self._idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        # Lucene's BM25 as bm25s computes it (``method="lucene"``: tests/test_lexical.py checks the two agree), with
        # one difference: a document's length counts its own words only, so that a synonym's term does not lengthen
        # the entries holding one (and shift every other entry's score).
        lengths = np.array([max(len(w), 1) for w in words], dtype=np.float64)  # bm25s counts an empty one as 1
        norm = k1 * (1 - b + b * lengths / lengths.mean()) if n else lengths
        postings: dict[str, tuple[list[int], list[float]]] = {}
        for doc, terms in enumerate(tokens):
            for term, tf in Counter(terms).items():
                docs, values = postings.setdefault(term, ([], []))
                docs.append(doc)
                values.append(self._idf[term] * tf / (tf + norm[doc]))
        self._postings = {
            t: (np.array(d, dtype=np.int64), np.array(v, dtype=np.float32)) for t, (d, v) in postings.items()
        }
        self.size = n

    def scores(self, query: str) -> LexicalScores:
        """BM25 of ``query`` against every document, divided by the most the query's known terms could score.

        In Lucene's BM25 a term adds ``idf * tf / (tf + k1 * length_norm)``, less than
        its idf, so the normalised score lies in [0, 1]: about 0.45 of the idf-weighted share of the query's
        vocabulary that a document of average length matches once. It is 0 for every document when no query term
        occurs in the corpus.
        """
        words = self.synonyms.query_words(self.analyzer.words(query))
        terms: dict[str, str] = {}
        for term, word in words:
            terms.setdefault(term, word)
        known = [t for t in terms if t in self._idf]
        if not known:
            return LexicalScores(np.zeros(self.size, dtype=np.float32), terms)
        raw = np.zeros(self.size, dtype=np.float32)
        for term in known:  # each distinct term once, however often the query says it
            docs, values = self._postings[term]
            raw[docs] += values
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

"""Highlights of a result: the sentence of its passage that best answers the query, and the query's words in it.

A cheap lexical method (``scripts/bench.py highlights`` measures its cost and how often it picks the sentence a
per-sentence embedding would): each sentence of the passage is scored by the idf of the query's distinct terms it
holds (stemmed and accent-folded as the lexical leg does); the best one, if any holds a term, is the sentence
highlight. Every word of the passage whose term is one of the query's is a term highlight, and so is every phrase
of the passage that stands for a synonym the query holds (``service/synonyms.py``). Offsets are character
offsets into the result's ``text``: ``text[start:end]`` is what is highlighted.
"""

from __future__ import annotations

import functools
import re

from ..synonyms import SynonymMatcher
from .lexical import FrenchAnalyzer, fold

#: A sentence ends with . ! ? or … followed by a space or the end, or at a line break.
_END = re.compile(r"[.!?…]+(?=\s|$)|\n")
#: A word of the text, as the lexical leg reads words (letters and digits; an apostrophe ends a word).
_WORD = re.compile(r"[^\W_]+")


def sentences(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text``, without its surrounding spaces."""
    out, start = [], 0
    for m in _END.finditer(text):
        end = m.start() if m.group() == "\n" else m.end()
        out.append((start, end))
        start = m.end()
    out.append((start, len(text)))
    spans = []
    for a, b in out:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            spans.append((a, b))
    return spans


class Highlighter:
    """Highlights for the passages of one FAQ's results (``highlights``), from its lexical index's analyzer and idf."""

    def __init__(self, analyzer: FrenchAnalyzer, idf: dict[str, float], synonyms: SynonymMatcher | None = None):
        self.analyzer, self.idf = analyzer, idf
        self.synonyms = synonyms or SynonymMatcher(None)
        self._term = functools.lru_cache(maxsize=65536)(self._stem)

    def _stem(self, word: str) -> str | None:
        folded = fold(word)
        if folded in self.analyzer.stopwords or (len(folded) < 2 and not folded.isdigit()):
            return None
        return self.analyzer._stemmer.stemWord(folded)

    def highlights(self, text: str, terms: dict[str, str]) -> list[dict]:
        """The sentence that best answers and the query's words in ``text``.

        Args:
            terms: the query's terms (``LexicalScores.terms``: term -> the query's word).
        Returns:
            ``[{"start", "end", "kind": "sentence"}]`` (at most one, first) then ``{"start", "end", "kind": "term",
            "term": <the query's word>}`` for each word of the text whose term the query has, in order.
        """
        if not terms:
            return []
        words, content = [], []  # the query's words found; every content word of the text (start, end, term)
        for m in _WORD.finditer(text):
            term = self._term(m.group())
            if term is not None:
                content.append((m.start(), m.end(), term))
            if term in terms:
                words.append((m.start(), m.end(), term))
        if self.synonyms:
            for i, j, token in self.synonyms.spans([term for _, _, term in content]):
                if token in terms:
                    words.append((content[i][0], content[j - 1][1], token))
            words.sort()
        if not words:
            return []
        best, best_score = None, 0.0
        for start, end in sentences(text):
            found = {term for a, b, term in words if a >= start and b <= end}
            score = sum(self.idf.get(term, 0.0) for term in found)
            if score > best_score:
                best, best_score = (start, end), score
        out = [{"start": best[0], "end": best[1], "kind": "sentence"}] if best else []
        out += [{"start": a, "end": b, "kind": "term", "term": terms[term]} for a, b, term in words]
        return out

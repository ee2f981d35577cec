"""Highlights (``search/highlights.py``): the sentence that best answers and the query's words, as offsets into the
result's text."""

from __future__ import annotations

import pytest

from service.search.highlights import Highlighter, sentences
from service.search.lexical import FrenchAnalyzer


@pytest.fixture(scope="module")
def highlighter():
    analyzer = FrenchAnalyzer()
    return analyzer, Highlighter(analyzer, {"emprunt": 2.0, "livr": 1.0, "cart": 1.5, "retard": 3.0})


def _terms(analyzer, query: str) -> dict:
    return {term: word for term, word in analyzer.words(query)}


def test_sentences_are_cut_at_end_punctuation_and_lines():
    text = "Première phrase. Deuxième ! Troisième ?\n\nUne ligne sans point\nDernière… fin"
    assert [text[a:b] for a, b in sentences(text)] == [
        "Première phrase.", "Deuxième !", "Troisième ?", "Une ligne sans point", "Dernière…", "fin"
    ]  # fmt: skip


def test_the_best_sentence_and_every_query_word_with_offsets(highlighter):
    analyzer, hl = highlighter
    text = "La carte est gratuite. Vous pouvez emprunter dix Livres. En cas de retard, une relance."
    found = hl.highlights(text, _terms(analyzer, "emprunter des livres en retard"))
    sentence, *terms = found
    assert (
        sentence["kind"] == "sentence"
        and text[sentence["start"] : sentence["end"]] == "Vous pouvez emprunter dix Livres."
    )
    assert [(t["term"], text[t["start"] : t["end"]]) for t in terms] == [
        ("emprunter", "emprunter"), ("livres", "Livres"), ("retard", "retard")
    ]  # fmt: skip


def test_accents_elisions_and_no_match(highlighter):
    analyzer, hl = highlighter
    text = "L'emprunt d’une carte : gratuit."
    found = hl.highlights(text, _terms(analyzer, "emprunts carte"))
    assert [text[h["start"] : h["end"]] for h in found] == [text, "emprunt", "carte"]
    assert hl.highlights(text, _terms(analyzer, "piscine municipale")) == []
    assert hl.highlights(text, {}) == []

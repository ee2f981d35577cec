"""The French lexical leg: text analysis, and BM25 scores checked against the formula computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.search.lexical import K1, B, FrenchAnalyzer, LexicalIndex, fold


@pytest.fixture(scope="module")
def analyzer():
    return FrenchAnalyzer()


def test_fold_removes_accents_case_and_ligatures():
    assert fold("Réinitialiser ÉTÉ Œuvre à") == "reinitialiser ete oeuvre a"


@pytest.mark.parametrize(
    "with_accents,without",
    [
        ("Réinitialiser mon mot de passe", "reinitialiser mon mot de passe"),
        ("Je n'ai pas reçu l’e-mail d'activation", "je nai pas recu le mail dactivation"),
        ("Qu'est-ce que le numéro SIRET ?", "c'est quoi le numero siret"),
    ],
)
def test_typed_without_accents_or_apostrophes_gives_the_same_key_terms(analyzer, with_accents, without):
    # The folded, elided and stemmed forms of the content words match; "nai"/"dactivation" are typos that
    # keep only what they share.
    key = set(analyzer.terms(with_accents)) & set(analyzer.terms(without))
    assert key and key <= set(analyzer.terms(with_accents))
    assert {"reinitialis", "pass"} <= set(analyzer.terms("reinitialiser le mot de passe"))


def test_elisions_and_stopwords_are_dropped(analyzer):
    words = analyzer.words("L'administrateur d'une structure qu'il a créée jusqu'à hier")
    assert [w for _, w in words] == ["administrateur", "structure", "creee", "hier"]
    assert analyzer.terms("le la les de du des et ou") == []


def _lucene_bm25(query_terms, docs_terms, k1=K1, b=B):
    """BM25 as Lucene (and bm25s method='lucene') computes it, straight from the formula."""
    n = len(docs_terms)
    avgdl = sum(len(d) for d in docs_terms) / n
    scores = []
    for doc in docs_terms:
        s = 0.0
        for t in set(query_terms):
            df = sum(t in d for d in docs_terms)
            if df == 0:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = doc.count(t)
            s += idf * tf / (tf + k1 * (1 - b + b * len(doc) / avgdl))
        scores.append(s)
    return np.array(scores)


DOCS = [
    "Comment créer mon compte ? Munissez-vous de votre SIRET et d'une adresse mail.",
    "Comment récupérer mon lien d'activation ? Demandez le renvoi du mail d'activation.",
    "Comment transférer le rôle de gestionnaire principal ? Le gestionnaire transfère son rôle.",
    "Comment déposer une facture ? Le fournisseur dépose la facture sur le portail.",
]


@pytest.mark.parametrize(
    "query",
    [
        "siret",
        "mail d'activation pas reçu",
        "transferer role gestionnaire",
        "deposer facture facture portail",
        "numéro de téléphone",
    ],
)
def test_scores_equal_the_bm25_formula_normalised_by_the_query_idf(analyzer, query):
    index = LexicalIndex(DOCS)
    docs_terms = [analyzer.terms(d) for d in DOCS]
    q_terms = analyzer.terms(query)
    raw = _lucene_bm25(q_terms, docs_terms)
    n = len(DOCS)
    known = {t for t in q_terms if any(t in d for d in docs_terms)}
    ceiling = sum(
        math.log(1 + (n - sum(t in d for d in docs_terms) + 0.5) / (sum(t in d for d in docs_terms) + 0.5))
        for t in known
    )
    expected = raw / ceiling if ceiling else np.zeros(n)
    got = index.scores(query).scores
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert ((got >= 0) & (got <= 1)).all()


def test_a_rare_exact_word_ranks_its_document_first_and_is_reported():
    index = LexicalIndex(DOCS)
    lexical = index.scores("c koi mon SIRET ??")
    assert int(np.argmax(lexical.scores)) == 0
    assert index.matched(lexical, 0) == ["siret"]
    assert index.matched(lexical, 1) == []


def test_queries_with_no_known_word_score_zero_everywhere():
    index = LexicalIndex(DOCS)
    for query in ("", "le la les", "xyzzy plugh"):
        assert not index.scores(query).scores.any()


@pytest.mark.parametrize("query", ["siret", "mail d'activation pas reçu", "deposer facture facture portail"])
def test_scores_agree_with_bm25s(analyzer, query):
    import bm25s

    reference = bm25s.BM25(k1=K1, b=B, method="lucene")
    reference.index([analyzer.terms(d) for d in DOCS], show_progress=False)
    terms = list(dict.fromkeys(t for t in analyzer.terms(query) if any(t in analyzer.terms(d) for d in DOCS)))
    index = LexicalIndex(DOCS)
    ceiling = sum(index.idf[t] for t in terms)
    expected = np.asarray(reference.get_scores(terms)) / ceiling
    assert np.allclose(index.scores(query).scores, expected, atol=1e-5)


def test_a_synonym_list_leaves_the_scores_of_other_words_alone():
    from service.synonyms import Synonyms

    synonyms = Synonyms.parse({"equivalent": [["gestionnaire principal", "administrateur", "admin"]],
                               "oneway": {"courriel": ["mail"]}})  # fmt: skip
    plain, with_synonyms = LexicalIndex(DOCS), LexicalIndex(DOCS, synonyms=synonyms)
    for query in ("siret", "deposer facture portail", "transferer role"):  # no synonym in them
        assert np.array_equal(plain.scores(query).scores, with_synonyms.scores(query).scores), query
    assert with_synonyms.scores("admin").scores.argmax() == 2 and not plain.scores("admin").scores.any()

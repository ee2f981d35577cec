"""The response cache: repeated questions are served from it, bounded, keyed by index and options, counted."""

from __future__ import annotations

from service.search.cache import ResponseCache, normalise_query
from service.search.engine import SearchEngine


def test_normalisation_ignores_case_spacing_and_unicode_forms():
    assert normalise_query("  Créer   mon\tCOMPTE ") == normalise_query("créer mon compte")
    assert normalise_query("ﬁche") == "fiche"  # NFKC ligature
    assert normalise_query("créer") != normalise_query("creer"), "accents still matter"


def test_a_repeated_question_is_a_hit_with_the_same_results(engine, fake_embedder):
    first = engine.search("Lien d'activation", top_k=3)
    calls = len(fake_embedder.calls)
    again = engine.search("  lien   d'activation ", top_k=3)
    assert len(fake_embedder.calls) == calls, "no encoding for a hit"
    assert again.results == first.results and again.answered == first.answered
    assert again.query == "  lien   d'activation " and again.took_ms <= first.took_ms
    assert engine.cache.stats()["hits"] == 1 and engine.cache.stats()["misses"] == 1


def test_options_are_part_of_the_key(engine):
    engine.search("facture", top_k=3)
    engine.search("facture", top_k=2)
    engine.search("facture", top_k=3, min_score=0.9)
    assert engine.cache.stats() == {"size": 3, "max_size": 1024, "hits": 0, "misses": 3, "hit_rate": 0.0}


def test_the_cache_is_bounded_and_evicts_the_least_recently_used(engine, fake_embedder):
    small = SearchEngine(fake_embedder, engine.index, cache_size=2)
    for q in ("compte", "facture", "compte", "gestionnaire"):  # "facture" is now the least recently used
        small.search(q)
    stats = small.cache.stats()
    assert stats["size"] == 2 and stats["hits"] == 1
    small.search("compte")
    small.search("facture")
    assert small.cache.stats()["hits"] == 2 and small.cache.stats()["misses"] == 4


def test_a_zero_size_cache_is_off(engine, fake_embedder):
    off = SearchEngine(fake_embedder, engine.index, cache_size=0)
    off.search("facture")
    off.search("facture")
    assert off.cache.stats() == {"size": 0, "max_size": 0, "hits": 0, "misses": 0, "hit_rate": None}


def test_batch_encodes_only_what_the_cache_lacks(engine, fake_embedder):
    engine.search("facture sous-traitant")
    fake_embedder.calls.clear()
    out = engine.search_batch([("facture sous-traitant", 5, None), ("créer mon compte", 5, None)])
    assert fake_embedder.calls == [(1, "query")]
    assert out[0].results[0].faq_id == "factures" and out[1].results[0].faq_id == "compte"


def test_health_reports_the_cache(client):
    client.post("/search", json={"query": "facture"})
    client.post("/search", json={"query": "facture"})
    cache = client.get("/health").get_json()["index"]["cache"]
    assert cache["hits"] == 1 and cache["misses"] == 1 and cache["hit_rate"] == 0.5


def test_response_cache_alone():
    cache = ResponseCache(1)
    assert cache.get("a") is None
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") is None and cache.get("b") == 2

"""The response cache: repeated questions are served from it, bounded, keyed by index and options, counted."""

from __future__ import annotations

import json

import numpy as np
from conftest import HashingEmbedder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.search.cache import ResponseCache
from service.search.engine import SearchEngine


class CaseSensitiveEmbedder(HashingEmbedder):
    """Like the real encoder, tells "FACTURE" from "facture" (the default fake folds case)."""

    def encode(self, texts, kind="query", batch_size=32, show_progress=False):
        base = super().encode(texts, kind, batch_size, show_progress)
        texts = [t.strip() for t in texts]  # as the real encoders do
        upper = np.array([[sum(c.isupper() for c in t) / (1 + len(t))] for t in texts], dtype=np.float32)
        mixed = base + upper * np.roll(base, 1, axis=1)
        return mixed / np.linalg.norm(mixed, axis=1, keepdims=True)


def test_a_repeated_question_is_a_hit_with_the_same_results(engine, fake_embedder):
    first = engine.search("Lien d'activation", top_k=3)
    calls = len(fake_embedder.calls)
    again = engine.search("  Lien d'activation ", top_k=3)  # the surrounding spaces are never searched
    assert len(fake_embedder.calls) == calls, "no encoding for a hit"
    assert again.results == first.results and again.answered == first.answered
    assert again.query == "  Lien d'activation " and again.took_ms <= first.took_ms
    assert engine.cache.stats()["hits"] == 1 and engine.cache.stats()["misses"] == 1


def test_case_and_negative_zero_are_other_searches(make_index):
    from service.indexing.store import load_index

    engine = SearchEngine(CaseSensitiveEmbedder(), load_index(make_index()))
    loud = engine.search("FACTURE COTRAITANCE 16581", top_k=1)
    quiet = engine.search("facture cotraitance 16581", top_k=1)
    assert loud.results[0].match != quiet.results[0].match, "the encoder tells them apart, so must the cache"
    engine.search("facture", min_score=0.0)
    signed = engine.search("facture", min_score=-0.0)
    assert str(signed.min_score) == "-0.0"
    assert engine.cache.stats()["hits"] == 0


_WORDS = ["facture", "Facture", "compte", "créer", "creer", "mot", "de", "passe", "sous-traitant", "16581"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    queries=st.lists(
        st.tuples(
            st.lists(st.sampled_from(_WORDS), min_size=1, max_size=4).map(" ".join),
            st.integers(1, 5),
            st.sampled_from([None, 0.0, 0.2, 1.0]),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_a_cached_answer_equals_an_uncached_one(make_index, queries):
    """Property: whatever was asked before, an answer from the cache is the answer a fresh search gives, byte
    for byte but for took_ms. Each question comes in the variants a cache could wrongly merge: case, spaces,
    and a min_score of -0.0 beside 0.0."""
    from service.indexing.store import load_index

    index = load_index(make_index())
    cached = SearchEngine(CaseSensitiveEmbedder(), index, cache_size=256)
    fresh = SearchEngine(CaseSensitiveEmbedder(), index, cache_size=0)
    asked = 0
    for text, top_k, min_score in queries + queries:  # everything twice: the second time from the cache
        for variant in (text, text.upper(), text.title(), f"  {text}\t", text.replace(" ", "  ")):
            for score in (min_score, -min_score) if min_score == 0.0 else (min_score,):  # a set would merge them
                got = cached.search(variant, top_k=top_k, min_score=score).to_dict()
                want = fresh.search(variant, top_k=top_k, min_score=score).to_dict()
                got.pop("took_ms"), want.pop("took_ms")
                assert json.dumps(got, ensure_ascii=False) == json.dumps(want, ensure_ascii=False), variant
                asked += 1
    assert cached.cache.stats()["hits"] >= asked // 2


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

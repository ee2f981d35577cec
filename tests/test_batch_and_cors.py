"""POST /search/batch (one encoding batch, per-query errors) and CORS (off unless origins are configured)."""

from __future__ import annotations

import pytest
from conftest import assert_error

from service.core.models import MAX_BATCH
from service.http.app import create_app


def test_batch_answers_each_query_like_search_and_encodes_once(engine, fake_embedder):
    from service.search.engine import SearchEngine

    # No cache, so that the single searches below are computed, not served from the batch's answers.
    client = create_app({"TESTING": True}, engine=SearchEngine(fake_embedder, engine.index, cache_size=0)).test_client()
    queries = [
        "créer mon compte",
        {"query": "lien d'activation", "top_k": 2},
        {"query": "gestionnaire", "min_score": 1},
    ]
    fake_embedder.calls.clear()
    r = client.post("/search/batch", json={"queries": queries})
    assert r.status_code == 200
    body = r.get_json()
    assert list(body) == ["results", "took_ms", "request_id"] and len(body["results"]) == 3
    assert fake_embedder.calls == [(3, "query")], "the three queries are embedded in one call"
    singles = [client.post("/search", json=q if isinstance(q, dict) else {"query": q}).get_json() for q in queries]
    for got, single in zip(body["results"], singles, strict=True):
        assert list(got) + ["request_id"] == list(single), "a batch item is a search response (its id is the batch's)"
        assert [(x["faq_id"], x["score"]) for x in got["results"]] == [
            (x["faq_id"], x["score"]) for x in single["results"]
        ]
        assert got["answered"] == single["answered"]
    assert len(body["results"][1]["results"]) == 2 and body["results"][2]["answered"] is False


def test_a_bad_query_gets_its_error_in_its_slot_and_the_others_are_answered(client):
    body = client.post(
        "/search/batch",
        json={"queries": ["facture", "", {"query": "x", "top_k": 0}, 42, {"query": "compte", "oops": 1}]},
    ).get_json()
    results = body["results"]
    assert results[0]["results"][0]["faq_id"]
    assert results[1] == {
        "error": {"status": 400, "code": "empty_query", "message": "'query' is empty", "field": "query"}
    }
    assert results[2]["error"]["code"] == "out_of_range" and results[2]["error"]["field"] == "top_k"
    assert results[3]["error"]["code"] == "invalid_body"
    assert results[4]["error"]["code"] == "unknown_field"


@pytest.mark.parametrize(
    "body,code",
    [
        ([], "invalid_body"),
        ({}, "missing_queries"),
        ({"queries": "facture"}, "invalid_type"),
        ({"queries": []}, "out_of_range"),
        ({"queries": ["q"] * (MAX_BATCH + 1)}, "out_of_range"),
        ({"queries": ["q"], "top_k": 3}, "unknown_field"),
    ],
)
def test_a_bad_batch_body_is_refused_whole(client, body, code):
    assert_error(client.post("/search/batch", json=body), 400, code)


def test_a_batch_is_bounded_by_tokens_not_by_the_body_limit(client):
    """64 queries of 1,000 accented characters fit the body limit, but not the token budget (they would hold the
    worker for seconds): 413 too_many_tokens. 64 questions as people ask them fit."""
    err = assert_error(client.post("/search/batch", json={"queries": ["é" * 1000] * MAX_BATCH}), 413, "too_many_tokens")
    assert "4096" in err["message"]
    typical = ["je n'ai pas reçu le mail pour activer mon compte chorus pro"] * MAX_BATCH
    r = client.post("/search/batch", json={"queries": typical})
    assert r.status_code == 200 and len(r.get_json()["results"]) == MAX_BATCH


def test_the_token_budget_is_configurable_and_counts_single_searches_too(engine):
    client = create_app({"TESTING": True, "FAQ_MAX_REQUEST_TOKENS": 10}, engine=engine).test_client()
    assert client.post("/search", json={"query": "facture"}).status_code == 200
    long_one = {"query": "facture de sous-traitance validée par le titulaire du marché"}
    assert_error(client.post("/search", json=long_one), 413, "too_many_tokens")
    assert_error(client.get("/search", query_string={"q": long_one["query"]}), 413, "too_many_tokens")


def test_batch_needs_json(client):
    assert_error(client.post("/search/batch", data="queries=x"), 415, "unsupported_media_type")


def test_cors_is_off_by_default(client):
    r = client.post("/search", json={"query": "facture"}, headers={"Origin": "https://widget.example"})
    assert "Access-Control-Allow-Origin" not in r.headers


def test_cors_allows_configured_origins_only(engine):
    app = create_app(
        {"TESTING": True, "FAQ_CORS_ORIGINS": "https://aide.example.fr, https://www.example.fr"}, engine=engine
    )
    client = app.test_client()
    ok = client.post("/search", json={"query": "facture"}, headers={"Origin": "https://aide.example.fr"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://aide.example.fr"
    other = client.post("/search", json={"query": "facture"}, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = client.options(
        "/search/batch",
        headers={
            "Origin": "https://www.example.fr",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://www.example.fr"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    # Errors carry the header too, so a widget can read the error code.
    err = client.post("/search", json={"query": ""}, headers={"Origin": "https://aide.example.fr"})
    assert err.status_code == 400 and err.headers["Access-Control-Allow-Origin"] == "https://aide.example.fr"


def test_a_cross_site_widget_can_send_an_api_key(engine):
    """The preflight is answered without a key and without spending the rate limit; it allows the key headers."""
    app = create_app(
        {
            "TESTING": True,
            "FAQ_CORS_ORIGINS": "https://aide.example.fr",
            "FAQ_API_KEYS": "widget-key",
            "FAQ_RATE_LIMIT": "2/minute",
        },
        engine=engine,
    )
    client = app.test_client()
    ask = {
        "Origin": "https://aide.example.fr",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Content-Type, X-API-Key, Authorization",
    }
    for _ in range(4):  # more preflights than the limit allows searches
        preflight = client.options("/search", headers=ask)
        assert preflight.status_code == 200, preflight.get_data(as_text=True)
        allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"content-type", "x-api-key", "authorization"} <= allowed
    headers = {"Origin": "https://aide.example.fr", "X-API-Key": "widget-key"}
    for _ in range(2):
        ok = client.post("/search", json={"query": "facture"}, headers=headers)
        assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == "https://aide.example.fr"
    assert "X-Request-ID" in ok.headers["Access-Control-Expose-Headers"]
    assert_error(client.post("/search", json={"query": "facture"}, headers=headers), 429, "rate_limited")
    refused = client.post("/search", json={"query": "facture"}, headers={"Origin": "https://aide.example.fr"})
    assert refused.status_code in (401, 429) and refused.headers["Access-Control-Allow-Origin"]

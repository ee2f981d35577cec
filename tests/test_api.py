"""The HTTP contract with a small engine (fake embedder): results, errors in one shape, odd but valid queries."""

from __future__ import annotations

import json

import pytest
from conftest import assert_error

from service.http.app import create_app


def test_search_contract(client):
    r = client.post("/search", json={"query": "transférer le rôle de gestionnaire principal", "top_k": 3})
    assert r.status_code == 200
    body = r.get_json()
    assert list(body) == ["query", "answered", "reason", "min_score", "results", "index", "took_ms", "request_id"]
    assert body["query"] == "transférer le rôle de gestionnaire principal"
    assert isinstance(body["answered"], bool) and isinstance(body["took_ms"], float)
    assert body["index"]["model"] == "test/hashing-embedder" and body["index"]["id"]
    results = body["results"]
    assert len(results) == 3
    assert [r["rank"] for r in results] == [1, 2, 3]
    assert all(
        set(r)
        == {"rank", "score", "faq_id", "passage_id", "question", "text", "section", "match", "links", "highlights"}
        for r in results
    )
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    match = results[0]["match"]
    assert set(match) == {
        "by",
        "matched_question",
        "question_similarity",
        "passage_similarity",
        "lexical_score",
        "terms",
    }
    assert match["by"] in ("question", "alt_question", "passage") and 0 <= match["lexical_score"] <= 1
    # The words of the query that the entry contains, as the user wrote them but folded.
    assert {"transferer", "role", "gestionnaire", "principal"} <= set(match["terms"])
    assert results[0]["faq_id"] == "gestionnaire"
    assert results[0]["section"] in (
        "Si le gestionnaire est encore présent",
        "Si le gestionnaire a quitté la structure",
    )


def test_one_passage_per_entry_and_top_k(client):
    body = client.post("/search", json={"query": "gestionnaire", "top_k": 50}).get_json()
    ids = [r["faq_id"] for r in body["results"]]
    assert len(ids) == len(set(ids)) == 4  # 4 entries, 5 passages: never two passages of one entry
    body = client.post("/search", json={"query": "gestionnaire"}).get_json()
    assert len(body["results"]) == 4  # default top_k is 5, capped by the number of entries
    assert len(client.post("/search", json={"query": "facture", "top_k": 1}).get_json()["results"]) == 1


def test_answered_follows_min_score(client):
    low = client.post("/search", json={"query": "lien d'activation", "min_score": 0}).get_json()
    high = client.post("/search", json={"query": "lien d'activation", "min_score": 1}).get_json()
    assert low["answered"] is True and low["min_score"] == 0
    assert high["answered"] is False and high["min_score"] == 1
    assert high["results"], "suggestions are returned even when not answered"
    best = low["results"][0]["score"]
    assert client.post("/search", json={"query": "lien d'activation", "min_score": best}).get_json()["answered"]


def test_default_threshold_comes_from_manifest_or_config(engine):
    assert engine.answer_threshold == engine.index.manifest.scoring_settings["answer_threshold"]
    app = create_app({"TESTING": True}, engine=engine)
    scoring = app.test_client().get("/health").get_json()["index"]["scoring"]
    assert scoring["answer_threshold"] == engine.answer_threshold


def test_get_search(client):
    r = client.get("/search?q=cr%C3%A9er+mon+compte&top_k=2")
    assert r.status_code == 200
    body = r.get_json()
    assert body["query"] == "créer mon compte" and len(body["results"]) == 2
    assert body["results"][0]["faq_id"] == "compte"


def test_faq_entry_and_health(client):
    entry = client.get("/faq/gestionnaire").get_json()
    assert entry["id"] == "gestionnaire" and entry["question"].startswith("Comment transférer")
    assert [p["passage_id"] for p in entry["passages"]] == ["gestionnaire#1", "gestionnaire#2"]
    assert client.get("/faq/factures").get_json()["theme"] == "factures"
    assert_error(client.get("/faq/nope"), 404, "faq_not_found")
    health = client.get("/health")
    assert health.status_code == 200
    h = health.get_json()
    assert h["status"] == "ok" and h["index"]["entries"] == 4 and h["index"]["passages"] == 5
    assert h["index"]["model"] == "test/hashing-embedder" and h["index"]["dimension"] == 384


def test_missing_model_gives_503_with_its_own_code(make_index, tmp_path):
    app = create_app({"TESTING": True, "FAQ_INDEX": str(make_index()), "FAQ_MODEL": str(tmp_path / "no-model")})
    client = app.test_client()
    err = assert_error(client.get("/health"), 503, "model_unavailable")
    assert "no-model" in err["message"]
    assert_error(client.post("/search", json={"query": "bonjour"}), 503, "model_unavailable")


def test_no_index_gives_503_everywhere(tmp_path):
    app = create_app({"TESTING": True, "FAQ_INDEX": str(tmp_path / "missing")})
    client = app.test_client()
    err = assert_error(client.get("/health"), 503, "index_unavailable")
    assert "faq-search build --corpus" in err["message"]
    assert_error(client.post("/search", json={"query": "bonjour"}), 503, "index_unavailable")
    assert_error(client.get("/faq/compte"), 503, "index_unavailable")


LONG = "a" * 1001
DEEP = "[" * 100_000 + "]" * 100_000  # within the body limit, deeper than the JSON decoder's stack
BAD_REQUESTS = [
    # (id, method, path, kwargs, status, code)
    ("nested 100,000 deep", "post", "/search", {"data": DEEP, "content_type": "application/json"}, 400, "invalid_json"),
    (
        "batch nested 100,000 deep",
        "post",
        "/search/batch",
        {"data": '{"queries": ' + DEEP + "}", "content_type": "application/json"},
        400,
        "invalid_json",
    ),
    (
        "malformed json",
        "post",
        "/search",
        {"data": '{"query": "x"', "content_type": "application/json"},
        400,
        "invalid_json",
    ),
    (
        "nan constant",
        "post",
        "/search",
        {"data": '{"query": "x", "min_score": NaN}', "content_type": "application/json"},
        400,
        "invalid_json",
    ),
    (
        "not utf-8",
        "post",
        "/search",
        {"data": b'{"query": "caf\xe9"}', "content_type": "application/json"},
        400,
        "invalid_json",
    ),
    ("empty body", "post", "/search", {"data": b"", "content_type": "application/json"}, 400, "invalid_json"),
    (
        "form content type",
        "post",
        "/search",
        {"data": "query=x", "content_type": "application/x-www-form-urlencoded"},
        415,
        "unsupported_media_type",
    ),
    (
        "text content type",
        "post",
        "/search",
        {"data": '{"query": "x"}', "content_type": "text/plain"},
        415,
        "unsupported_media_type",
    ),
    ("no content type", "post", "/search", {"data": '{"query": "x"}'}, 415, "unsupported_media_type"),
    ("body too large", "post", "/search", {"json": {"query": "x" * 300_000}}, 413, "payload_too_large"),
    ("array body", "post", "/search", {"json": ["query"]}, 400, "invalid_body"),
    ("missing query", "post", "/search", {"json": {"top_k": 3}}, 400, "missing_query"),
    ("empty query", "post", "/search", {"json": {"query": ""}}, 400, "empty_query"),
    ("whitespace query", "post", "/search", {"json": {"query": " \t\n\u00a0 "}}, 400, "empty_query"),
    ("query too long", "post", "/search", {"json": {"query": LONG}}, 400, "query_too_long"),
    ("query not a string", "post", "/search", {"json": {"query": 42}}, 400, "invalid_type"),
    ("query null", "post", "/search", {"json": {"query": None}}, 400, "invalid_type"),
    ("query list", "post", "/search", {"json": {"query": ["a"]}}, 400, "invalid_type"),
    ("top_k string", "post", "/search", {"json": {"query": "x", "top_k": "5"}}, 400, "invalid_type"),
    ("top_k float", "post", "/search", {"json": {"query": "x", "top_k": 2.5}}, 400, "invalid_type"),
    ("top_k integral float too big", "post", "/search", {"json": {"query": "x", "top_k": 51.0}}, 400, "out_of_range"),
    ("top_k bool", "post", "/search", {"json": {"query": "x", "top_k": True}}, 400, "invalid_type"),
    ("top_k zero", "post", "/search", {"json": {"query": "x", "top_k": 0}}, 400, "out_of_range"),
    ("top_k negative", "post", "/search", {"json": {"query": "x", "top_k": -3}}, 400, "out_of_range"),
    ("top_k too big", "post", "/search", {"json": {"query": "x", "top_k": 51}}, 400, "out_of_range"),
    ("min_score string", "post", "/search", {"json": {"query": "x", "min_score": "high"}}, 400, "invalid_type"),
    ("min_score too big", "post", "/search", {"json": {"query": "x", "min_score": 1.5}}, 400, "out_of_range"),
    ("min_score negative", "post", "/search", {"json": {"query": "x", "min_score": -0.5}}, 400, "out_of_range"),
    ("unknown field", "post", "/search", {"json": {"query": "x", "topk": 3}}, 400, "unknown_field"),
    ("get without q", "get", "/search", {}, 400, "missing_query"),
    ("get empty q", "get", "/search?q=%20", {}, 400, "empty_query"),
    ("get top_k text", "get", "/search?q=x&top_k=dix", {}, 400, "invalid_type"),
    ("get top_k 0", "get", "/search?q=x&top_k=0", {}, 400, "out_of_range"),
    ("get min_score inf", "get", "/search?q=x&min_score=inf", {}, 400, "out_of_range"),
    ("get min_score negative", "get", "/search?q=x&min_score=-0.2", {}, 400, "out_of_range"),
    ("get unknown param", "get", "/search?q=x&lang=fr", {}, 400, "unknown_field"),
    ("unknown path", "get", "/nope", {}, 404, "not_found"),
    ("wrong method search", "put", "/search", {"json": {"query": "x"}}, 405, "method_not_allowed"),
    ("wrong method health", "post", "/health", {}, 405, "method_not_allowed"),
    ("top_k superscript two", "get", "/search?q=a&top_k=%C2%B2", {}, 400, "invalid_type"),
    ("only control separators", "post", "/search", {"json": {"query": "\x1c\x1d\x1e\x1f"}}, 400, "empty_query"),
    ("get only control separators", "get", "/search?q=%1C%1F", {}, 400, "empty_query"),
    ("top_k of 5,000 digits", "get", "/search?q=a&top_k=" + "9" * 5000, {}, 400, "out_of_range"),
    (
        "a surrogate key",
        "post",
        "/search",
        {"data": '{"query": "x", "\\ud800": 1}', "content_type": "application/json"},
        400,
        "unknown_field",
    ),
    (
        "batch with a surrogate key",
        "post",
        "/search/batch",
        {"data": '{"queries": ["x"], "\\ud800": 1}', "content_type": "application/json"},
        400,
        "unknown_field",
    ),
]


@pytest.mark.parametrize(
    "method,path,kwargs,status,code", [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_requests_get_one_error_shape(client, method, path, kwargs, status, code):
    err = assert_error(getattr(client, method)(path, **kwargs), status, code)
    if code in ("invalid_type", "out_of_range", "missing_query", "empty_query", "query_too_long"):
        assert err["field"] in ("query", "q", "top_k", "min_score")


def test_405_keeps_the_allow_header(client):
    r = client.put("/search", json={"query": "x"})
    assert set(r.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


@pytest.mark.parametrize(
    "query",
    [
        "créer un compte ça coûte ?",
        "CREER UN COMPTE",
        "creer un compte",
        "facture 💶🧾 sous-traitant",
        'le "gestionnaire" l\'a dit',
        "<script>alert('x')</script> lien d'activation",
        "compte\u0000\u0007\u001b",
        "compte Счёт 账户 حساب",
        "\ud83d lien",
        "  espaces   partout\t",
        "‮inversé",
        "a",
    ],
)
def test_odd_queries_are_searched_not_rejected(client, query):
    # json.dumps escapes non-ASCII, so a lone surrogate travels as "\\ud83d", as a JSON client may send it.
    r = client.post("/search", data=json.dumps({"query": query}), content_type="application/json")
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert body["results"] and body["query"]


def test_query_is_stripped_and_charset_parameter_is_accepted(client):
    r = client.post("/search", data=json.dumps({"query": "  compte  "}), content_type="application/json; charset=utf-8")
    assert r.status_code == 200 and r.get_json()["query"] == "compte"


def test_unexpected_errors_are_500_json_without_traceback(engine, caplog):
    def boom(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    engine.search = boom
    client = create_app({"TESTING": True}, engine=engine).test_client()
    err = assert_error(client.post("/search", json={"query": "compte"}), 500, "internal_error")
    assert "secret" not in err["message"]
    assert any("unexpected error" in rec.message and rec.exc_info for rec in caplog.records)


def test_limits_are_configurable(engine):
    client = create_app(
        {"TESTING": True, "FAQ_MAX_QUERY_CHARS": 10, "MAX_CONTENT_LENGTH": 100}, engine=engine
    ).test_client()
    assert_error(client.post("/search", json={"query": "x" * 11}), 400, "query_too_long")
    assert_error(client.post("/search", json={"query": "x" * 200}), 413, "payload_too_large")
    assert client.post("/search", json={"query": "x" * 10}).status_code == 200


def test_environment_configures_the_app(engine, monkeypatch):
    monkeypatch.setenv("FAQ_MAX_QUERY_CHARS", "5")
    monkeypatch.setenv("FAQ_MIN_SCORE", "0.5")
    app = create_app({"TESTING": True}, engine=engine)
    settings = app.extensions["faqs"].default.settings
    assert (settings.max_query_chars, settings.min_score) == (5, 0.5)
    assert_error(app.test_client().post("/search", json={"query": "x" * 6}), 400, "query_too_long")
    monkeypatch.setenv("FAQ_MAX_QUERY_CHARS", "many")
    with pytest.raises(ValueError, match="FAQ_MAX_QUERY_CHARS"):
        create_app({"TESTING": True}, engine=engine)


def test_a_made_up_method_is_one_metrics_series(client):
    for n in range(5):
        client.open("/search", method=f"BREW{n}")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "BREW" not in metrics and 'method="other"' in metrics


def test_every_static_file_has_the_page_csp_and_no_sniffing(client):
    for path in ("/", "/static/index.html", "/static/app.js", "/static/style.css"):
        r = client.get(path)
        r.close()  # a static file is streamed
        assert r.status_code == 200 and "default-src 'self'" in r.headers["Content-Security-Policy"], path
        assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_no_redirect_echoes_the_host_header(client):
    """Werkzeug would redirect //health to http://<Host>/health (an HTML 308 built from the Host header); the
    service redirects nothing."""
    for path in ("/faq//x", "/faq//factures", "//health"):
        r = client.get("/", headers={"Host": "evil.example"}, environ_overrides={"PATH_INFO": path})
        assert r.status_code < 300 or r.status_code >= 400, path
        assert r.mimetype == "application/json" and "Location" not in r.headers and b"evil" not in r.data


def test_the_frameworks_errors_say_what_was_wrong_in_the_services_words(engine):
    client = create_app({"TESTING": True, "MAX_CONTENT_LENGTH": 1000}, engine=engine).test_client()
    assert "GET /nowhere" in assert_error(client.get("/nowhere"), 404, "not_found")["message"]
    wrong = assert_error(client.delete("/search"), 405, "method_not_allowed")["message"]
    assert "DELETE is not allowed on /search" in wrong and "GET" in wrong and "POST" in wrong
    big = assert_error(client.post("/search", json={"query": "x" * 2000}), 413, "payload_too_large")["message"]
    assert "1000 bytes" in big


def test_a_search_refused_for_its_tokens_is_answered_at_once_by_a_real_server(make_index, fake_embedder):
    """The body was read whole before the tokens were counted: the 413 must not wait to drain it again (the
    development server has no deadline: it waited for the client to give up)."""
    import urllib.error
    import urllib.request

    from conftest import serving

    from service.indexing.store import load_index
    from service.search.engine import SearchEngine

    app = create_app({"FAQ_MAX_REQUEST_TOKENS": 3}, engine=SearchEngine(fake_embedder, load_index(make_index())))
    with serving(app) as url:
        body = json.dumps({"query": "comment transférer le rôle de gestionnaire principal"}).encode()
        request = urllib.request.Request(url + "/search", data=body, headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)  # a hang fails here, with a timeout
        assert info.value.code == 413 and json.loads(info.value.read())["error"]["code"] == "too_many_tokens"

"""The Python client against a real server on 127.0.0.1: typed results, typed errors from the error codes."""

from __future__ import annotations

import pytest
from conftest import free_port

from service.integrations.client import (
    ConnectionFailedError,
    FaqSearchClient,
    FaqSearchError,
    InvalidRequestError,
    NotFoundError,
    Result,
    SearchResponse,
    ServiceUnavailableError,
    error_from_body,
)


def test_search_returns_typed_results(live_url):
    response = FaqSearchClient(live_url).search("transférer le rôle de gestionnaire principal", top_k=2)
    assert isinstance(response, SearchResponse) and isinstance(response.results[0], Result)
    assert response.results[0].faq_id == "gestionnaire" and len(response.results) == 2
    assert response.results[0].match.by in ("question", "alt_question", "passage")
    assert isinstance(response.answered, bool) and response.index_id and response.model == "test/hashing-embedder"


def test_min_score_is_sent_and_the_reason_comes_back(live_url):
    response = FaqSearchClient(live_url).search("lien d'activation", min_score=1.0)
    assert response.answered is False and response.reason["code"] == "no_close_entry"


def test_batch_keeps_errors_in_place(live_url):
    out = FaqSearchClient(live_url).search_batch(["facture sous-traitant", "", {"query": "compte", "top_k": 1}])
    assert isinstance(out[0], SearchResponse) and out[0].results[0].faq_id == "factures"
    assert isinstance(out[1], InvalidRequestError) and out[1].code == "empty_query" and out[1].field == "query"
    assert isinstance(out[2], SearchResponse) and len(out[2].results) == 1


def test_errors_are_typed_by_status_and_keep_the_code(live_url):
    client = FaqSearchClient(live_url)
    with pytest.raises(InvalidRequestError) as info:
        client.search("x", top_k=99)
    assert info.value.status == 400 and info.value.code == "out_of_range" and info.value.field == "top_k"
    with pytest.raises(NotFoundError) as info:
        client.entry("entrée inconnue")
    assert info.value.code == "faq_not_found"
    assert client.entry("gestionnaire")["passages"][0]["faq_id"] == "gestionnaire"
    assert client.health()["status"] == "ok"


def test_every_error_code_has_its_exception_in_the_client():
    from service.errors import ErrorCode
    from service.integrations.client import ConflictError, ServerError, UnauthorizedError, error_class

    expected = {400: InvalidRequestError, 401: UnauthorizedError, 404: NotFoundError, 409: ConflictError,
                503: ServiceUnavailableError, 500: ServerError}  # fmt: skip
    for code in ErrorCode:
        if code.status:
            err = error_from_body(code.status, {"error": {"code": code.value, "message": "m"}})
            assert isinstance(err, error_class(code.status)) and err.code == code.value
            if code.status in expected:
                assert isinstance(err, expected[code.status]), code
            assert (400 <= code.status < 500) == isinstance(err, InvalidRequestError) or code.status in (
                401, 403, 404, 409, 413, 429), code  # fmt: skip
    assert isinstance(error_from_body(404, {"error": {"code": "faq_not_found", "message": "m"}}), NotFoundError)
    assert isinstance(error_from_body(418, {"error": {"code": "teapot", "message": "m"}}), FaqSearchError)


def test_keys_limits_and_the_admin_get_their_own_exceptions(make_index, fake_embedder):
    from conftest import serving

    from service.http.app import create_app
    from service.indexing.store import load_index
    from service.integrations.client import ForbiddenError, RateLimitedError, UnauthorizedError
    from service.search.engine import SearchEngine

    engine = SearchEngine(fake_embedder, load_index(make_index()))
    app = create_app({"FAQ_API_KEYS": "k1", "FAQ_RATE_LIMIT": "2/minute"}, engine=engine)
    with serving(app) as url:
        with pytest.raises(UnauthorizedError) as no_key:
            FaqSearchClient(url).search("mot de passe")
        assert (no_key.value.status, no_key.value.code) == (401, "unauthorized")
        keyed = FaqSearchClient(url, api_key="k1")
        keyed.search("mot de passe")
        keyed.search("mot de passe")
        with pytest.raises(RateLimitedError) as limited:
            keyed.search("mot de passe")
        assert limited.value.code == "rate_limited" and limited.value.retry_after and limited.value.retry_after > 0
        with pytest.raises(ForbiddenError) as admin:
            keyed.call("POST", "/admin/reload")
        assert (admin.value.status, admin.value.code) == (403, "admin_disabled")


def test_unavailable_service_and_unreachable_host():
    err = error_from_body(503, {"error": {"status": 503, "code": "index_unavailable", "message": "no index"}})
    assert isinstance(err, ServiceUnavailableError) and err.code == "index_unavailable"
    port = free_port()  # nothing listens there once the socket is closed
    with pytest.raises(ConnectionFailedError) as info:
        FaqSearchClient(f"http://127.0.0.1:{port}", timeout=2).search("facture")
    assert info.value.status == 0 and info.value.code == "connection_failed"

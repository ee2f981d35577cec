"""The OpenAPI description: valid 3.1, covers every route, and real responses conform to it."""

from __future__ import annotations

import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_spec_validator import validate

from service.http.openapi import openapi_document


@pytest.fixture
def spec(app):
    return OpenAPI.from_dict(openapi_document(app))


def check(spec, response) -> None:
    """Validate a test-client response (status, content type, body) against the document."""
    request = MockRequest(
        "http://localhost", response.request.method, response.request.path, args=dict(response.request.args)
    )
    spec.validate_response(
        request, MockResponse(response.data, response.status_code, dict(response.headers), response.mimetype)
    )


def test_the_document_is_valid_openapi_3_1(client):
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0" and doc == openapi_document(client.application)
    validate(doc)
    assert "réponse" in doc["info"]["description"] or "répond" in doc["info"]["description"]


def test_every_route_and_method_is_described(app):
    paths = openapi_document(app)["paths"]
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        assert path in paths, f"{path} is not described"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in paths[path], f"{method} {path} is not described"


REQUESTS = [
    ("post", "/search", {"json": {"query": "créer mon compte", "top_k": 2}}),
    ("post", "/search", {"json": {"query": "facture sous-traitant", "min_score": 0.5}}),
    ("get", "/search?q=lien+d%27activation&top_k=1", {}),
    ("post", "/search/batch", {"json": {"queries": ["compte", {"query": "gestionnaire", "top_k": 1}, ""]}}),
    ("get", "/faq/gestionnaire", {}),
    ("get", "/faq/factures", {}),
    ("get", "/health", {}),
    ("get", "/openapi.json", {}),
    # errors
    ("post", "/search", {"json": {"query": ""}}),
    ("post", "/search", {"json": {"query": "x", "top_k": 99}}),
    ("post", "/search", {"data": "{not json", "content_type": "application/json"}),
    ("post", "/search", {"data": "q=x"}),
    ("post", "/search", {"json": {"query": "x" * 300_000}}),
    ("get", "/search", {}),
    ("post", "/search/batch", {"json": {"queries": []}}),
    ("get", "/faq/nope", {}),
    ("get", "/favicon.ico", {}),
    ("get", "/favicon.ico", {"headers": {"Range": "bytes=99999-"}}),  # a static file's own 416
    ("get", "/", {"headers": {"Range": "bytes=99999-"}}),
]


@pytest.mark.parametrize("method,url,kwargs", REQUESTS, ids=[f"{m} {u[:40]}" for m, u, _ in REQUESTS])
def test_responses_conform_to_the_document(client, spec, method, url, kwargs):
    response = getattr(client, method)(url, **kwargs)
    try:
        check(spec, response)
    finally:
        response.close()  # a static file's answer holds the file open until closed


def test_an_unavailable_index_answers_a_documented_503(spec):
    from service.http.app import create_app

    client = create_app({"TESTING": True, "FAQ_INDEX": "/nonexistent/index"}).test_client()
    for url in ("/health", "/search?q=facture", "/faq/x"):
        response = client.get(url)
        assert response.status_code == 503
        check(spec, response)


def test_a_route_without_its_description_is_refused(app):
    from service.http.openapi import operations

    app.add_url_rule("/undescribed", "undescribed", lambda: "x")
    with pytest.raises(LookupError, match="/undescribed"):
        list(operations(app))


def test_every_error_the_bad_request_table_meets_is_listed_for_its_route(app):
    """The codes each route answers with in ``test_api.py``'s table of bad requests are in its OpenAPI responses."""
    from test_api import BAD_REQUESTS as BAD

    paths = openapi_document(app)["paths"]
    checked = 0
    for _, method, url, _, status, code in BAD:
        path = url.split("?")[0]
        path = "/faq/{faq_id}" if path.startswith("/faq/") else path
        if path not in paths or method not in paths[path]:
            continue  # an unknown path or method: the HTTP layer's own answer (404, 405)
        described = paths[path][method]["responses"].get(str(status), {}).get("description", "")
        assert f"`{code}`" in described, f"{method.upper()} {path}: {status} {code} is not listed"
        checked += 1
    assert checked >= 20

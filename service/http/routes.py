"""HTTP routes: parse and validate, call the engine, return JSON. No model, FAISS or file code here."""

from __future__ import annotations

import json
import time

from flask import Blueprint, current_app, g, jsonify, request

from ..errors import IndexUnavailable, InvalidRequest, PayloadTooLarge, SearchTimeout, UnsupportedMediaType
from .admin import KEYED_ENDPOINTS, check_api_key
from .openapi import openapi_document
from .schemas import SearchRequest, parse_batch, parse_search, search_args_from_query_string

bp = Blueprint("api", __name__)


@bp.before_request
def _api_key():
    if request.endpoint in KEYED_ENDPOINTS:
        check_api_key()


def _engine():
    engine = current_app.extensions.get("faq_engine")
    if engine is None:
        failure = current_app.extensions.get("faq_engine_failure")
        if failure is not None:  # a fresh instance each time, so tracebacks do not pile up on one object
            raise type(failure)(failure.message, code=failure.code)
        raise IndexUnavailable("no index is loaded")
    return engine


def _searching(call):
    """Run ``call()`` once a search slot is free; give up with 503 ``search_timeout`` after FAQ_SEARCH_TIMEOUT.

    Encoding cannot be interrupted half-way, so the bound is on waiting: under overload, requests fail fast with
    a clear error (and ``Retry-After``) instead of piling up behind each other until every client times out.
    """
    timeout = float(current_app.config["FAQ_SEARCH_TIMEOUT"])
    gate = current_app.extensions["faq_search_slots"]  # made by create_app
    if not gate.acquire(timeout=timeout):
        raise SearchTimeout(f"the service is saturated: no search could start within {timeout:g} s; retry later")
    try:
        return call()
    finally:
        gate.release()


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _json_body():
    """The request body decoded as strict JSON (no NaN/Infinity)."""
    raw = request.get_data(cache=False)
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit and request.content_length is None and len(raw) >= limit:
        # A chunked body (no Content-Length) is cut at the limit by Werkzeug rather than refused.
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise InvalidRequest("the body is not valid UTF-8", code="invalid_json") from None
    except ValueError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:  # e.g. [[[[…]]]] 100,000 deep: the decoder runs out of stack before the end
        raise InvalidRequest("the body is nested too deeply to be a search request", code="invalid_json") from None


@bp.post("/search")
def search_post():
    """Search with a JSON body ``{"query", "top_k", "min_score"}``."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(f"send the body as application/json, not {request.mimetype or 'nothing'}")
    req = parse_search(_json_body(), current_app.config["FAQ_MAX_QUERY_CHARS"])
    g.logged_query = req.query
    engine = _engine()
    return jsonify(_searching(lambda: engine.search(req.query, req.top_k, req.min_score)).to_dict())


@bp.post("/search/batch")
def search_batch():
    """Several searches in one request: ``{"queries": [...]}``; a bad query gets its error in its slot."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(f"send the body as application/json, not {request.mimetype or 'nothing'}")
    started = time.perf_counter()
    items = parse_batch(_json_body(), current_app.config["FAQ_MAX_QUERY_CHARS"])
    valid = [(i, item) for i, item in enumerate(items) if isinstance(item, SearchRequest)]
    engine = _engine()
    responses = (
        _searching(lambda: engine.search_batch([(r.query, r.top_k, r.min_score) for _, r in valid])) if valid else []
    )
    results = [item.to_dict() if not isinstance(item, SearchRequest) else None for item in items]
    for (i, _), response in zip(valid, responses, strict=True):
        results[i] = response.to_dict()
    return jsonify({"results": results, "took_ms": round((time.perf_counter() - started) * 1000, 2)})


@bp.get("/search")
def search_get():
    """Search with ``?q=…&top_k=…&min_score=…``."""
    data = search_args_from_query_string(request.args)
    req = parse_search(data, current_app.config["FAQ_MAX_QUERY_CHARS"])
    g.logged_query = req.query
    engine = _engine()
    return jsonify(_searching(lambda: engine.search(req.query, req.top_k, req.min_score)).to_dict())


@bp.get("/faq/<faq_id>")
def faq_entry(faq_id: str):
    """The whole FAQ entry with its passages."""
    return jsonify(_engine().entry(faq_id))


@bp.get("/")
def search_page():
    """The search page for support agents (``service/http/static/``): everything it loads comes from this service."""
    response = current_app.send_static_file("index.html")
    response.headers["Content-Security-Policy"] = "default-src 'self'; connect-src 'self'"
    return response


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 description of this API."""
    return jsonify(openapi_document(current_app.config["FAQ_MAX_QUERY_CHARS"]))


@bp.get("/ready")
def ready():
    """Readiness: 200 once the model and a valid index are loaded; 503 (error shape, with the reason) before."""
    engine = _engine()
    return jsonify({"status": "ready", "index_id": engine.index.index_id})


@bp.get("/health")
def health():
    """200 with the index's manifest summary; 503 (error shape) when no index is loaded."""
    engine = _engine()
    return jsonify(
        {"status": "ok", "index": engine.summary(), "reload": current_app.extensions["faq_reloader"].status()}
    )

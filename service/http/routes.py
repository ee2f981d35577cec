"""HTTP routes: parse and validate, call the engine, return JSON. No model, FAISS or file code here."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, g, jsonify, request

from ..errors import FeatureDisabled, IndexUnavailable, redact_paths
from . import observability
from .admin import KEYED_ENDPOINTS, check_api_key, client_key, rate_limit_status
from .bodies import json_request
from .openapi import openapi_document
from .schemas import (
    FeedbackRequest,
    SearchRequest,
    parse_batch,
    parse_body,
    parse_search,
    search_args_from_query_string,
)

bp = Blueprint("api", __name__)


@bp.before_request
def _api_key():
    if request.endpoint in KEYED_ENDPOINTS:
        check_api_key()


def current_engine():
    engine = current_app.extensions.get("faq_engine")
    if engine is None:
        failure = current_app.extensions.get("faq_engine_failure")
        if failure is not None:  # a fresh instance each time, so tracebacks do not pile up on one object
            raise type(failure)(failure.message, code=failure.code)
        raise IndexUnavailable("no index is loaded")
    return engine


def _gate():
    """The search slots and token budget of this process (``search.admission``; made by create_app)."""
    return current_app.extensions["faq_search_gate"]


@bp.post("/search")
def search_post():
    """Search with a JSON body ``{"query", "top_k", "min_score"}``."""
    return _search_one(parse_search(json_request(), current_app.config["FAQ_MAX_QUERY_CHARS"]))


def _search_one(req: SearchRequest):
    """One validated search, within the token budget and a search slot: the JSON of its outcome."""
    g.logged_query = req.query
    engine = current_engine()
    gate = _gate()
    tokens = gate.tokens(engine, [req.query])
    body = gate.run(lambda: engine.search(req.query, req.top_k, req.min_score), tokens).to_dict()
    _log_search(req.query, body)
    body["request_id"] = observability.request_id()
    return jsonify(body)


def _log_search(query: str, body: dict) -> None:
    """Queue the search for the query log, when there is one (``FAQ_QUERY_LOG``): never blocks, never fails."""
    querylog = current_app.extensions.get("faq_query_log")
    if querylog is not None:
        querylog.record(observability.request_id(), query, body, client_key())


@bp.post("/search/batch")
def search_batch():
    """Several searches in one request: ``{"queries": [...]}``; a bad query gets its error in its slot."""
    started = time.perf_counter()
    items = parse_batch(json_request(), current_app.config["FAQ_MAX_QUERY_CHARS"])
    valid = [(i, item) for i, item in enumerate(items) if isinstance(item, SearchRequest)]
    engine = current_engine()
    gate = _gate()
    tokens = gate.tokens(engine, [r.query for _, r in valid])
    requests = [(r.query, r.top_k, r.min_score) for _, r in valid]
    responses = gate.run(lambda: engine.search_batch(requests), tokens) if valid else []
    results = [item.to_dict() if not isinstance(item, SearchRequest) else None for item in items]
    for (i, item), response in zip(valid, responses, strict=True):
        results[i] = response.to_dict()
        _log_search(item.query, results[i])
    return jsonify(
        {
            "results": results,
            "took_ms": round((time.perf_counter() - started) * 1000, 2),
            "request_id": observability.request_id(),
        }
    )


def query_log(why: str, code: str):
    """The app's query log, or 403 with ``code`` when ``FAQ_QUERY_LOG`` is not set."""
    querylog = current_app.extensions.get("faq_query_log")
    if querylog is None:
        raise FeatureDisabled(f"{why}: set FAQ_QUERY_LOG to a database file", code=code)
    return querylog


@bp.post("/feedback")
def feedback():
    """``{"request_id", "faq_id", "helpful"}``: whether an entry of that search helped (needs the query log)."""
    querylog = query_log("feedback is off: this service keeps no query log", code="feedback_disabled")
    body = parse_body(FeedbackRequest, json_request())
    engine = current_engine()
    querylog.feedback(body.request_id, body.faq_id, body.helpful, engine.index.index_id, client_key())
    observability.FEEDBACK.labels("true" if body.helpful else "false").inc()
    return jsonify(
        {"status": "recorded", "request_id": body.request_id, "faq_id": body.faq_id, "helpful": body.helpful}
    ), 201


@bp.get("/search")
def search_get():
    """Search with ``?q=…&top_k=…&min_score=…``."""
    data = search_args_from_query_string(request.args)
    return _search_one(parse_search(data, current_app.config["FAQ_MAX_QUERY_CHARS"]))


@bp.get("/faq/<faq_id>")
def faq_entry(faq_id: str):
    """The whole FAQ entry with its passages."""
    return jsonify(current_engine().entry(faq_id))


@bp.get("/")
def search_page():
    """The search page for support agents (``service/http/static/``): everything it loads comes from this service."""
    return current_app.send_static_file("index.html")  # with the page's CSP, like every static file


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 description of this API (titled with the loaded FAQ's name, when it has one)."""
    engine = current_app.extensions.get("faq_engine")
    identity = engine.index.identity if engine is not None else None
    return jsonify(openapi_document(current_app.config["FAQ_MAX_QUERY_CHARS"], identity=identity))


@bp.get("/ready")
def ready():
    """Readiness: 200 once the model and a valid index are loaded; 503 (error shape, with the reason) before."""
    engine = current_engine()
    return jsonify({"status": "ready", "index_id": engine.index.index_id})


@bp.get("/health")
def health():
    """200 with the index's manifest summary; 503 (error shape) when no index is loaded."""
    engine = current_engine()
    querylog = current_app.extensions.get("faq_query_log")
    status = {
        "status": "ok",
        "index": engine.summary(),
        "reload": current_app.extensions["faq_reloader"].status(),
        "query_log": querylog.status() if querylog is not None else {"enabled": False},
        "rate_limit": rate_limit_status(current_app),
    }
    status = redact_paths(status)  # open to anyone: build names, not the host's paths
    status["index"]["faq"] = engine.index.identity.to_dict()  # the FAQ's own words, not paths: shown as written
    return jsonify(status)

"""HTTP routes of the search API: parse and validate, call the service, return JSON. No model, FAISS or file code.

``bp`` holds the routes of one FAQ: the app serves them twice, for the default FAQ (``/search``) and under each
FAQ's name (``/faqs/<faq_name>/search``); ``service_bp`` holds the service's own (``/faqs``, ``/openapi.json``, the
icon).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from ..core.models import MAX_TOP_K, FeedbackRequest, SearchRequest, parse_batch, parse_body, parse_search
from ..errors import ErrorCode, InvalidRequest
from . import observability
from .admin import check_api_key, client_key, keyed_endpoint
from .bodies import json_request
from .current import catalog, faq_scope, faq_service, known_faq
from .openapi import (
    ANY_OBJECT,
    EXAMPLE_QUERY,
    HTML,
    READY,
    SEARCH_ERRORS,
    SEARCH_SECURITY,
    SVG,
    describe,
    openapi_document,
    path_parameter,
    search_parameters,
)

bp = Blueprint("api", __name__)
service_bp = Blueprint("service", __name__)


@bp.before_request
def _api_key():
    if keyed_endpoint():
        check_api_key()


@service_bp.before_request
def _service_api_key():
    if keyed_endpoint():
        check_api_key()


def _max_query_chars() -> int:
    return catalog().settings.max_query_chars


SEARCH_OK = {200: ("The best entries, best first, and whether the first one is an answer.", "SearchResponse")}


@bp.post("/search")
@describe(operation_id="search", summary="Chercher les entrées qui répondent à une question", responses=SEARCH_OK,
          request=("SearchRequest", {"query": EXAMPLE_QUERY, "top_k": 3}), errors=SEARCH_ERRORS,
          security=SEARCH_SECURITY, body=True, keyed=True, engine=True)  # fmt: skip
def search_post():
    """Search with a JSON body ``{"query", "top_k", "min_score"}``."""
    return _search_one(parse_search(json_request(), _max_query_chars()))


@bp.get("/search")
@describe(operation_id="searchGet", summary="La même recherche, par paramètres d'URL", responses=SEARCH_OK,
          parameters=search_parameters, errors=SEARCH_ERRORS | {ErrorCode.URI_TOO_LONG}, security=SEARCH_SECURITY,
          keyed=True, engine=True)  # fmt: skip
def search_get():
    """Search with ``?q=…&top_k=…&min_score=…``."""
    return _search_one(parse_search(search_args_from_query_string(request.args), _max_query_chars()))


def _search_one(req: SearchRequest):
    g.logged_query = req.query
    if req.faqs is not None:
        _across_allowed()
        across = catalog().search_across(req, req.faqs, observability.request_id(), client_key(), allowed=faq_scope())
        return jsonify(across)
    return jsonify(faq_service().search(req, observability.request_id(), client_key()))


def _across_allowed() -> None:
    """``faqs`` is for the routes without a FAQ name: under ``/faqs/<name>/`` the FAQ is chosen already."""
    if g.get("faq_name") is not None:
        raise _across_refused()


def _across_refused() -> InvalidRequest:
    return InvalidRequest(
        "'faqs' is for /search and /search/batch; the routes under /faqs/<name>/ search that FAQ alone",
        code=ErrorCode.INVALID_REQUEST,
        field="faqs",
    )


@bp.post("/search/batch")
@describe(
    operation_id="searchBatch",
    summary="Plusieurs recherches en une requête (jusqu'à 64 questions)",
    request=("BatchRequest", {"queries": [EXAMPLE_QUERY, {"query": "notre admin est parti", "top_k": 2}]}),
    responses={200: ("One item per query, in order: a search response, or the error that query got.", "BatchResponse")},
    errors=frozenset({ErrorCode.MISSING_QUERIES, ErrorCode.UNKNOWN_FIELD, ErrorCode.INVALID_TYPE,
                      ErrorCode.OUT_OF_RANGE, ErrorCode.TOO_MANY_TOKENS, ErrorCode.SEARCH_TIMEOUT}),
    security=SEARCH_SECURITY, body=True, keyed=True, engine=True,
)  # fmt: skip
def search_batch():
    """Several searches in one request: ``{"queries": [...]}``; a bad query gets its error in its slot."""
    items = parse_batch(json_request(), _max_query_chars())
    if g.get("faq_name") is not None:  # one FAQ's batch: a query naming FAQs gets its error in its slot
        items = [_across_refused() if isinstance(it, SearchRequest) and it.faqs is not None else it for it in items]
    body = catalog().search_batch(items, g.get("faq_name"), observability.request_id(), client_key(), faq_scope())
    return jsonify(body)


@bp.post("/feedback")
@describe(
    operation_id="sendFeedback",
    summary="Dire si une entrée renvoyée par une recherche a aidé l'usager",
    description="Needs the query log (`FAQ_QUERY_LOG`). Entries marked not helpful go to the FAQ owner's review "
    "queue.",
    request=("FeedbackRequest", {"request_id": "5f0c2f8e1b2a4c7d9e3f", "faq_id": "chorus-pro-1", "helpful": False}),
    responses={201: ("Recorded.", "FeedbackResponse")},
    errors=frozenset({ErrorCode.MISSING_FIELD, ErrorCode.UNKNOWN_FIELD, ErrorCode.INVALID_TYPE,
                      ErrorCode.INVALID_REQUEST, ErrorCode.OUT_OF_RANGE, ErrorCode.FEEDBACK_DISABLED,
                      ErrorCode.UNKNOWN_REQUEST, ErrorCode.UNKNOWN_ENTRY, ErrorCode.QUERY_LOG_UNAVAILABLE}),
    security=SEARCH_SECURITY, body=True, keyed=True, engine=True,
)  # fmt: skip
def feedback():
    """``{"request_id", "faq_id", "helpful"}``: whether an entry of that search helped (needs the query log)."""
    service = faq_service()
    service.needs_query_log("feedback is off: this service keeps no query log", code=ErrorCode.FEEDBACK_DISABLED)
    return jsonify(service.feedback(parse_body(FeedbackRequest, json_request()), client_key())), 201


@bp.get("/faq/<faq_id>")
@describe(operation_id="getFaqEntry", summary="Une entrée de la FAQ, complète",
          parameters=path_parameter("faq_id", "chorus-pro-4"), errors=frozenset({ErrorCode.FAQ_NOT_FOUND}),
          responses={200: ("The entry as built (the corpus's fields and the review decisions), with its passages.",
                           "FaqEntryResponse")},
          security=SEARCH_SECURITY, keyed=True, engine=True)  # fmt: skip
def faq_entry(faq_id: str):
    """The whole FAQ entry with its passages."""
    return jsonify(faq_service().entry(faq_id))


@bp.get("/")
@describe(operation_id="searchPage", summary="Page de recherche pour les agents du support",
          responses={200: ("HTML page (French); its script and style are served by this service under /static/.",
                           HTML)}, http_statuses=frozenset({416}))  # fmt: skip
def search_page():
    """The search page for support agents (``service/http/static/``): everything it loads comes from this service."""
    known_faq()  # /faqs/<name>/ of a FAQ this service does not serve is a 404, not a page whose calls all fail
    return current_app.send_static_file("index.html")  # with the page's CSP, like every static file


@service_bp.get("/favicon.ico")
@describe(operation_id="favicon", summary="L'icône du service",
          responses={200: ("The service's icon, an SVG (the pages name it; browsers that ask by habit get it too).",
                           SVG)}, http_statuses=frozenset({416}))  # fmt: skip
def favicon():
    """The icon of the pages (``static/favicon.svg``), also where browsers look for it without being told."""
    return current_app.send_static_file("favicon.svg")


@service_bp.get("/openapi.json")
@describe(operation_id="openapi", summary="Cette description OpenAPI",
          responses={200: ("OpenAPI 3.1 document.", ANY_OBJECT)})  # fmt: skip
def openapi():
    """The OpenAPI 3.1 description of this API (titled with the loaded FAQ's name, when it has one)."""
    engine = catalog().default.current_engine
    identity = engine.index.identity if engine is not None else None
    return jsonify(openapi_document(current_app, identity=identity))


@service_bp.get("/faqs")
@describe(operation_id="listFaqs", summary="Les FAQ de ce service",
          responses={200: ("Every FAQ this service serves, the default first: its name (its URLs are "
                           "/faqs/<name>/…), its identity, entries and index, and whether it is ready.",
                           "FaqsResponse")},
          security=SEARCH_SECURITY, keyed=True)  # fmt: skip
def faqs():
    """The FAQs of this service: their names and what each covers."""
    return jsonify(catalog().listing(faq_scope()))


@bp.get("/ready")
@describe(operation_id="ready", summary="Prêt à répondre : modèle et index valides chargés",
          responses={200: ("Ready; the id of the index served.", READY)}, engine=True)  # fmt: skip
def ready():
    """Readiness: 200 once the model and a valid index are loaded; 503 (error shape, with the reason) before."""
    return jsonify(faq_service().ready())


@bp.get("/health")
@describe(operation_id="health", summary="État du service et de l'index chargé",
          responses={200: ("The loaded index's summary.", "HealthResponse")}, engine=True)  # fmt: skip
def health():
    """200 with the index's manifest summary; 503 (error shape) when no index is loaded."""
    return jsonify({**faq_service().health(), "faqs": catalog().health_summary()})


def search_args_from_query_string(args) -> dict:
    """Turn ``GET /search?q=…&top_k=…&min_score=…`` parameters into the JSON body's types.

    Raises:
        InvalidRequest: a parameter is not a number where one is expected, or is unknown.
    """
    data: dict[str, Any] = {}
    for key in args:
        if key not in ("q", "query", "top_k", "min_score", "faqs", "filter"):
            raise InvalidRequest(
                f"unknown parameter '{key}'; accepted: q, top_k, min_score, filter, faqs",
                code=ErrorCode.UNKNOWN_FIELD,
                field=key,
            )
    if "filter" in args:  # ?filter={"tags":["compte"]} (JSON, URL-encoded)
        try:
            data["filter"] = json.loads(args["filter"])
        except ValueError:
            raise InvalidRequest(
                "'filter' must be a JSON object, URL-encoded", code=ErrorCode.INVALID_FILTER, field="filter"
            ) from None
    if "faqs" in args:  # ?faqs=a,b or ?faqs=* (or ?faqs=a&faqs=b)
        given = ",".join(args.getlist("faqs"))
        data["faqs"] = [name.strip() for name in given.split(",")] if given.strip() else []
    if "q" in args or "query" in args:
        data["query"] = args.get("q", args.get("query"))
    else:  # named as the GET form names it
        raise InvalidRequest("'q' is required: GET /search?q=<question>", code=ErrorCode.MISSING_QUERY, field="q")
    if "top_k" in args:
        raw = args["top_k"].strip()
        if not re.fullmatch(r"[+-]?[0-9]+", raw):  # ASCII digits: str.isdigit() also takes "²", which int() refuses
            raise InvalidRequest("'top_k' must be an integer", code=ErrorCode.INVALID_TYPE, field="top_k")
        if len(raw.lstrip("+-").lstrip("0")) > 9:  # int() of thousands of digits is slow, then refused
            raise InvalidRequest(
                f"'top_k' must be an integer from 1 to {MAX_TOP_K}", code=ErrorCode.OUT_OF_RANGE, field="top_k"
            )
        data["top_k"] = int(raw)
    if "min_score" in args:
        try:
            value = float(args["min_score"])
        except ValueError:
            raise InvalidRequest(
                "'min_score' must be a number", code=ErrorCode.INVALID_TYPE, field="min_score"
            ) from None
        if not math.isfinite(value):
            raise InvalidRequest(
                "'min_score' must be a number from 0 to 1", code=ErrorCode.OUT_OF_RANGE, field="min_score"
            )
        data["min_score"] = value
    return data

"""The OpenAPI 3.1 description of the HTTP API, built from the app's route table: each route declares, next to its
code, what it takes and answers (``describe``), the request and response models come from ``core/models.py``, and
the error codes a route can return come from ``errors.ErrorCode`` (its own, and those of what it is: a search route
with a key and a rate limit, a route with a JSON body, an admin route, a route that needs the engine).

``tests/test_openapi.py`` checks that every route is described and that real answers, errors included, conform; the
bad-request table of ``tests/test_api.py`` that each code it meets is listed for its route.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import Flask
from pydantic.json_schema import models_json_schema

from ..core import models
from ..errors import ErrorCode
from ..search import filters
from ..settings import Settings

E = ErrorCode
#: What a route that reads a JSON body can answer because of it.
BODY_ERRORS = frozenset(
    {E.INVALID_JSON, E.INVALID_BODY, E.UNSUPPORTED_MEDIA_TYPE, E.PAYLOAD_TOO_LARGE, E.REQUEST_TIMEOUT, E.BAD_REQUEST}
)
#: A route behind the API keys and the rate limit (``FAQ_API_KEYS``, ``FAQ_RATE_LIMIT``).
KEYED_ERRORS = frozenset({E.UNAUTHORIZED, E.RATE_LIMITED, E.FAQ_FORBIDDEN})
#: A route behind the admin token.
ADMIN_ERRORS = frozenset({E.UNAUTHORIZED, E.ADMIN_DISABLED})
#: A route that needs the engine (a model and an index loaded).
ENGINE_ERRORS = frozenset({E.INDEX_UNAVAILABLE, E.INDEX_MODEL_MISMATCH, E.MODEL_UNAVAILABLE})
#: A search: its validation, its budget and its slot.
SEARCH_ERRORS = frozenset(
    {E.MISSING_QUERY, E.EMPTY_QUERY, E.QUERY_TOO_LONG, E.INVALID_TYPE, E.OUT_OF_RANGE, E.UNKNOWN_FIELD,
     E.TOO_MANY_TOKENS, E.SEARCH_TIMEOUT, E.UNKNOWN_FAQ, E.INVALID_REQUEST, E.INVALID_FILTER,
     E.UNKNOWN_FILTER_FIELD}
)  # fmt: skip
#: A route of the review loop: the query log and the reviewed file.
REVIEW_ERRORS = frozenset({E.QUERY_LOG_DISABLED, E.QUERY_LOG_UNAVAILABLE, E.REVIEWED_FILE_INVALID, *ENGINE_ERRORS})
#: Search routes accept an API key when the service requires one; without FAQ_API_KEYS they are open ({}).
SEARCH_SECURITY = [{}, {"apiKey": []}, {"bearer": []}]
ADMIN_SECURITY = [{"bearer": []}]
EXAMPLE_QUERY = "pas reçu le mail pour activer mon compte"


@dataclass(frozen=True)
class Operation:
    """What one route takes and answers, as its OpenAPI operation says it."""

    operation_id: str
    summary: str
    responses: dict[int, tuple[str, Any]]  # status -> (description, a model's name or a schema dict or a media type)
    errors: frozenset = frozenset()
    description: str | None = None
    request: tuple[Any, Any] | None = None  # (model name or schema, or (media type, schema); example)
    request_required: bool = True
    parameters: Callable[[int], list[dict]] | list[dict] | None = None  # given the service's FAQ_MAX_QUERY_CHARS
    security: list | None = None
    body: bool = False
    keyed: bool = False
    admin: bool = False
    engine: bool = False
    #: Statuses the HTTP layer answers by itself on this route, with the code ``http_error`` (a static file's 416).
    http_statuses: frozenset = frozenset()

    def all_errors(self) -> set[ErrorCode]:
        """Every code this route can answer with: its own and those of what it is."""
        out = set(self.errors) | {E.INTERNAL_ERROR}
        for applies, codes in ((self.body, BODY_ERRORS), (self.keyed, KEYED_ERRORS), (self.admin, ADMIN_ERRORS),
                               (self.engine, ENGINE_ERRORS)):  # fmt: skip
            if applies:
                out |= codes
        return out


def describe(**fields: Any) -> Callable:
    """Declare a view's operation (``Operation``'s fields), read by ``openapi_document``."""
    operation = Operation(**fields)

    def mark(view: Callable) -> Callable:
        view.openapi = operation
        return view

    return mark


def _json(schema: Any, example=None) -> dict:
    content = {"schema": {"$ref": f"#/components/schemas/{schema}"} if isinstance(schema, str) else schema}
    if example is not None:
        content["example"] = example
    return {"application/json": content}


def _response(description: str, schema: Any) -> dict:
    if isinstance(schema, tuple):  # (media type, schema): not JSON
        return {"description": description, "content": {schema[0]: {"schema": schema[1]}}}
    return {"description": description, "content": _json(schema)}


def _filter_schema(app: Flask) -> dict:
    """What a filter may hold here: the fields the entries of this service's FAQs declare (``search/filters.py``)."""
    catalog = app.extensions.get("faqs")
    fields: dict[str, bool] = {}
    for service in catalog.services.values() if catalog is not None else ():
        engine = service.current_engine
        for name in engine.filters.names if engine is not None else ():
            fields[name] = name == "tags"
    return filters.json_schema(fields)


def _json_parameter(parameter: dict, schema: dict) -> dict:
    """A query parameter whose value is JSON (``?filter={…}``, URL-encoded)."""
    out = {k: v for k, v in parameter.items() if k != "schema"}
    out["content"] = {"application/json": {"schema": schema}}
    return out


def _named_errors(op: Operation) -> set[ErrorCode]:
    """What a route answers under ``/faqs/{faq_name}/`` besides its own: an unknown name; and one FAQ's health and
    readiness need a key (the service's own ``/health`` and ``/ready`` stay open to probes)."""
    return {E.UNKNOWN_FAQ} | (set(KEYED_ERRORS) if op.operation_id in ("health", "ready") else set())


def _error_responses(codes: Iterable[ErrorCode]) -> dict[str, dict]:
    """One response per status, listing the codes of that status the route can answer with."""
    by_status: dict[int, list[ErrorCode]] = {}
    for code in codes:
        if code.status:
            by_status.setdefault(code.status, []).append(code)
    return {
        str(status): {
            "description": "; ".join(f"`{c.value}`: {c.meaning}" for c in sorted(found, key=list(ErrorCode).index)),
            "content": _json("ErrorResponse"),
        }
        for status, found in sorted(by_status.items())
    }


def search_parameters(max_query_chars: int) -> list[dict]:
    """The query-string parameters of ``GET /search``."""
    fields_ = models.SearchRequest.model_fields
    return [
        {
            "name": "q",
            "in": "query",
            "required": True,
            "description": fields_["query"].description,
            "schema": {"type": "string", "minLength": 1, "maxLength": max_query_chars, "pattern": r"\S"},
            "example": EXAMPLE_QUERY,
        },
        {
            "name": "top_k",
            "in": "query",
            "required": False,
            "description": fields_["top_k"].description,
            "schema": {"type": "integer", "minimum": 1, "maximum": models.MAX_TOP_K, "default": 5},
        },
        {
            "name": "min_score",
            "in": "query",
            "required": False,
            "description": fields_["min_score"].description,
            "schema": {"type": "number", "minimum": 0, "maximum": 1},
        },
        {
            "name": "filter",
            "in": "query",
            "required": False,
            "description": "A JSON object, URL-encoded: " + fields_["filter"].description,
            "schema": {"type": "string", "minLength": 2},
        },
        {
            "name": "faqs",
            "in": "query",
            "required": False,
            "description": "Comma-separated FAQ names, or `*`: " + fields_["faqs"].description,
            "schema": {"type": "string", "minLength": 1, "pattern": r"\S"},
        },
    ]


#: The path parameter of every FAQ's routes (``/faqs/{faq_name}/…``).
FAQ_NAME_PARAMETER = {
    "name": "faq_name",
    "in": "path",
    "required": True,
    "description": "The FAQ's name, as `GET /faqs` lists them (an unknown name: 404 `unknown_faq`).",
    "schema": {"type": "string"},
}


#: The query-string parameters of the review queue and the gaps.
WINDOW_PARAMETERS = [
    {
        "name": "days",
        "in": "query",
        "required": False,
        "description": "Look this many days back (default: the log's retention).",
        "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 3650},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "Groups returned at most.",
        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
    },
    {
        "name": "page",
        "in": "query",
        "required": False,
        "description": "Which 500 flagged queries to group, the most flagged first (the response says how many "
        "pages there are).",
        "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1},
    },
]


def path_parameter(name: str, example: str | None = None) -> list[dict]:
    """A path's ``<name>`` as an OpenAPI parameter."""
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"},
             **({"example": example} if example else {})}]  # fmt: skip


#: The models the document describes, each as the API reads it (requests) or writes it (responses).
REQUEST_MODELS = (
    models.SearchRequest,
    models.FaqSearchRequest,
    models.BatchRequest,
    models.FeedbackRequest,
    models.ReviewActionRequest,
    models.RevertRequest,
)
RESPONSE_MODELS = (
    models.SearchResponse,
    models.BatchResponse,
    models.ErrorResponse,
    models.HealthResponse,
    models.FaqsResponse,
    models.FaqEntryResponse,
    models.FeedbackResponse,
    models.ReviewQueueResponse,
    models.GapsResponse,
    models.ReviewActionResponse,
    models.ReviewActionsResponse,
    models.RebuildResponse,
)


def operations(app: Flask) -> Iterable[tuple[str, str, Operation]]:
    """Every described route of ``app``: (OpenAPI path, method, operation).

    Raises:
        LookupError: a route that is not described (every route must be).
    """
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        operation = getattr(view, "openapi", None)
        if operation is None:
            raise LookupError(f"route {rule.rule} ({rule.endpoint}) is not described (openapi.describe)")
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield path, method.lower(), operation


def openapi_document(app: Flask, identity=None, version: str = "1") -> dict:
    """The whole API of ``app`` as an OpenAPI 3.1 document (a JSON-ready dict).

    Args:
        app: the Flask app (its routes, and its service's ``FAQ_MAX_QUERY_CHARS``).
        identity: the loaded FAQ's ``FaqIdentity`` (its name titles the document; its support contact is named).
    """
    service = app.extensions.get("faq_service")
    max_query_chars = (service.settings if service is not None else Settings.from_env()).max_query_chars
    name = identity.name if identity is not None else None
    support = identity.support if identity is not None else None
    _, defs = models_json_schema(
        [(m, "validation") for m in REQUEST_MODELS] + [(m, "serialization") for m in RESPONSE_MODELS],
        ref_template="#/components/schemas/{model}",
    )
    filter_schema = _filter_schema(app)
    for model in ("SearchRequest", "FaqSearchRequest"):
        defs["$defs"][model]["properties"]["query"]["maxLength"] = max_query_chars
        described = defs["$defs"][model]["properties"]["filter"]
        defs["$defs"][model]["properties"]["filter"] = {"anyOf": [filter_schema, {"type": "null"}], "default": None,
                                                        "description": described.get("description", "")}  # fmt: skip
    paths: dict[str, dict] = {}
    for path, method, op in operations(app):
        named = "{faq_name}" in path  # a FAQ's route under its name: the same operation, one more parameter
        doc: dict[str, Any] = {"operationId": op.operation_id + ("InFaq" if named else ""), "summary": op.summary}
        if op.description:
            doc["description"] = op.description
        parameters = [FAQ_NAME_PARAMETER] if named else []
        if op.parameters is not None:
            parameters += op.parameters(max_query_chars) if callable(op.parameters) else op.parameters
        if named:  # one FAQ's search: not across FAQs
            parameters = [p for p in parameters if p["name"] != "faqs"]
        parameters = [_json_parameter(p, filter_schema) if p["name"] == "filter" else p for p in parameters]
        if parameters:
            doc["parameters"] = parameters
        if op.request is not None:
            model, example = op.request
            model = "FaqSearchRequest" if named and model == "SearchRequest" else model
            content = {model[0]: {"schema": model[1]}} if isinstance(model, tuple) else _json(model, example)
            doc["requestBody"] = {"required": op.request_required, "content": content}
        if op.security is not None:
            doc["security"] = op.security
        doc["responses"] = {
            **{str(status): _response(text, schema) for status, (text, schema) in op.responses.items()},
            **_error_responses(op.all_errors() | (_named_errors(op) if named else set())),
            **{
                str(status): {
                    "description": f"`{E.HTTP_ERROR.value}`: {E.HTTP_ERROR.meaning}",
                    "content": _json("ErrorResponse"),
                }
                for status in sorted(op.http_statuses)
            },
        }
        paths.setdefault(path, {})[method] = doc
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"Recherche dans la FAQ {name}" if name else "Recherche sémantique dans une FAQ",
            "version": version,
            "description": "Trouve, pour une question posée avec les mots de l'usager, les entrées de la FAQ "
            "officielle qui y répondent, avec un score calibré et l'indication `answered` "
            "(la première entrée répond-elle à la question ? sinon `reason` dit pourquoi)."
            + (f" Quand la FAQ n'a pas de réponse : {support}." if support else ""),
        },
        "paths": paths,
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (search routes, when `FAQ_API_KEYS` is set) or the admin token.",
                },
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


#: Answers that are not JSON objects of a model.
HTML = ("text/html", {"type": "string"})
SVG = ("image/svg+xml", {})  # the file as it is (any schema: the bytes of an image)
TEXT = ("text/plain", {"type": "string"})
ANY_OBJECT = {"type": "object"}
READY = {
    "type": "object",
    "required": ["status", "index_id"],
    "properties": {"status": {"const": "ready"}, "index_id": {"type": "string"}},
}

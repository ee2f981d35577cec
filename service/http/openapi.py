"""The OpenAPI 3.1 description of the HTTP API, generated from the pydantic models in ``schemas.py``."""

from __future__ import annotations

from pydantic.json_schema import models_json_schema

from . import schemas

ERROR_STATUSES = {
    "400": "Bad request: `invalid_json`, `invalid_body`, `missing_query`, `empty_query`, `query_too_long`, "
    "`invalid_type`, `out_of_range`, `unknown_field` (and `missing_queries` for a batch).",
    "401": "A key is needed: an API key on the search routes when `FAQ_API_KEYS` is set, the admin token on "
    "`/admin/*` (`unauthorized`).",
    "403": "The admin endpoints are disabled: no `FAQ_ADMIN_TOKEN` is configured (`admin_disabled`); feedback and "
    "the review queue need the query log (`feedback_disabled`, `query_log_disabled`: no `FAQ_QUERY_LOG`).",
    "404": "Unknown path (`not_found`) or FAQ entry (`faq_not_found`); for feedback and review actions: "
    "`unknown_request`, `unknown_entry`, `unknown_query`, `unknown_action`.",
    "405": "Wrong method (`method_not_allowed`); the `Allow` header lists the right ones.",
    "413": "Body larger than the configured limit (`payload_too_large`).",
    "415": "A POST body not sent as `application/json` (`unsupported_media_type`).",
    "500": "Unexpected failure (`internal_error`); details go to the service log only.",
    "409": "The reload was refused; the previous index keeps serving and the body says why. A review action that "
    "no longer fits: `stale_review` (the index changed since the queue was listed), `already_reviewed`, "
    "`already_reverted`, `review_conflict`.",
    "429": "Too many requests from this client (`rate_limited`, when `FAQ_RATE_LIMIT` is set); `Retry-After` says "
    "when to try again.",
    "503": "No usable index or model (`index_unavailable`, `index_model_mismatch`, `model_unavailable`), no "
    "search could start within `FAQ_SEARCH_TIMEOUT` (`search_timeout`, with `Retry-After`), or the query log "
    "cannot be read (`query_log_unavailable`; searches are not affected).",
}
#: Search routes accept an API key when the service requires one; without FAQ_API_KEYS they are open ({}).
SEARCH_SECURITY = [{}, {"apiKey": []}, {"bearer": []}]

EXAMPLE_QUERY = "pas reçu le mail pour activer mon compte"


def _json(schema_name: str, example=None) -> dict:
    content = {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}
    if example is not None:
        content["example"] = example
    return {"application/json": content}


def _errors(*statuses: str) -> dict:
    return {s: {"description": ERROR_STATUSES[s], "content": _json("ErrorResponse")} for s in statuses}


def _search_parameters(max_query_chars: int) -> list[dict]:
    fields = schemas.SearchRequest.model_fields
    return [
        {
            "name": "q",
            "in": "query",
            "required": True,
            "description": fields["query"].description,
            "schema": {"type": "string", "minLength": 1, "maxLength": max_query_chars, "pattern": r"\S"},
            "example": EXAMPLE_QUERY,
        },
        {
            "name": "top_k",
            "in": "query",
            "required": False,
            "description": fields["top_k"].description,
            "schema": {"type": "integer", "minimum": 1, "maximum": schemas.MAX_TOP_K, "default": 5},
        },
        {
            "name": "min_score",
            "in": "query",
            "required": False,
            "description": fields["min_score"].description,
            "schema": {"type": "number", "minimum": 0, "maximum": 1},
        },
    ]


def _typed(description: str, schema_name: str) -> dict:
    return {"description": description, "content": _json(schema_name)}


def _window_parameters() -> list[dict]:
    return [
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


def openapi_document(max_query_chars: int = 1000, version: str = "1", identity=None) -> dict:
    """The whole API as an OpenAPI 3.1 document (a JSON-ready dict).

    Args:
        max_query_chars: the service's configured query length limit (``FAQ_MAX_QUERY_CHARS``).
        identity: the loaded FAQ's ``FaqIdentity`` (its name titles the document; its support contact is named).
    """
    name = identity.name if identity is not None else None
    support = identity.support if identity is not None else None
    _, defs = models_json_schema(
        [
            (m, "validation")
            for m in (
                schemas.SearchRequest,
                schemas.BatchRequest,
                schemas.FeedbackRequest,
                schemas.ReviewActionRequest,
                schemas.RevertRequest,
            )
        ]
        + [
            (m, "serialization")
            for m in (
                schemas.SearchResponse,
                schemas.BatchResponse,
                schemas.ErrorResponse,
                schemas.HealthResponse,
                schemas.FaqEntryResponse,
                schemas.FeedbackResponse,
                schemas.ReviewQueueResponse,
                schemas.GapsResponse,
                schemas.ReviewActionResponse,
                schemas.ReviewActionsResponse,
                schemas.RebuildResponse,
            )
        ],
        ref_template="#/components/schemas/{model}",
    )
    defs["$defs"]["SearchRequest"]["properties"]["query"]["maxLength"] = max_query_chars
    search_ok = {
        "description": "The best entries, best first, and whether the first one is an answer.",
        "content": _json("SearchResponse"),
    }
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
        "paths": {
            "/search": {
                "post": {
                    "operationId": "search",
                    "summary": "Chercher les entrées qui répondent à une question",
                    "requestBody": {
                        "required": True,
                        "content": _json("SearchRequest", {"query": EXAMPLE_QUERY, "top_k": 3}),
                    },
                    "security": SEARCH_SECURITY,
                    "responses": {"200": search_ok, **_errors("400", "401", "413", "415", "429", "500", "503")},
                },
                "get": {
                    "operationId": "searchGet",
                    "summary": "La même recherche, par paramètres d'URL",
                    "parameters": _search_parameters(max_query_chars),
                    "security": SEARCH_SECURITY,
                    "responses": {"200": search_ok, **_errors("400", "401", "429", "500", "503")},
                },
            },
            "/search/batch": {
                "post": {
                    "operationId": "searchBatch",
                    "summary": "Plusieurs recherches en une requête (jusqu'à 64 questions)",
                    "requestBody": {
                        "required": True,
                        "content": _json(
                            "BatchRequest", {"queries": [EXAMPLE_QUERY, {"query": "notre admin est parti", "top_k": 2}]}
                        ),
                    },
                    "responses": {
                        "200": {
                            "description": "One item per query, in order: a search response, or "
                            "the error that query got.",
                            "content": _json("BatchResponse"),
                        },
                        **_errors("400", "401", "413", "415", "429", "500", "503"),
                    },
                    "security": SEARCH_SECURITY,
                },
            },
            "/faq/{faq_id}": {
                "get": {
                    "operationId": "getFaqEntry",
                    "summary": "Une entrée de la FAQ, complète",
                    "parameters": [
                        {
                            "name": "faq_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                            "example": "chorus-pro-4",
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The entry as in the corpus, with its passages.",
                            "content": _json("FaqEntryResponse"),
                        },
                        **_errors("401", "404", "429", "500", "503"),
                    },
                    "security": SEARCH_SECURITY,
                },
            },
            "/feedback": {
                "post": {
                    "operationId": "sendFeedback",
                    "summary": "Dire si une entrée renvoyée par une recherche a aidé l'usager",
                    "description": "Needs the query log (`FAQ_QUERY_LOG`). Entries marked not helpful go to the "
                    "FAQ owner's review queue.",
                    "requestBody": {
                        "required": True,
                        "content": _json(
                            "FeedbackRequest",
                            {"request_id": "5f0c2f8e1b2a4c7d9e3f", "faq_id": "chorus-pro-1", "helpful": False},
                        ),
                    },
                    "security": SEARCH_SECURITY,
                    "responses": {
                        "201": {"description": "Recorded.", "content": _json("FeedbackResponse")},
                        **_errors("400", "401", "403", "404", "413", "415", "429", "500", "503"),
                    },
                },
            },
            "/admin/review": {
                "get": {
                    "operationId": "reviewQueue",
                    "summary": "Questions sans réponse ou jugées inutiles, regroupées par sens, à revoir",
                    "security": [{"bearer": []}],
                    "parameters": _window_parameters(),
                    "responses": {
                        "200": _typed("The groups to review, most flagged first.", "ReviewQueueResponse"),
                        **_errors("400", "401", "403", "500", "503"),
                    },
                },
            },
            "/admin/review/actions": {
                "get": {
                    "operationId": "reviewActions",
                    "summary": "Les décisions prises, les plus récentes d'abord",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": _typed(
                            "Every decision, newest first, with `reverted_by` when cancelled.", "ReviewActionsResponse"
                        ),
                        **_errors("401", "403", "500", "503"),
                    },
                },
                "post": {
                    "operationId": "reviewAction",
                    "summary": "Rattacher des questions à une entrée, les marquer sans réponse, ou les écarter",
                    "description": "Appended to `<corpus>.reviewed.jsonl`; the index is then rebuilt and reloaded "
                    "(not for `dismiss`).",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "content": _json(
                            "ReviewActionRequest",
                            {
                                "action": "attach",
                                "faq_id": "chorus-pro-1",
                                "query_keys": ["q3878a989f14d14e"],
                                "index_id": "20261129T081827807984Z-6ec550d7",
                                "by": "marie",
                            },
                        ),
                    },
                    "responses": {
                        "201": _typed("The action as recorded and the rebuild's state.", "ReviewActionResponse"),
                        **_errors("400", "401", "403", "404", "409", "413", "415", "500", "503"),
                    },
                },
            },
            "/admin/review/actions/{action_id}/revert": {
                "post": {
                    "operationId": "revertReviewAction",
                    "summary": "Annuler une décision (et reconstruire l'index)",
                    "security": [{"bearer": []}],
                    "parameters": [{"name": "action_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "requestBody": {"required": False, "content": _json("RevertRequest", {"by": "marie"})},
                    "responses": {
                        "201": _typed("The revert as recorded and the rebuild's state.", "ReviewActionResponse"),
                        **_errors("400", "401", "403", "404", "409", "415", "500", "503"),
                    },
                },
            },
            "/admin/review/rebuild": {
                "post": {
                    "operationId": "reviewRebuild",
                    "summary": "Reconstruire l'index maintenant pour les décisions qui lui manquent (après un échec)",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": _typed("Nothing to build: the current build has every decision.", "RebuildResponse"),
                        "202": _typed("The rebuild started, or queued behind the one running.", "RebuildResponse"),
                        **_errors("401", "403", "500", "503"),
                    },
                },
            },
            "/admin/gaps": {
                "get": {
                    "operationId": "faqGaps",
                    "summary": "Les questions que la FAQ ne couvre pas, les plus souvent manquées d'abord",
                    "security": [{"bearer": []}],
                    "parameters": _window_parameters(),
                    "responses": {
                        "200": _typed("The groups of unanswered queries, most failed first.", "GapsResponse"),
                        **_errors("400", "401", "403", "500", "503"),
                    },
                },
            },
            "/review": {
                "get": {
                    "operationId": "reviewPage",
                    "summary": "Page de revue pour le responsable de la FAQ (demande le jeton d'administration)",
                    "responses": {
                        "200": {
                            "description": "HTML page (French); it calls the /admin/review routes with the token.",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                },
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "État du service et de l'index chargé",
                    "responses": {
                        "200": {"description": "The loaded index's summary.", "content": _json("HealthResponse")},
                        **_errors("500", "503"),
                    },
                },
            },
            "/ready": {
                "get": {
                    "operationId": "ready",
                    "summary": "Prêt à répondre : modèle et index valides chargés",
                    "responses": {
                        "200": {
                            "description": "Ready; the id of the index served.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["status", "index_id"],
                                        "properties": {"status": {"const": "ready"}, "index_id": {"type": "string"}},
                                    }
                                }
                            },
                        },
                        **_errors("500", "503"),
                    },
                },
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Métriques Prometheus (tous les workers)",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                },
            },
            "/admin/reload": {
                "post": {
                    "operationId": "adminReload",
                    "summary": "Passer au nouvel index (tous les workers), ou dire pourquoi il est refusé",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"force": {"type": "boolean", "default": False}},
                                    "additionalProperties": False,
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "Switched (`changed: true`) or already current.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "409": {
                            "description": ERROR_STATUSES["409"],
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_errors("400", "401", "403", "500"),
                    },
                },
            },
            "/admin/stats": {
                "get": {
                    "operationId": "adminStats",
                    "summary": "Index, cache, rechargements et mémoire de ce worker",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": {
                            "description": "This worker's figures.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_errors("401", "403", "500"),
                    },
                },
            },
            "/": {
                "get": {
                    "operationId": "searchPage",
                    "summary": "Page de recherche pour les agents du support",
                    "responses": {
                        "200": {
                            "description": "HTML page (French); its script and style are served "
                            "by this service under /static/.",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                },
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "Cette description OpenAPI",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1 document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                },
            },
        },
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

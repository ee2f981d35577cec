"""The admin surface (``/admin/reload``, ``/admin/stats``) and the optional API keys of the search routes.

Admin routes need ``FAQ_ADMIN_TOKEN`` (sent as ``Authorization: Bearer <token>``); with no token configured they
are disabled (403 ``admin_disabled``), never open. With ``FAQ_API_KEYS`` set (comma-separated), the search routes
need one of those keys (``Authorization: Bearer <key>`` or ``X-API-Key``). Keys are compared in constant time and
never logged or echoed.
"""

from __future__ import annotations

import json

from flask import Blueprint, g, jsonify, request

from ..access import bearer, client_identity, key_matches
from ..access import valid_key as access_valid_key
from ..core.catalog import FaqCatalog
from ..core.models import MAX_BATCH
from ..errors import AdminDisabled, ErrorCode, InvalidRequest, ServiceError, Unauthorized
from .bodies import json_body, read_body
from .current import catalog, faq_service
from .observability import RATE_LIMIT_FALLBACKS, RATE_LIMIT_SHARED
from .openapi import ADMIN_SECURITY, ANY_OBJECT, describe

bp = Blueprint("admin", __name__, url_prefix="/admin")
#: The service's own admin routes (not one FAQ's): served once, never under /faqs/<name>/.
service_admin_bp = Blueprint("service_admin", __name__, url_prefix="/admin")


def bearer_token() -> str | None:
    """The token of ``Authorization: Bearer …``, if any."""
    return bearer(request.headers.get("Authorization"))


def valid_key() -> str | None:
    """The request's key if it is one of ``FAQ_API_KEYS`` (in either header), else None."""
    keys = catalog().settings.key_list()
    return access_valid_key(request.headers.get("Authorization"), request.headers.get("X-API-Key"), keys)


def client_key() -> str:
    """Who a rate limit counts against and the query log counts as one client (``access.client_identity``)."""
    return client_identity(valid_key(), request.remote_addr)


def install_rate_limit(app, catalog: FaqCatalog) -> None:
    """Per-client limit on the search routes (``FAQ_RATE_LIMIT``, e.g. ``"600/minute"``; off when unset).

    Counted per worker in memory unless ``FAQ_RATE_LIMIT_STORAGE`` names a shared store (``redis://…``, any
    storage URI of the `limits` library): with N workers and memory storage a client gets up to N times the limit;
    with a shared store, the limit holds across every worker of every replica.
    A refused request gets 429 ``rate_limited`` in the usual error shape, with ``Retry-After``.

    When the shared store cannot be reached, the limit fails open: searches go on, each worker counts the limit in
    its own memory until the store answers again (checked with a growing interval), the change is logged and shown
    in ``/health`` (``rate_limit.state``) and ``/metrics`` (``faq_rate_limit_shared``, ``faq_rate_limit_fallbacks``).
    Open rather than closed: the limit protects the service from a few greedy clients, and refusing every search
    because the counter store is down would turn a store outage into a full outage of the service it protects;
    the fallback still bounds a client to the limit per worker (docs/scaling.md).
    """
    limit = catalog.settings.rate_limit
    if not limit:
        catalog.health_extras["rate_limit"] = lambda: {"enabled": False}
        return
    from flask_limiter import Limiter

    storage, shared = _rate_limit_storage(catalog)
    exempt = lambda: not keyed_endpoint() or request.method == "OPTIONS"  # noqa: E731
    limiter = Limiter(
        client_key,
        app=app,
        # One allowance per client across every search route (an application limit: per route, a client would get
        # the limit on each of POST /search, GET /search, the batch and /faq), a batch costing one per question.
        application_limits=[limit],
        application_limits_cost=_searches_in_request,
        # CORS preflights (OPTIONS) carry no key and do no search: they spend nothing.
        application_limits_exempt_when=exempt,
        headers_enabled=True,
        storage_uri=storage,
        # A store that does not answer costs a search at most this long before the fallback takes over.
        storage_options={"socket_timeout": 0.25, "socket_connect_timeout": 0.25} if storage.startswith("redis") else {},
        in_memory_fallback_enabled=shared,
        in_memory_fallback=[limit] if shared else [],
        swallow_errors=True,
    )
    catalog.health_extras["rate_limit"] = lambda: rate_limit_status(catalog, limiter)
    if shared:
        seen = {"shared": None}

        @app.after_request
        def _observe_store(response):
            up = not getattr(limiter, "_storage_dead", False)  # flask-limiter's own flag for its fallback
            if up != seen["shared"]:
                if not up:
                    RATE_LIMIT_FALLBACKS.inc()
                RATE_LIMIT_SHARED.set(1 if up else 0)
                seen["shared"] = up
            return response


def _rate_limit_storage(service: FaqCatalog) -> tuple[str, bool]:
    """Where the rate limit is counted (``FAQ_RATE_LIMIT_STORAGE``, else each worker's memory) and whether that
    store is shared by the workers."""
    storage = service.settings.rate_limit_storage or "memory://"
    return storage, not storage.startswith("memory://")


def _searches_in_request() -> int:
    """What a request costs of the allowance: the number of queries of a batch (at most ``MAX_BATCH``), else 1."""
    if (request.endpoint or "").rpartition(".")[2] != "search_batch":
        return 1
    try:
        body = json_body()  # read once, kept for the route (which answers any error of it itself)
    except ServiceError:
        return 1
    queries = body.get("queries") if isinstance(body, dict) else None
    return min(max(len(queries), 1), MAX_BATCH) if isinstance(queries, list) else 1


def rate_limit_status(service: FaqCatalog, limiter) -> dict:
    """What ``/health`` shows of the rate limit: the limit, where it is counted and whether that store answers."""
    limit = service.settings.rate_limit
    storage, shared = _rate_limit_storage(service)
    state = "memory"
    if shared:
        state = "fallback_memory" if getattr(limiter, "_storage_dead", False) else "shared"
    # The kind of store only: /health is open to anyone, and a URI can hold hosts, paths and passwords.
    return {"enabled": True, "limit": limit, "storage": storage.split(":", 1)[0], "state": state}


#: Routes that need an API key when FAQ_API_KEYS is set, and that the rate limit counts (the default FAQ's, ``api.``,
#: and each named FAQ's, ``faq.``); the page, the spec and the probes stay open.
KEYED_VIEWS = {"search_post", "search_batch", "search_get", "faq_entry", "feedback"}
KEYED_ENDPOINTS = (
    {f"{blueprint}.{view}" for blueprint in ("api", "faq") for view in KEYED_VIEWS}
    | {"service.faqs", "faq.health", "faq.ready"}  # one FAQ's state: the service's own /health and /ready stay open
)


def keyed_endpoint() -> bool:
    """Whether this request's route needs an API key (when the service has keys) and counts in the rate limit."""
    return request.endpoint in KEYED_ENDPOINTS


def check_api_key() -> None:
    """Refuse a search request without a valid key when ``FAQ_API_KEYS`` is set (401)."""
    if request.method == "OPTIONS":  # a browser's CORS preflight never carries the key: it asks whether it may
        return
    scopes = catalog().settings.key_scopes()
    if not scopes:
        return
    key = valid_key()
    if key is None:
        raise Unauthorized("this service needs an API key: send it as `Authorization: Bearer <key>` or `X-API-Key`")
    g.faq_scope = scopes.get(key)  # the FAQs this key may use (None: all): current.faq_service checks it


@service_admin_bp.before_request
@bp.before_request
def require_admin_token():
    """Every admin route: the bearer admin token, or 401; no token configured: 403 ``admin_disabled``."""
    token = catalog().settings.admin_token
    if not token:
        raise AdminDisabled("the admin endpoints are disabled: set FAQ_ADMIN_TOKEN to enable them")
    if not key_matches(bearer_token(), [token]):  # only there: X-API-Key is for the search keys
        raise Unauthorized("send the admin token as `Authorization: Bearer <token>`")


@bp.post("/reload")
@describe(
    operation_id="adminReload",
    summary="Passer au nouvel index (tous les workers), ou dire pourquoi il est refusé",
    request=({"type": "object", "properties": {"force": {"type": "boolean", "default": False}},
              "additionalProperties": False}, None),
    request_required=False,
    responses={200: ("Switched (`changed: true`) or already current.", ANY_OBJECT),
               409: ("The new build was refused; the previous index keeps serving and `error` says why.",
                     ANY_OBJECT)},
    errors=frozenset({ErrorCode.INVALID_REQUEST, ErrorCode.PAYLOAD_TOO_LARGE, ErrorCode.REQUEST_TIMEOUT,
                      ErrorCode.BAD_REQUEST}),  # its optional body is read within the size and time limits
    security=ADMIN_SECURITY, admin=True,
)  # fmt: skip
def reload():
    """Switch to the build ``FAQ_INDEX`` points to now (every worker of this server), or say why not."""
    try:
        body = json.loads(read_body() or b"{}") if request.content_length else {}
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested deeper than the decoder's stack
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("force", False), bool):
        raise InvalidRequest('the body, if any, is {"force": true|false}')
    outcome = faq_service().reload("admin", force=body.get("force", False))
    response = jsonify(outcome)
    response.status_code = 200 if outcome["ok"] else 409
    return response


@bp.get("/stats")
@describe(operation_id="adminStats", summary="Index, cache, rechargements et mémoire de ce worker",
          responses={200: ("This worker's figures.", ANY_OBJECT)}, security=ADMIN_SECURITY, admin=True)  # fmt: skip
def stats():
    """This worker's index, cache, reloads and memory."""
    return jsonify(faq_service().stats())


@service_admin_bp.post("/faqs/reload")
@describe(
    operation_id="adminReloadFaqs",
    summary="Relire la configuration des FAQ : ajouter, retirer, garder (tous les workers)",
    description="Reads `FAQ_CONFIG` again: new FAQs are loaded, removed ones closed, the others keep serving. A "
    "configuration that is not valid, or a new FAQ that does not load, is refused whole (409) and nothing changes. "
    "SIGHUP to a worker does the same.",
    responses={200: ("Applied: the FAQs `added`, `removed` and `kept`, and the `default`.", ANY_OBJECT),
               409: ("Refused: `errors` lists why; the FAQs served are unchanged.", ANY_OBJECT)},
    security=ADMIN_SECURITY, admin=True,
)  # fmt: skip
def reload_faqs():
    """Serve the FAQs the configuration names now (every worker of this server), or say why not."""
    faqs = catalog()
    outcome = faqs.reconfigure()
    outcome["signalled_workers"] = faqs.default.reloader.signal_siblings() if outcome["ok"] else 0
    response = jsonify(outcome)
    response.status_code = 200 if outcome["ok"] else 409
    return response

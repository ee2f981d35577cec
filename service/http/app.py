"""The application factory: the FAQs served (passed in, or made from the settings), routes and error handling.

Each FAQ's routes are served twice: without a prefix for the default FAQ (``/search``, ``/admin/review``…), and
under ``/faqs/<faq_name>/`` for every FAQ; the name is taken out of the URL's values into ``g.faq_name``, which
``current.faq_service()`` reads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from ..core.catalog import FaqCatalog
from ..core.faq_service import FaqService
from ..errors import HttpError, ServiceError, redact_paths
from ..settings import Settings
from . import observability
from .admin import bp as admin_bp
from .admin import install_rate_limit, service_admin_bp
from .bodies import drain_refused_body
from .entries import bp as entries_bp
from .review import bp as review_bp
from .review import page as review_page_bp
from .routes import bp, service_bp

#: Where each FAQ's routes are served under its name.
FAQ_PREFIX = "/faqs/<faq_name>"

log = logging.getLogger(__name__)


def _error_response(error: ServiceError):
    # A 5xx tells what is wrong with the service (a missing index, a model): anyone may read it, so without paths.
    body = error.to_dict() if error.status < 500 else redact_paths(error.to_dict())
    if error.status == 413:
        drain_refused_body()
    response = jsonify(body)
    response.status_code = error.status
    return response


def _http_message(status: int, error: HTTPException, app: Flask) -> str:
    """The framework's own errors in the service's words: what was wrong, and the limit or the way out."""
    if status == 404:
        return f"no such route: {request.method} {request.path} (the routes are listed at /openapi.json)"
    if status == 405:
        allowed = ", ".join(sorted(m for m in (getattr(error, "valid_methods", None) or []) if m != "OPTIONS"))
        return f"{request.method} is not allowed on {request.path}" + (f"; use {allowed}" if allowed else "")
    if status == 413:
        limit = app.config.get("MAX_CONTENT_LENGTH")
        return f"the body is larger than the limit of {limit} bytes (FAQ_MAX_BODY_BYTES)"
    return error.description or error.name


def register_error_handlers(app: Flask) -> None:
    """Render every error, Flask's own included, as ``{"error": {"status", "code", "message"}}``."""

    @app.errorhandler(ServiceError)
    def _service_error(error: ServiceError):
        response = _error_response(error)
        response.headers.update(error.headers)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        status = error.code or 500
        message = _http_message(status, error, app)
        response = _error_response(HttpError(message, status))
        for key, value in error.get_headers():
            if key.lower() not in ("content-type", "content-length"):
                response.headers[key] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unexpected error while handling a request")
        return _error_response(ServiceError("internal error; the details are in the service log"))


def create_app(
    config: Mapping[str, Any] | None = None, engine=None, service: FaqService | FaqCatalog | None = None
) -> Flask:
    """Build the Flask app around the FAQs of a ``FaqCatalog`` (one ``FaqService`` or several).

    Args:
        config: overrides of the environment's settings, by variable name (``{"FAQ_QUERY_LOG": …}``), and Flask's
            own keys (``TESTING``).
        engine: a ready ``SearchEngine`` for a service of one FAQ (tests pass a small one), or ready engines by FAQ
            name; if None, the model and index the settings name are loaded once, now. If that fails the app still
            starts and answers 503 with the reason and its code.
        service: a ready service or catalog (then ``config`` only sets Flask's keys and ``engine`` is ignored).
    Raises:
        FaqConfigError: the FAQs the settings name are not valid.
    """
    if service is None:
        settings = Settings.from_mapping(config)
        if engine is not None and not isinstance(engine, dict):
            one = FaqService(settings, engine, observer=observability.MetricsObserver())  # (its name: "faq")
            service = FaqCatalog.of(one)
        else:
            service = FaqCatalog(settings, engines=engine, observer=observability.MetricsObserver)
    catalog = service if isinstance(service, FaqCatalog) else FaqCatalog.of(service)
    settings = catalog.settings
    app = Flask(__name__)
    app.config.from_mapping({k: v for k, v in (config or {}).items() if not k.startswith("FAQ_")})
    if app.config.get("MAX_CONTENT_LENGTH") is None:  # (a test may give Flask's key itself)
        app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["faqs"] = catalog
    # No redirects: Werkzeug would answer //health with an HTML 308 to http://<Host header>/health (a reflected
    # host, and outside the error handler).
    app.url_map.merge_slashes = False
    if settings.proxy_hops > 0:
        # Behind a proxy that sets X-Forwarded-For (the cluster's HAProxy), the client is the address it names, not
        # the proxy's: what the per-client rate limit and the request log count. Only as many hops as configured
        # are trusted, so a client cannot name itself by sending the header to a proxy that appends to it.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    observability.install(app, settings.replica_name)
    app.register_blueprint(service_bp)
    app.register_blueprint(service_admin_bp)
    app.register_blueprint(bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(review_bp)
    app.register_blueprint(entries_bp)
    app.register_blueprint(review_page_bp)
    app.register_blueprint(bp, url_prefix=FAQ_PREFIX, name="faq")
    app.register_blueprint(admin_bp, url_prefix=f"{FAQ_PREFIX}/admin", name="faq_admin")
    app.register_blueprint(review_bp, url_prefix=f"{FAQ_PREFIX}/admin", name="faq_review")
    app.register_blueprint(entries_bp, url_prefix=f"{FAQ_PREFIX}/admin", name="faq_entries")
    app.register_blueprint(review_page_bp, url_prefix=FAQ_PREFIX, name="faq_review_page")

    @app.url_value_preprocessor
    def _faq_name(endpoint, values):
        if values and "faq_name" in values:
            g.faq_name = values.pop("faq_name")

    install_rate_limit(app, catalog)
    register_error_handlers(app)
    _enable_cors(app, settings.cors_origins)
    _secure_page(app)
    return app


#: The pages (for the default FAQ and under each FAQ's name) and their files.
PAGE_ENDPOINTS = {"static", "api.search_page", "faq.search_page", "review_page.review_page",
                  "faq_review_page.review_page"}  # fmt: skip
#: The search page and its files load nothing from elsewhere; their responses say so to the browser.
PAGE_CSP = "default-src 'self'; connect-src 'self'; frame-ancestors 'none'"


def _secure_page(app: Flask) -> None:
    """The page's Content-Security-Policy on the page and on every static file, and no MIME sniffing anywhere."""

    @app.after_request
    def _headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.endpoint in PAGE_ENDPOINTS:
            response.headers["Content-Security-Policy"] = PAGE_CSP
        return response


def _enable_cors(app: Flask, origins: str | None) -> None:
    """Let the configured browser origins call the API (off unless ``FAQ_CORS_ORIGINS`` is set)."""
    if not origins:
        return
    from flask_cors import CORS

    origins = "*" if origins.strip() == "*" else [o.strip() for o in origins.split(",") if o.strip()]
    # A widget may send an API key (Authorization or X-API-Key) and read the request id and Retry-After back.
    CORS(
        app,
        origins=origins,
        methods=["GET", "POST"],
        allow_headers=["Content-Type", "Authorization", "X-API-Key", "X-Request-ID"],
        expose_headers=["X-Request-ID", "Retry-After"],
        max_age=3600,
    )

"""The application factory: configuration, the engine (passed in or loaded once), routes and error handling."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from ..config import DEFAULTS, config_from_env
from ..errors import HTTP_STATUS_CODES, ServiceError, redact_paths
from ..search.admission import SearchGate
from ..search.loading import load_engine
from . import observability
from .admin import bp as admin_bp
from .admin import install_rate_limit
from .bodies import drain_refused_body
from .reloader import Reloader
from .review import bp as review_bp
from .review import page as review_page_bp
from .routes import bp

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
        wrapped = ServiceError(message, code=HTTP_STATUS_CODES.get(status, "http_error"))
        wrapped.status = status
        response = _error_response(wrapped)
        for key, value in error.get_headers():
            if key.lower() not in ("content-type", "content-length"):
                response.headers[key] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unexpected error while handling a request")
        return _error_response(ServiceError("internal error; the details are in the service log"))


def create_app(config: Mapping[str, Any] | None = None, engine=None) -> Flask:
    """Build the Flask app.

    Args:
        config: overrides, applied after DEFAULTS and the environment.
        engine: a ready ``SearchEngine`` (tests pass a small one); if None, the model and index named by the
            configuration are loaded once, now. If that fails the app still starts, answers 503 with the
            reason and the error's own code, and ``app.extensions["faq_engine_failure"]`` holds the error.
    """
    app = Flask(__name__)
    app.config.from_mapping(DEFAULTS)
    app.config.from_mapping(config_from_env())
    if config:
        app.config.from_mapping(config)
    # No redirects: Werkzeug would answer //health with an HTML 308 to http://<Host header>/health (a reflected
    # host, and outside the error handler).
    app.url_map.merge_slashes = False
    if int(app.config.get("FAQ_PROXY_HOPS") or 0) > 0:
        # Behind a proxy that sets X-Forwarded-For (the cluster's HAProxy), the client is the address it names, not
        # the proxy's: what the per-client rate limit and the request log count. Only as many hops as configured
        # are trusted, so a client cannot name itself by sending the header to a proxy that appends to it.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=int(app.config["FAQ_PROXY_HOPS"]))
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    app.extensions["faq_engine_failure"] = None
    if engine is None:
        try:
            engine = load_engine(app.config)
        except ServiceError as exc:
            log.error("no search engine: %s", exc.message)
            app.extensions["faq_engine_failure"] = exc
    app.extensions["faq_engine"] = engine
    observability.watch_engine(engine)
    observability.install(app)

    reloader = app.extensions["faq_reloader"] = Reloader(app)
    _query_log(app)
    if float(app.config.get("FAQ_WATCH_SECONDS") or 0) > 0:
        reloader.watch(float(app.config["FAQ_WATCH_SECONDS"]))

    # At most FAQ_MAX_CONCURRENT_SEARCHES searches run at once in this process (the others wait in line), within
    # FAQ_MAX_REQUEST_TOKENS a request: the same gate the MCP server uses (search/admission.py).
    app.extensions["faq_search_gate"] = SearchGate(
        int(app.config["FAQ_MAX_CONCURRENT_SEARCHES"]),
        float(app.config["FAQ_SEARCH_TIMEOUT"]),
        int(app.config["FAQ_MAX_REQUEST_TOKENS"]),
    )

    app.register_blueprint(bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(review_bp)
    app.register_blueprint(review_page_bp)
    install_rate_limit(app)
    register_error_handlers(app)
    _enable_cors(app)
    _secure_page(app)
    return app


def _query_log(app: Flask) -> None:
    """The query log and the review queue's rebuilds, when ``FAQ_QUERY_LOG`` names a database (else None)."""
    app.extensions["faq_query_log"] = app.extensions["faq_rebuilder"] = None
    path = app.config.get("FAQ_QUERY_LOG")
    if not path:
        return
    from ..learning.querylog import QueryLog
    from ..learning.rebuild import Rebuilder

    max_mb = app.config.get("FAQ_QUERY_LOG_MAX_MB")
    querylog = QueryLog(
        path,
        days=float(app.config["FAQ_QUERY_LOG_DAYS"]),
        observer=observability.observe_query_log,
        max_mb=float(max_mb) if max_mb else None,
    )
    querylog.start()  # opens the database (an error is logged and shown in /health) and enforces the retention
    app.extensions["faq_query_log"] = querylog
    reloader = app.extensions["faq_reloader"]

    def reload_everywhere() -> dict:
        outcome = reloader.reload("review")
        outcome["signalled_workers"] = reloader.signal_siblings()
        return outcome

    app.extensions["faq_rebuilder"] = Rebuilder(
        str(app.config["FAQ_CORPUS"]),
        str(app.config["FAQ_INDEX"]),
        str(path),
        on_done=reload_everywhere,
        model=app.config.get("FAQ_MODEL"),
        master_pid=lambda: reloader.gunicorn_master,
    )


def start_background(app: Flask, every_seconds: float | None = None) -> threading.Thread | None:
    """The learning loop's upkeep in a thread of this serving process (gunicorn's ``post_worker_init``, the
    development server): decisions the current build lacks are built (``Rebuilder.reconcile``), a build the review
    loop published while this process was not listening is switched to, and flagged queries get their vectors
    ahead of the owner's next listing. Nothing without a query log."""
    rebuilder = app.extensions.get("faq_rebuilder")
    if rebuilder is None:
        return None
    from ..learning import review
    from ..learning.rebuild import RECONCILE_SECONDS

    reloader = app.extensions["faq_reloader"]
    vectors_lock = f"{app.config['FAQ_QUERY_LOG']}.vectors.lock"

    def tick() -> None:
        rebuilder.reconcile()
        reloader.follow_review_builds()
        engine = app.extensions.get("faq_engine")
        gate = app.extensions["faq_search_gate"]
        if engine is None or not gate.try_slot():  # searches first: only a free slot is used
            return
        try:
            with _exclusive(vectors_lock) as mine:  # one worker encodes at a time
                if mine:
                    source = review.Source(
                        app.config["FAQ_QUERY_LOG"], str(app.config["FAQ_CORPUS"]), engine, str(app.config["FAQ_INDEX"])
                    )
                    review.precompute_vectors(source, float(app.config["FAQ_QUERY_LOG_DAYS"]))
        finally:
            gate.release()

    def loop() -> None:
        while not reloader.stopped.wait(every_seconds or RECONCILE_SECONDS):
            try:
                tick()
            except Exception:  # the upkeep outlives anything one tick meets
                log.exception("learning loop upkeep failed; trying again later")

    thread = threading.Thread(target=loop, name="faq-learning-upkeep", daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def _exclusive(path: str):
    """Yield whether this process holds the lock file ``path`` (without waiting for it)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


#: The search page and its files load nothing from elsewhere; their responses say so to the browser.
PAGE_CSP = "default-src 'self'; connect-src 'self'; frame-ancestors 'none'"


def _secure_page(app: Flask) -> None:
    """The page's Content-Security-Policy on the page and on every static file, and no MIME sniffing anywhere."""

    @app.after_request
    def _headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.endpoint in ("static", "api.search_page", "review_page.review_page"):
            response.headers["Content-Security-Policy"] = PAGE_CSP
        return response


def _enable_cors(app: Flask) -> None:
    """Let the configured browser origins call the API (off unless ``FAQ_CORS_ORIGINS`` is set)."""
    origins = app.config.get("FAQ_CORS_ORIGINS")
    if not origins:
        return
    from flask_cors import CORS

    if isinstance(origins, str):
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

"""The application factory: configuration, the engine (passed in or loaded once), routes and error handling."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from ..config import DEFAULTS, config_from_env
from ..errors import ServiceError
from ..search.loading import load_engine
from . import observability
from .admin import bp as admin_bp
from .admin import install_rate_limit
from .reloader import Reloader
from .routes import bp

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _error_response(error: ServiceError):
    response = jsonify(error.to_dict())
    response.status_code = error.status
    return response


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
        wrapped = ServiceError(error.description or error.name, code=_HTTP_CODES.get(status, "http_error"))
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
    if float(app.config.get("FAQ_WATCH_SECONDS") or 0) > 0:
        reloader.watch(float(app.config["FAQ_WATCH_SECONDS"]))

    # At most FAQ_MAX_CONCURRENT_SEARCHES searches run at once in this process; the others wait in line.
    app.extensions["faq_search_slots"] = threading.BoundedSemaphore(int(app.config["FAQ_MAX_CONCURRENT_SEARCHES"]))

    app.register_blueprint(bp)
    app.register_blueprint(admin_bp)
    install_rate_limit(app)
    register_error_handlers(app)
    _enable_cors(app)
    return app


def _enable_cors(app: Flask) -> None:
    """Let the configured browser origins call the API (off unless ``FAQ_CORS_ORIGINS`` is set)."""
    origins = app.config.get("FAQ_CORS_ORIGINS")
    if not origins:
        return
    from flask_cors import CORS

    if isinstance(origins, str):
        origins = "*" if origins.strip() == "*" else [o.strip() for o in origins.split(",") if o.strip()]
    CORS(app, origins=origins, methods=["GET", "POST"], allow_headers=["Content-Type"], max_age=3600)

"""The application factory: configuration, the engine (passed in or loaded once), routes and error handling."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Mapping

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from .errors import ServiceError

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "FAQ_MODEL": None,             # model directory or sentence-transformers name (None: the converted e5)
    "FAQ_INDEX": "index",          # index directory written by scripts/build_index.py
    "FAQ_BACKEND": None,           # query encoder: torch, onnx, onnx-int8; None: the one the index was built with
    "FAQ_MIN_SCORE": None,         # answer threshold; None: the one in the index manifest
    "FAQ_MAX_QUERY_CHARS": 1000,
    # 64 queries of 1,000 characters, accents included, fit in one batch request.
    "MAX_CONTENT_LENGTH": 256 * 1024,
    "FAQ_CORS_ORIGINS": None,      # browser origins allowed to call the API ("*" or a comma-separated list)
    "FAQ_CACHE_SIZE": 1024,        # responses kept for repeated questions (0: no cache)
    "FAQ_ADMIN_TOKEN": None,       # bearer token of /admin/*; None: the admin endpoints are disabled
    "FAQ_API_KEYS": None,          # comma-separated keys the search routes require; None: open
    "FAQ_WATCH_SECONDS": 0,        # poll index/current this often and reload a new build (0: off)
    "FAQ_LOG_QUERIES": 0,          # log each query cut to this many characters (0: never; queries are personal)
    "FAQ_RATE_LIMIT": None,        # per-client limit on the search routes, e.g. "600/minute" (None: off)
    "FAQ_RATE_LIMIT_STORAGE": None,  # shared counter store (e.g. redis://host:6379); None: per worker, in memory
    "FAQ_SEARCH_TIMEOUT": 10.0,    # seconds a search may wait for a free slot before 503 search_timeout
    "FAQ_MAX_CONCURRENT_SEARCHES": 2,  # searches running at once in one process (more wait, up to the timeout)
}
#: Environment variables read by create_app, with the type each is parsed as.
ENV_TYPES = {"FAQ_MODEL": str, "FAQ_INDEX": str, "FAQ_BACKEND": str, "FAQ_MIN_SCORE": float,
             "FAQ_MAX_QUERY_CHARS": int, "FAQ_MAX_BODY_BYTES": int, "FAQ_CORS_ORIGINS": str, "FAQ_CACHE_SIZE": int,
             "FAQ_ADMIN_TOKEN": str, "FAQ_API_KEYS": str, "FAQ_WATCH_SECONDS": float,
             "FAQ_LOG_QUERIES": int, "FAQ_RATE_LIMIT": str, "FAQ_RATE_LIMIT_STORAGE": str,
             "FAQ_SEARCH_TIMEOUT": float, "FAQ_MAX_CONCURRENT_SEARCHES": int}

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 415: "unsupported_media_type", 429: "rate_limited"}


def config_from_env(environ: Mapping[str, str] = os.environ) -> dict:
    """Configuration values given as environment variables."""
    out: dict[str, Any] = {}
    for name, kind in ENV_TYPES.items():
        if environ.get(name):
            try:
                value = kind(environ[name])
            except ValueError:
                raise ValueError(f"environment variable {name}={environ[name]!r} is not a valid {kind.__name__}")
            out["MAX_CONTENT_LENGTH" if name == "FAQ_MAX_BODY_BYTES" else name] = value
    return out


def load_engine(config: Mapping[str, Any]):
    """Load the model and the index named by ``config`` and join them.

    Raises:
        ModelUnavailable, IndexUnavailable, IndexMismatch: with a message that says what to run.
    """
    from .embedder import BACKENDS, default_model, load_embedder, model_id_for
    from .index_store import load_index

    index = load_index(config["FAQ_INDEX"])  # cheap: fail before loading the model if there is no index
    model = config.get("FAQ_MODEL") or default_model()
    tuned = index.manifest["model"].get("finetuned")
    if tuned and tuned["base"] == model_id_for(model) and Path(tuned["path"]).is_dir():
        # The index was built with a fine-tune of the configured model: that fine-tune is part of the index.
        model = tuned["path"]
    # Queries are encoded by the encoder that made the index's vectors; the engine refuses any other.
    built_with = index.encoder_backend
    embedder = load_embedder(model, config.get("FAQ_BACKEND") or (built_with if built_with in BACKENDS else "auto"))
    return engine_for(config, embedder, index)


def engine_for(config: Mapping[str, Any], embedder, index):
    """The service's engine over a loaded index: the configured threshold override and response cache size.

    Raises:
        IndexMismatch: the index was built with another model or encoder than ``embedder``.
    """
    from .engine import SearchEngine

    return SearchEngine(embedder, index, scoring={"answer_threshold": config.get("FAQ_MIN_SCORE")},
                        cache_size=int(config.get("FAQ_CACHE_SIZE", DEFAULTS["FAQ_CACHE_SIZE"])))


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
    from . import observability
    from .reloader import Reloader

    observability.watch_engine(engine)
    observability.install(app)

    reloader = app.extensions["faq_reloader"] = Reloader(app)
    if float(app.config.get("FAQ_WATCH_SECONDS") or 0) > 0:
        reloader.watch(float(app.config["FAQ_WATCH_SECONDS"]))

    # At most FAQ_MAX_CONCURRENT_SEARCHES searches run at once in this process; the others wait in line.
    app.extensions["faq_search_slots"] = threading.BoundedSemaphore(int(app.config["FAQ_MAX_CONCURRENT_SEARCHES"]))

    from .admin import bp as admin_bp
    from .admin import install_rate_limit
    from .api import bp

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

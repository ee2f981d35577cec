"""The service's settings: defaults, and the environment variables that override them (no Flask here)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The checkout the package runs from (an editable install): default corpus, models and index live here.
REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULTS: dict[str, Any] = {
    "FAQ_MODEL": None,  # model directory or sentence-transformers name (None: the converted e5)
    # The index directory written by `faq-search build`: the checkout's index/ wherever the service starts from,
    # as for the build (a relative FAQ_INDEX is relative to the working directory).
    "FAQ_INDEX": str(REPO_ROOT / "index"),
    "FAQ_BACKEND": None,  # query encoder: torch, onnx, onnx-int8; None: the one the index was built with
    "FAQ_MIN_SCORE": None,  # answer threshold; None: the one in the index manifest
    "FAQ_MAX_QUERY_CHARS": 1000,
    # Tokens the encoder may read for one request (a search, or a whole batch): 64 typical questions of 20 to 40
    # tokens fit; 64 queries of 1,000 characters (200 to 512 tokens each, 4 to 13 s of encoding) do not.
    "FAQ_MAX_REQUEST_TOKENS": 4096,
    # 64 queries of 1,000 characters, accents included, fit in one batch request.
    "MAX_CONTENT_LENGTH": 256 * 1024,
    "FAQ_CORS_ORIGINS": None,  # browser origins allowed to call the API ("*" or a comma-separated list)
    "FAQ_CACHE_SIZE": 1024,  # responses kept for repeated questions (0: no cache)
    "FAQ_ADMIN_TOKEN": None,  # bearer token of /admin/*; None: the admin endpoints are disabled
    "FAQ_API_KEYS": None,  # comma-separated keys the search routes require; None: open
    "FAQ_WATCH_SECONDS": 0,  # poll index/current this often and reload a new build (0: off)
    "FAQ_LOG_QUERIES": 0,  # log each query cut to this many characters (0: never; queries are personal)
    "FAQ_RATE_LIMIT": None,  # per-client limit on the search routes, e.g. "600/minute" (None: off)
    "FAQ_RATE_LIMIT_STORAGE": None,  # shared counter store (e.g. redis://host:6379); None: per worker, in memory
    "FAQ_REPLICA_NAME": None,  # this replica's name in every response's X-Served-By header (None: no header)
    "FAQ_PROXY_HOPS": 0,  # proxies in front whose X-Forwarded-For names the client (0: the peer is the client)
    "FAQ_SEARCH_TIMEOUT": 10.0,  # seconds a search may wait for a free slot before 503 search_timeout
    "FAQ_BODY_TIMEOUT": 10.0,  # seconds a request body may take to arrive before 408 request_timeout (gevent)
    "FAQ_MAX_CONCURRENT_SEARCHES": 2,  # searches running at once in one process (more wait, up to the timeout)
    # SQLite file of the query log (redacted queries, results, feedback; docs/learning.md); None: nothing is kept
    "FAQ_QUERY_LOG": None,
    "FAQ_QUERY_LOG_DAYS": 30.0,  # rows older than this are deleted
    "FAQ_QUERY_LOG_MAX_MB": 500.0,  # the log's content at most; past it the oldest rows are deleted first
    # The corpus the index is built from: the review queue writes its reviewed file next to it and rebuilds from it
    "FAQ_CORPUS": str(REPO_ROOT / "corpus" / "chorus_pro_faq.jsonl"),
}
#: Environment variables read by create_app, with the type each is parsed as.
ENV_TYPES = {
    "FAQ_MODEL": str,
    "FAQ_INDEX": str,
    "FAQ_BACKEND": str,
    "FAQ_MIN_SCORE": float,
    "FAQ_MAX_QUERY_CHARS": int,
    "FAQ_MAX_REQUEST_TOKENS": int,
    "FAQ_MAX_BODY_BYTES": int,
    "FAQ_CORS_ORIGINS": str,
    "FAQ_CACHE_SIZE": int,
    "FAQ_ADMIN_TOKEN": str,
    "FAQ_API_KEYS": str,
    "FAQ_WATCH_SECONDS": float,
    "FAQ_LOG_QUERIES": int,
    "FAQ_RATE_LIMIT": str,
    "FAQ_RATE_LIMIT_STORAGE": str,
    "FAQ_REPLICA_NAME": str,
    "FAQ_PROXY_HOPS": int,
    "FAQ_SEARCH_TIMEOUT": float,
    "FAQ_BODY_TIMEOUT": float,
    "FAQ_MAX_CONCURRENT_SEARCHES": int,
    "FAQ_QUERY_LOG": str,
    "FAQ_QUERY_LOG_DAYS": float,
    "FAQ_QUERY_LOG_MAX_MB": float,
    "FAQ_CORPUS": str,
}


def config_from_env(environ: Mapping[str, str] = os.environ) -> dict:
    """Configuration values given as environment variables."""
    out: dict[str, Any] = {}
    for name, kind in ENV_TYPES.items():
        if environ.get(name):
            try:
                value = kind(environ[name])
            except ValueError:
                raise ValueError(
                    f"environment variable {name}={environ[name]!r} is not a valid {kind.__name__}"
                ) from None
            out["MAX_CONTENT_LENGTH" if name == "FAQ_MAX_BODY_BYTES" else name] = value
    return out


#: How the production server is started (after ``python -m gunicorn``): the service's settings and its WSGI app.
GUNICORN_ARGS = ["-c", "python:service.http.gunicorn_conf", "service.http.wsgi:app"]

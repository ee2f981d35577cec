"""What operators see: a request id on every request and response, one JSON log line per request, and Prometheus
metrics at ``/metrics``.

Metrics are prometheus_client's, defined once per process as the library expects. Under gunicorn
(``service/http/gunicorn_conf.py`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start) each worker writes its
samples to that directory and ``/metrics`` adds up every worker's; in a single process the default registry is
served. Queries can hold personal data: they are logged only when ``FAQ_LOG_QUERIES`` is a positive number of
characters, and then cut to it. Keys and tokens are never logged.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import re
import time
import uuid

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from ..core.faq_service import Observer
from ..settings import metrics_dir
from . import served_index
from .current import catalog
from .openapi import TEXT, describe

log = logging.getLogger("service.requests")
_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"}

_LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12)
REQUESTS = Counter("faq_requests", "HTTP requests by route, method and status", ["route", "method", "status"])
LATENCY = Histogram("faq_request_seconds", "HTTP request latency by route", ["route"], buckets=_LATENCY_BUCKETS)
ENCODE = Histogram("faq_encode_seconds", "Query encoding time per search call", buckets=_LATENCY_BUCKETS)
SEARCH = Histogram(
    "faq_search_seconds", "Candidate search, rescoring and assembly per search call", buckets=_LATENCY_BUCKETS
)
# Per FAQ (the ``faq`` label, one value per configured FAQ: bounded by the configuration, never by requests).
CACHE = Counter("faq_cache", "Response cache lookups", ["result", "faq"])
ANSWERED = Counter("faq_searches", "Searches by whether the best entry was an answer", ["answered", "faq"])
INDEX_ENTRIES = Gauge(
    "faq_index_entries", "Entries in the index this worker serves", ["faq"], multiprocess_mode="liveall"
)
INDEX_VECTORS = Gauge(
    "faq_index_vectors", "Vectors in the index this worker serves", ["faq"], multiprocess_mode="liveall"
)
RELOADS = Counter("faq_reloads", "Index reloads by outcome", ["outcome", "faq"])
QUERY_LOG = Counter("faq_query_log_rows", "Query log rows by outcome (written, dropped, failed)", ["outcome", "faq"])
FEEDBACK = Counter("faq_feedback", "Feedback received, by whether the entry helped", ["helpful", "faq"])
REVIEW_ACTIONS = Counter("faq_review_actions", "Review actions by kind", ["action", "faq"])
RATE_LIMIT_SHARED = Gauge(
    "faq_rate_limit_shared",
    "1 while this worker counts the rate limit in the shared store, 0 while it falls back to its own memory",
    multiprocess_mode="liveall",
)
RATE_LIMIT_FALLBACKS = Counter(
    "faq_rate_limit_fallbacks", "Times a worker found the shared rate-limit store unreachable and counted alone"
)


class MetricsObserver(Observer):
    """What one FAQ's service reports (``core.faq_service.Observer``), as Prometheus metrics labelled with the FAQ's
    name. Never a query's text."""

    def __init__(self, faq: str = "faq"):
        self.faq = faq

    def engine(self, engine) -> None:
        watch_engine(engine, self.faq)

    def reload(self, outcome: str) -> None:
        RELOADS.labels(outcome, self.faq).inc()

    def query_log(self, outcome: str, rows: int) -> None:
        QUERY_LOG.labels(outcome, self.faq).inc(rows)

    def feedback(self, helpful: bool) -> None:
        FEEDBACK.labels("true" if helpful else "false", self.faq).inc()

    def review_action(self, action: str) -> None:
        REVIEW_ACTIONS.labels(action, self.faq).inc()

    def gone(self) -> None:
        """The FAQ's index series go with it (its counters stay: what it did is still true)."""
        if _served_index.pop(self.faq, None) is not None:
            served_index.record(dict(_served_index))
        for gauge in (INDEX_ENTRIES, INDEX_VECTORS):
            with contextlib.suppress(KeyError):
                gauge.remove(self.faq)


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id() -> str:
    """The current request's id (accepted from ``X-Request-ID`` when it is a sane token, else generated)."""
    return getattr(g, "request_id", "-")


def observe_search(event: dict, faq: str = "faq") -> None:
    """``SearchEngine.observer``: encode and search time, cache hits and misses, answered or not (by FAQ)."""
    if event["encode_seconds"] is not None:
        ENCODE.observe(event["encode_seconds"])
    for seconds in event["search_seconds"]:
        SEARCH.observe(seconds)
    if event["cache_hits"]:
        CACHE.labels("hit", faq).inc(event["cache_hits"])
    if event["cache_misses"]:
        CACHE.labels("miss", faq).inc(event["cache_misses"])
    for answered in event["answered"]:
        ANSWERED.labels("true" if answered else "false", faq).inc()


def watch_engine(engine, faq: str = "faq") -> None:
    """Instrument an engine of the FAQ ``faq`` (at start and after each reload): search metrics and index gauges."""
    if engine is not None:
        engine.observer = lambda event: observe_search(event, faq)
    index_gauges(engine, faq)


_served_index: dict[str, str] = {}  # the index id this process serves, by FAQ


def index_gauges(engine, faq: str = "faq") -> None:
    """Publish the served index's id and size (at start and after each reload)."""
    if engine is None:
        return
    _served_index[faq] = engine.index.index_id
    served_index.record(dict(_served_index))
    INDEX_ENTRIES.labels(faq).set(len(engine.index.entries))
    INDEX_VECTORS.labels(faq).set(len(engine.index.rows))


class ServedIndexCollector:
    """``faq_index_info{index_id, faq}``: how many live processes serve each build of each FAQ now. One series per
    build in service (two while workers switch), never one per build ever served: a worker's label, once written to
    gunicorn's multiprocess files, could not be removed, and each review rebuild would have left a series behind."""

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "faq_index_info", "Processes serving this build of the FAQ's index now", labels=["index_id", "faq"]
        )
        served = served_index.served_ids()
        mine = [(index_id, faq) for faq, index_id in _served_index.items()]
        for (index_id, faq), count in sorted(collections.Counter(mine if served is None else served).items()):
            family.add_metric([index_id, faq], count)
        yield family


_SERVED_COLLECTOR = ServedIndexCollector()
if not metrics_dir():
    REGISTRY.register(_SERVED_COLLECTOR)


def install(app: Flask, replica_name: str | None = None) -> None:
    """Request ids, the replica's name, per-request JSON log lines and metrics for every route, and ``/metrics``.

    With ``FAQ_REPLICA_NAME`` set, every response says which replica served it (``X-Served-By``): behind a load
    balancer, that is how a client or an operator tells the replicas apart (unset: no header, the host's name is
    not told to anyone who asks).
    """
    served_by = replica_name

    @app.before_request
    def _start() -> None:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-ID"] = request_id()
        if served_by:
            response.headers["X-Served-By"] = served_by
        seconds = time.perf_counter() - getattr(g, "started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        if route != "/metrics":
            # Only the methods HTTP defines get their own label: a made-up one must not make a new series each time.
            method = request.method if request.method in _METHODS else "other"
            REQUESTS.labels(route, method, str(response.status_code)).inc()
            LATENCY.labels(route).observe(seconds)
        extra = {
            "request_id": request_id(),
            "method": request.method,
            "route": route,
            "status": response.status_code,
            "ms": round(seconds * 1000, 2),
            "remote": request.remote_addr,
        }
        keep = catalog().settings.log_queries
        query = getattr(g, "logged_query", None)
        if keep > 0 and query:
            extra["query"] = query[:keep]
        log.info("%s %s %s", request.method, route, response.status_code, extra=extra)
        return response

    @app.get("/metrics")
    @describe(operation_id="metrics", summary="Métriques Prometheus (tous les workers)",
              responses={200: ("Prometheus text exposition format.", TEXT)})  # fmt: skip
    def metrics() -> Response:
        """Prometheus text format: every worker's samples when running under gunicorn."""
        if metrics_dir():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            registry.register(_SERVED_COLLECTOR)
            body = generate_latest(registry)
        else:
            body = generate_latest(REGISTRY)
        return Response(body, mimetype=CONTENT_TYPE_LATEST.split(";")[0], headers={"Content-Type": CONTENT_TYPE_LATEST})


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Root logging: one JSON object per line (``fmt="json"``) with time, level, logger, message, request fields."""
    handler = logging.StreamHandler()
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which SIMD build it tried, at every start

"""The development server: Flask's app on Werkzeug's threaded server, in this process (``python -m service``)."""

from __future__ import annotations

import logging

from werkzeug.serving import WSGIRequestHandler, run_simple

from ..core.catalog import FaqCatalog
from ..core.faq_config import FaqConfigError
from ..settings import Settings
from .app import create_app
from .log_scrub import scrub_request_text, scrub_target
from .observability import MetricsObserver

log = logging.getLogger(__name__)


class ScrubbingHandler(WSGIRequestHandler):
    """Werkzeug's request log with the method and the path only (its line holds the query string otherwise), and its
    error lines (a malformed request line) scrubbed the same way."""

    def log_request(self, code="-", size="-") -> None:
        path = getattr(self, "path", None)  # absent when the request line could not be read
        path = scrub_target(path) if isinstance(path, str) else "-"
        method, version = getattr(self, "command", None) or "-", getattr(self, "request_version", None) or "-"
        self.log("info", '"%s %s %s" %s %s', method, path, version, code, size)

    def log(self, type: str, message: str, *args) -> None:  # noqa: A002 - Werkzeug's signature
        super().log(type, "%s", scrub_request_text(message % args if args else message))


def serve(settings: Settings) -> str | None:
    """Build the service and its app and serve them until interrupted; the reason when no index can be served."""
    try:
        catalog = FaqCatalog(settings, observer=MetricsObserver)
    except FaqConfigError as exc:
        return str(exc)
    failed = [s for s in catalog.services.values() if s.current_engine is None]
    if failed:  # every FAQ is served, or none
        several = len(catalog.services) > 1
        return "; ".join(f"FAQ '{s.name}': {s.failure.message}" if several else s.failure.message for s in failed)
    app = create_app(service=catalog)
    catalog.install_sighup()  # `kill -HUP <pid>` switches every FAQ to its new index build
    catalog.start_background()  # the learning loop's upkeep, with a query log
    log.info("serving on http://%s:%d", settings.host, settings.port)
    run_simple(settings.host, settings.port, app, threaded=True, use_reloader=False, request_handler=ScrubbingHandler)
    return None

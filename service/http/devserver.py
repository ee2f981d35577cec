"""The development server: Flask's app on Werkzeug's threaded server, in this process (``python -m service``)."""

from __future__ import annotations

import logging

from werkzeug.serving import WSGIRequestHandler, run_simple

from .app import create_app, start_background
from .log_scrub import scrub_request_text, scrub_target

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


def serve(host: str, port: int) -> str | None:
    """Build the app from the environment and serve it until interrupted; the reason when no index can be served."""
    app = create_app()
    if app.extensions["faq_engine"] is None:
        return app.extensions["faq_engine_failure"].message
    app.extensions["faq_reloader"].install_sighup()  # `kill -HUP <pid>` switches to a new index build
    start_background(app)  # the learning loop's upkeep, with a query log
    log.info("serving on http://%s:%d", host, port)
    run_simple(host, port, app, threaded=True, use_reloader=False, request_handler=ScrubbingHandler)
    return None

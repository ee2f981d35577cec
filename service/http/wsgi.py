"""WSGI entry point for a production server: ``gunicorn -c python:service.http.gunicorn_conf service.http.wsgi:app``.

Each worker builds the app (and loads the model and the index) once, when it starts. A worker that cannot load
an index exits with the reason and code 3, which makes gunicorn stop instead of retrying forever.
"""

from __future__ import annotations

import os
import sys

from .app import create_app
from .observability import configure_logging

# (A booting worker ignores SIGHUP: gunicorn_conf.post_fork; post_worker_init installs the reload handler.)
configure_logging(os.environ.get("FAQ_LOG_LEVEL", "info"), os.environ.get("FAQ_LOG_FORMAT", "json"))
app = create_app()
if app.extensions["faq_engine"] is None:
    print(f"error: {app.extensions['faq_engine_failure'].message}", file=sys.stderr)
    sys.exit(3)  # gunicorn stops (instead of restarting the worker) when one exits with 3

"""WSGI entry point for a production server: ``gunicorn -c python:service.http.gunicorn_conf service.http.wsgi:app``.

Each worker builds the app (and loads the model and the index) once, when it starts. A worker that cannot load
an index exits with the reason and code 3, which makes gunicorn stop instead of retrying forever.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from .app import create_app
from .observability import configure_logging

configure_logging(os.environ.get("FAQ_LOG_LEVEL", "info"), os.environ.get("FAQ_LOG_FORMAT", "json"))
if threading.current_thread() is threading.main_thread():
    # gunicorn leaves SIGHUP at its default (terminate) until post_worker_init installs the reload handler: a sibling's
    # reload signal (an admin or review rebuild) must not kill a worker still loading its model. It loads the current
    # build anyway.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
app = create_app()
if app.extensions["faq_engine"] is None:
    print(f"error: {app.extensions['faq_engine_failure'].message}", file=sys.stderr)
    sys.exit(3)  # gunicorn stops (instead of restarting the worker) when one exits with 3

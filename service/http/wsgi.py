"""WSGI entry point for a production server: ``gunicorn -c python:service.http.gunicorn_conf service.http.wsgi:app``.

Each worker builds the app (and loads the model and the index) once, when it starts. A worker that cannot load
an index exits with the reason and code 3, which makes gunicorn stop instead of retrying forever.
"""

from __future__ import annotations

import sys

from ..core.faq_service import FaqService
from ..settings import Settings
from .app import create_app
from .observability import MetricsObserver, configure_logging

# (A booting worker ignores SIGHUP: gunicorn_conf.post_fork; post_worker_init installs the reload handler.)
settings = Settings.from_env()  # once per worker
configure_logging(settings.log_level, settings.log_format)
service = FaqService(settings, observer=MetricsObserver())
if service.current_engine is None:
    print(f"error: {service.failure.message}", file=sys.stderr)
    sys.exit(3)  # gunicorn stops (instead of restarting the worker) when one exits with 3
app = create_app(service=service)

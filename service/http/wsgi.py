"""WSGI entry point for a production server: ``gunicorn -c python:service.http.gunicorn_conf service.http.wsgi:app``.

Each worker builds the app (and loads the model and the index) once, when it starts. A worker that cannot load
an index exits with the reason and code 3, which makes gunicorn stop instead of retrying forever.
"""

from __future__ import annotations

import sys

from ..core.catalog import FaqCatalog
from ..core.faq_config import FaqConfigError
from ..settings import Settings
from .app import create_app
from .observability import MetricsObserver, configure_logging

# (A booting worker ignores SIGHUP: gunicorn_conf.post_fork; post_worker_init installs the reload handler.)
settings = Settings.from_env()  # once per worker
configure_logging(settings.log_level, settings.log_format)
try:
    catalog = FaqCatalog(settings, observer=MetricsObserver)
except FaqConfigError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(3)  # gunicorn stops (instead of restarting the worker) when one exits with 3
failed = [s for s in catalog.services.values() if s.current_engine is None]
if failed:  # every FAQ is served, or none: nothing half-way
    for service in failed:
        prefix = f"FAQ '{service.name}': " if len(catalog.services) > 1 else ""
        print(f"error: {prefix}{service.failure.message}", file=sys.stderr)
    sys.exit(3)
app = create_app(service=catalog)

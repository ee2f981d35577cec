"""WSGI entry point for a production server: ``gunicorn -c python:service.http.gunicorn_conf service.http.wsgi:app``.

Each worker builds the app (and loads the model and the indexes) once, when it starts. A worker that cannot load
its FAQs exits with the reason and code 3, which makes gunicorn stop instead of retrying forever; but once the
server has served, a worker started later while the configuration on disk is broken serves the FAQs the server
served (its snapshot) rather than stop the server.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..core.catalog import FaqCatalog
from ..core.faq_config import FaqConfigError, load_snapshot
from ..settings import Settings, metrics_dir
from .app import create_app
from .observability import MetricsObserver, configure_logging

# (A booting worker ignores SIGHUP: gunicorn_conf.post_fork; post_worker_init installs the reload handler.)
settings = Settings.from_env()  # once per worker
configure_logging(settings.log_level, settings.log_format)
#: The FAQs this server serves, written by its workers after each configuration that loads: a worker started later
#: (a crash, a timeout, the master's SIGHUP) while the configuration on disk is broken serves these instead.
snapshot = Path(metrics_dir()) / "faqs-served.json" if metrics_dir() else None


def _catalog(specs=None) -> tuple[FaqCatalog | None, list[str]]:
    """The FAQs loaded, or None and why (every FAQ is served, or none: nothing half-way)."""
    try:
        catalog = FaqCatalog(settings, specs=specs, observer=MetricsObserver, snapshot=snapshot)
    except FaqConfigError as exc:
        return None, [str(exc)]
    failed = [s for s in catalog.services.values() if s.current_engine is None]
    if failed:
        several = len(catalog.services) > 1
        reasons = [f"FAQ '{s.name}': {s.failure.message}" if several else s.failure.message for s in failed]
        catalog.close()
        return None, reasons
    return catalog, []


catalog, reasons = _catalog()
if catalog is None and snapshot is not None and (served := load_snapshot(snapshot)):
    for reason in reasons:
        print(f"error: {reason}", file=sys.stderr)
    print(f"error: the configuration does not load now; serving the FAQs this server served ({snapshot})",
          file=sys.stderr)  # fmt: skip
    catalog, reasons = _catalog(served)
if catalog is None:
    for reason in reasons:
        print(f"error: {reason}", file=sys.stderr)
    sys.exit(3)  # gunicorn stops (instead of restarting the worker) when one exits with 3
catalog.save_snapshot()
app = create_app(service=catalog)

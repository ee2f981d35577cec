"""Which build each gunicorn worker serves, for ``/metrics``: one small file per worker in the metrics directory.

``faq_index_info`` counts the live workers serving each build (``observability.ServedIndexCollector``); a
worker's record is written at start and after each reload, and removed when it exits (``gunicorn_conf.child_exit``,
in the master: so no metrics library here, whose import would make the master a process of its own in /metrics).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os

from ..processes import alive
from ..settings import metrics_dir

log = logging.getLogger(__name__)

#: A worker's record: the id of the build it serves.
SERVED_FILE = "served_index_{pid}.txt"


def _directory() -> str | None:
    return metrics_dir()  # set by gunicorn_conf before the workers start


def record(index_id: str) -> None:
    """This worker now serves ``index_id`` (nothing outside gunicorn: the process's own value is used there)."""
    directory = _directory()
    if not directory:
        return
    path = os.path.join(directory, SERVED_FILE.format(pid=os.getpid()))
    try:
        with open(path + ".tmp", "w", encoding="utf-8") as fh:
            fh.write(index_id)
        os.replace(path + ".tmp", path)
    except OSError as exc:
        log.warning("could not record the served index for /metrics: %s", exc)


def served_ids() -> list[str] | None:
    """The build each live worker serves (None outside gunicorn)."""
    directory = _directory()
    if not directory:
        return None
    out = []
    for path in glob.glob(os.path.join(directory, SERVED_FILE.format(pid="*"))):
        pid = os.path.basename(path)[len("served_index_") : -len(".txt")]
        if not pid.isdigit() or not alive(int(pid)):
            continue
        try:
            with open(path, encoding="utf-8") as fh:
                out.append(fh.read().strip())
        except OSError:
            continue
    return out


def forget(pid: int) -> None:
    """A worker has exited: its record goes."""
    directory = _directory()
    if directory:
        with contextlib.suppress(OSError):
            os.remove(os.path.join(directory, SERVED_FILE.format(pid=pid)))

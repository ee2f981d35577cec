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

#: A worker's record: one line per FAQ, its name and the id of the build it serves, tab-separated.
SERVED_FILE = "served_index_{pid}.txt"


def _directory() -> str | None:
    return metrics_dir()  # set by gunicorn_conf before the workers start


def record(served: dict[str, str]) -> None:
    """This worker now serves these builds, by FAQ (nothing outside gunicorn: the process's own values are used
    there)."""
    directory = _directory()
    if not directory:
        return
    path = os.path.join(directory, SERVED_FILE.format(pid=os.getpid()))
    try:
        with open(path + ".tmp", "w", encoding="utf-8") as fh:
            fh.write("".join(f"{faq}\t{index_id}\n" for faq, index_id in served.items()))
        os.replace(path + ".tmp", path)
    except OSError as exc:
        log.warning("could not record the served index for /metrics: %s", exc)


def served_ids() -> list[tuple[str, str]] | None:
    """``(index_id, faq)`` for each FAQ of each live worker (None outside gunicorn)."""
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
                lines = fh.read().splitlines()
        except OSError:
            continue
        for line in lines:
            faq, _, index_id = line.partition("\t")
            if index_id:
                out.append((index_id, faq))
    return out


def forget(pid: int) -> None:
    """A worker has exited: its record goes."""
    directory = _directory()
    if directory:
        with contextlib.suppress(OSError):
            os.remove(os.path.join(directory, SERVED_FILE.format(pid=pid)))

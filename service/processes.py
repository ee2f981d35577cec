"""Whether a process is still there: one answer for a build's temporary folders, the review builds, the gunicorn
workers' metrics and the cluster's pid files."""

from __future__ import annotations

import psutil


def alive(pid: int) -> bool:
    """True while ``pid`` runs: a zombie (exited, not yet reaped by its parent) is gone; another user's process,
    which this one may not signal, is there."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True

"""The child process of a review build: ``python -m service.learning.rebuild_child`` (started by
``rebuild.Rebuilder``, not by hand).

It builds with ``indexing.build.build_index`` (set-up code, which serving never imports: this module is the one
exception the import contracts allow, and it runs in its own process), records the outcome under the query log's
``meta.rebuild`` itself, and tells the gunicorn workers to switch when the worker that started it is gone.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

from ..corpus import CorpusError
from ..errors import ServiceError
from ..indexing.build import build_index, build_lock, settings_like_current
from .rebuild import SETTLE_SECONDS, _now, entries_change, failure_state, write_state

log = logging.getLogger(__name__)


def run_build(corpus: str, index_dir: str, log_path: str, action: str, attempt: int = 1, model=None) -> dict:
    """Build ``corpus`` into ``index_dir`` as the served build is made, for the review loop, and record the
    outcome under ``meta.rebuild`` of ``log_path``; returns the state recorded (``done`` or ``failed``).

    Args:
        model: a model directory or name (None: ``FAQ_MODEL`` or the default), or an embedder object (tests).
    """
    started = time.monotonic()
    write_state(log_path, {"state": "running", "action": action, "attempt": attempt, "started_at": _now(),
                            "pid": os.getpid()})  # fmt: skip
    try:
        with build_lock(index_dir):
            like = settings_like_current(index_dir)
            # The entries the entries API removed may go; any other lost entry means a file caught half-written.
            change = entries_change(log_path, corpus)
            may_remove = tuple(change["removed"]) if change else ()
            manifest = build_index(
                corpus, index_dir, model, show_progress=False, may_remove=may_remove, origin="review",
                settle=SETTLE_SECONDS, **like,
            )  # fmt: skip
    except (CorpusError, ServiceError, OSError, ValueError) as exc:
        error = getattr(exc, "message", None) or str(exc).splitlines()[0]
        state = failure_state(action, attempt, error, pid=os.getpid(), seconds=round(time.monotonic() - started, 2))
    except Exception as exc:  # noqa: BLE001 - recorded, never lost in a dead child's stderr
        log.exception("review rebuild: unexpected error")
        state = failure_state(action, attempt, f"{type(exc).__name__}: {exc}", pid=os.getpid())
    else:
        state = {
            "state": "done",
            "action": action,
            "attempt": attempt,
            "pid": os.getpid(),
            "finished_at": _now(),
            "seconds": round(time.monotonic() - started, 2),
            "index_id": manifest.index_id,
        }
    write_state(log_path, state, own=True)
    return state


def notify_workers(master: int) -> int:
    """SIGHUP every worker of the gunicorn master ``master`` (each switches to the current build); how many."""
    import psutil

    try:
        workers = psutil.Process(master).children()
    except psutil.Error:
        return 0
    signalled = 0
    for worker in workers:
        try:
            os.kill(worker.pid, signal.SIGHUP)
            signalled += 1
        except ProcessLookupError:
            pass
    return signalled


def main(argv: list[str] | None = None) -> int:
    """The child process of a review build (started by ``Rebuilder``, not by hand)."""
    parser = argparse.ArgumentParser(
        prog="python -m service.learning.rebuild_child", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--index", required=True)
    parser.add_argument("--log", required=True, help="the query log, whose meta table holds the state")
    parser.add_argument("--action", required=True, help="the last review action this build covers")
    parser.add_argument("--attempt", type=int, default=1)
    parser.add_argument("--model", default=None)
    parser.add_argument("--master", type=int, default=None, help="the gunicorn master whose workers to tell")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parent = os.getppid()
    state = run_build(args.corpus, args.index, args.log, args.action, args.attempt, args.model)
    if state["state"] != "done":
        print(f"error: {state['error']}", file=sys.stderr)
        return 1
    if args.master and os.getppid() != parent:  # the worker that started it is gone: nobody else will tell them
        log.info("the worker that asked for this build is gone: %d workers told to switch", notify_workers(args.master))
    return 0


if __name__ == "__main__":
    sys.exit(main())

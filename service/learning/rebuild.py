"""Rebuilding the index after a review action: the build CLI in a child process, then the caller's reload.

The build runs as ``faq-search build --like-current`` (same encoder, index kind and scoring as the build served
now; the vectors of unchanged texts reused, so only the new questions are embedded) in its own process: the
worker keeps answering, and the build's memory goes away with it. Builds of one index take turns (the CLI's lock
on ``<index>/.build.lock``), so the last action's build is always the last to switch ``current``. When it
succeeds, ``on_done`` reloads (the service's zero-downtime path). The state is kept in the query log's ``meta``
table, so every worker shows the same one.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import closing

import psutil

from . import querylog

log = logging.getLogger(__name__)

#: A rebuild that takes longer than this is stopped (the current index keeps serving).
REBUILD_TIMEOUT_SECONDS = 1800


class Rebuilder:
    """One per worker: runs at most one build at a time and runs again if actions came in meanwhile."""

    def __init__(
        self,
        corpus: str,
        index_dir: str,
        log_path: str,
        on_done: Callable[[], dict] | None = None,
        command: list[str] | None = None,
    ):
        self.corpus, self.index_dir, self.log_path = corpus, index_dir, log_path
        self.on_done = on_done
        self.command = command or [sys.executable, "-m", "service.cli.build"]
        self._lock = threading.Lock()
        self._running = False
        self._again = False
        self._latest: str | None = None

    def request(self, action_id: str) -> dict:
        """Start a build for this action now, or right after the one running; returns the state."""
        with self._lock:
            self._latest = action_id  # the build after the running one covers every action up to this one
            if self._running:
                self._again = True
                return self._save({"state": "queued", "action": action_id})
            self._running = True
        state = self._save({"state": "running", "action": action_id, "started_at": _now()})
        threading.Thread(target=self._run, args=(action_id,), name="faq-review-build", daemon=True).start()
        return state

    def _run(self, action_id: str) -> None:
        while True:
            try:
                self._build_once(action_id)
            except Exception as exc:  # never leave this worker "running" for good: later actions must build
                log.exception("review rebuild: unexpected error")
                self._save({"state": "failed", "action": action_id, "finished_at": _now(), "error": str(exc)[:500]})
            with self._lock:
                if not self._again:
                    self._running = False
                    return
                self._again = False
                action_id = self._latest  # _build_once records it as running, with its build's pid

    def _build_once(self, action_id: str) -> None:
        started = time.monotonic()
        argv = [*self.command, "--corpus", self.corpus, "--out", self.index_dir, "--like-current"]
        try:
            child = subprocess.Popen(  # noqa: S603 - our own CLI, no shell
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            # The child's pid goes with the state: a worker that stops mid-build leaves a state that says so.
            self._save({"state": "running", "action": action_id, "started_at": _now(), "pid": child.pid})
            try:
                stdout, stderr = child.communicate(timeout=REBUILD_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
                stdout, stderr = child.communicate()
                stderr += f"\nstopped after {REBUILD_TIMEOUT_SECONDS} s"
        except (OSError, subprocess.SubprocessError) as exc:
            self._save({"state": "failed", "action": action_id, "finished_at": _now(), "error": str(exc)[:500]})
            log.error("review rebuild could not run: %s", exc)
            return
        seconds = round(time.monotonic() - started, 2)
        if child.returncode != 0:
            error = (stderr.strip().splitlines() or [f"exit status {child.returncode}"])[-1][:500]
            self._save(
                {"state": "failed", "action": action_id, "finished_at": _now(), "seconds": seconds, "error": error}
            )
            log.error("review rebuild failed (the current index keeps serving): %s", error)
            return
        try:
            index_id = json.loads(stdout.strip().splitlines()[-1]).get("index_id")
        except (ValueError, IndexError, AttributeError):
            index_id = None
        reload = self.on_done() if self.on_done is not None else None
        state = {"action": action_id, "finished_at": _now(), "seconds": seconds, "index_id": index_id, "reload": reload}
        if reload is not None and not reload.get("ok", False):  # built, but the service refused to switch to it
            error = (reload.get("error") or {}).get("message", "the reload was refused")
            self._save({"state": "failed", **state, "error": error})
            log.error("review rebuild built %s but the reload refused it: %s", index_id, error)
            return
        self._save({"state": "done", **state})
        log.info("review rebuild done in %.1f s: %s", seconds, index_id)

    def _save(self, state: dict) -> dict:
        try:
            _write_state(self.log_path, state)
        except Exception as exc:  # the state is for display: a failure to record it changes nothing else
            log.warning("could not record the rebuild state: %s", exc)
        return state

    def status(self) -> dict | None:
        """The last rebuild's state (any worker's), or None; a build whose process is gone without saying how it
        ended (its worker stopped) is ``interrupted``."""
        state = _read_state(self.log_path)
        if state and state.get("state") == "running" and state.get("pid") and not psutil.pid_exists(state["pid"]):
            state = {**state, "state": "interrupted", "error": "the build's process is gone (its worker stopped)"}
        return state


@querylog.off_loop
def _read_state(log_path: str) -> dict | None:
    with closing(querylog.connect(log_path)) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'rebuild'").fetchone()
    return json.loads(row[0]) if row else None


@querylog.off_loop
def _write_state(log_path: str, state: dict) -> None:
    with closing(querylog.connect(log_path, create=True)) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('rebuild', ?)", (json.dumps(state, default=str),)
        )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

"""Rebuilding the index after a review decision, and making sure every decision ends up served.

``Rebuilder.request`` runs the build in a child process (``python -m service.learning.rebuild_child``), so that
the worker keeps answering and the build's memory goes away with it. The child calls
``indexing.build.build_index`` with the settings of the build served now (``settings_like_current``: same encoder,
index kind and scoring; the vectors of unchanged texts reused), refuses a corpus that lost entries
(``may_remove=()``: more likely a file caught while an editor rewrites it than a deletion; an operator removes
entries with ``faq-search build``), and records its own outcome in the query log's ``meta`` table: a build that
succeeded is reported as such whatever happened to the worker that started it, and if that worker is gone the
child asks the other workers to switch (SIGHUP). Builds of one index take turns (``build_lock``).

The state is one JSON object under ``meta.rebuild``: ``state`` (``running``, ``done``, ``failed``), the last
``action`` the build covers, its ``attempt``, the child's ``pid``, ``index_id``, ``error`` and ``next_retry_at``.
Every worker reconciles it every ``RECONCILE_SECONDS`` (``reconcile``): when the reviewed file holds decisions that
the current build does not (``reviewed.pending``), and no build is running, a failed or interrupted build is tried
again after a back-off (``BACKOFF_SECONDS``, at most ``MAX_ATTEMPTS`` times; then the review page's retry button,
``POST /admin/review/rebuild``), and a decision whose build never started gets one.
"""

from __future__ import annotations

import calendar
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from ..corpus import CorpusError
from ..errors import ServiceError
from ..files import sha256_file
from ..indexing.store import read_manifest
from ..processes import alive
from ..reviewed_file import pending, read_actions, reviewed_path
from . import querylog

log = logging.getLogger(__name__)

#: A rebuild that takes longer than this is stopped (the current index keeps serving).
REBUILD_TIMEOUT_SECONDS = 1800
#: Builds of one decision tried at most (the first and the retries), then the owner's retry button.
MAX_ATTEMPTS = 4
#: Seconds before the second, third and fourth attempt.
BACKOFF_SECONDS = (15.0, 60.0, 300.0)
#: How often each worker reconciles the decisions with the current build.
RECONCILE_SECONDS = 10.0
#: The corpus must have been left alone this long before a review build reads it (an editor may be saving it).
SETTLE_SECONDS = 1.0
#: A "running" state whose child never recorded its pid is taken as interrupted after this long.
START_GRACE_SECONDS = 60.0
STATE_KEY = "rebuild"
#: The meta key of the entries API's last change: the corpus checksum it wrote and the entries it removed.
ENTRIES_KEY = "entries"
#: The corpus checksums the entries API wrote last, oldest first (which later change holds an earlier one).
HISTORY = 200


class Rebuilder:
    """One per worker: starts review builds, at most one at a time, and reconciles what the others left.

    Args:
        corpus, index_dir, log_path: the corpus (its reviewed file beside it), the index directory, the query log
            (whose ``meta`` table holds the state every worker shares).
        model: the model to build with (None: ``FAQ_MODEL`` or the default).
        on_done: called in this worker after a successful build (the service's reload of every worker); returns
            the reload's outcome.
        master_pid: the gunicorn master's pid (its workers are told to switch by a child whose worker is gone).
        command: the child's command line before its options (tests put a stand-in there).
    """

    def __init__(
        self,
        corpus: str,
        index_dir: str,
        log_path: str,
        on_done: Callable[[], dict] | None = None,
        command: list[str] | None = None,
        model: str | None = None,
        master_pid: Callable[[], int | None] | None = None,
        backoff: tuple[float, ...] = BACKOFF_SECONDS,
    ):
        self.corpus, self.index_dir, self.log_path = corpus, index_dir, log_path
        self.on_done, self.model, self.backoff = on_done, model, backoff
        self.master_pid = master_pid or (lambda: None)
        self.command = command or [sys.executable, "-m", "service.learning.rebuild_child"]
        self._lock = threading.Lock()
        self._running = False
        self._again = False
        self._latest: str | None = None
        self._stop = threading.Event()
        #: The action of the build being finished (``on_done`` may read it: a review decision or an entries change).
        self.finishing: str | None = None

    # ---- starting builds ----

    def request(self, action_id: str, attempt: int = 1) -> dict:
        """Start a build for this action now, or right after the one running; returns the state."""
        with self._lock:
            self._latest = action_id  # the build after the running one covers every action up to this one
            if self._running:
                self._again = True
                return {"state": "queued", "action": action_id}
            self._running = True
        state = {"state": "running", "action": action_id, "attempt": attempt, "started_at": _now()}
        threading.Thread(target=self._run, args=(action_id, attempt), name="faq-review-build", daemon=True).start()
        return state

    def retry(self) -> dict | None:
        """The owner's retry: build now for the latest decision, the attempts counted afresh; None (nothing built)
        when the current build has every decision already."""
        try:
            if not self._pending():
                return None
        except (CorpusError, ServiceError, OSError) as exc:
            log.info("retry: cannot tell what the current build lacks (%s); building", exc)
        return self.request(self._latest_action() or "retry", attempt=1)

    def _run(self, action_id: str, attempt: int) -> None:
        while True:
            try:
                self._build_once(action_id, attempt)
            except Exception as exc:  # never leave this worker "running" for good: later actions must build
                log.exception("review rebuild: unexpected error")
                self._failed(action_id, attempt, str(exc))
            with self._lock:
                if not self._again:
                    self._running = False
                    return
                self._again = False
                action_id, attempt = self._latest, 1

    def _build_once(self, action_id: str, attempt: int) -> None:
        argv = [
            *self.command,
            "--corpus", self.corpus, "--index", self.index_dir, "--log", self.log_path,
            "--action", action_id, "--attempt", str(attempt),
            *(["--model", self.model] if self.model else []),
            *(["--master", str(self.master_pid())] if self.master_pid() else []),
        ]  # fmt: skip
        started = time.monotonic()
        before = self._save({"state": "running", "action": action_id, "attempt": attempt, "started_at": _now()})
        try:
            # Its own session: a signal to the worker's process group (a terminal's Ctrl-C) does not stop it half-way.
            child = subprocess.Popen(  # noqa: S603 - our own module, no shell
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
            )
        except OSError as exc:
            log.error("review rebuild could not start: %s", exc)
            self._failed(action_id, attempt, f"the build could not start: {exc}")
            return
        try:  # the child's pid with the state, unless the child already recorded it (or more)
            _claim(self.log_path, _dumps(before), {**before, "pid": child.pid})
        except sqlite3.Error as exc:
            log.warning("could not record the rebuild's pid: %s", exc)
        try:
            _, stderr = child.communicate(timeout=REBUILD_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            _, stderr = child.communicate()
            self._failed(action_id, attempt, f"stopped after {REBUILD_TIMEOUT_SECONDS} s")
            return
        state = self._read(child.pid) or {}  # its own record: another worker's build may have written the shared one
        if state.get("pid") != child.pid or state.get("state") == "running":
            # The child ended without recording how (killed, out of memory): its last words, if any.
            last = (stderr.strip().splitlines() or [_exit_reason(child.returncode)])[-1][:500]
            self._failed(action_id, attempt, last, seconds=round(time.monotonic() - started, 2))
            return
        if state.get("state") != "done":
            log.error("review rebuild failed (the current index keeps serving): %s", state.get("error"))
            # The retry follows this worker's back-off (the child knows only the default).
            self._save({**state, "next_retry_at": failure_state(action_id, attempt, "", self.backoff)["next_retry_at"]})
            return
        self.finishing = action_id
        reload = self.on_done() if self.on_done is not None else None
        if reload is not None and not reload.get("ok", False):  # built, but the service refused to switch to it
            error = (reload.get("error") or {}).get("message", "the reload was refused")
            self._save({**state, "state": "failed", "reload": reload, "error": error, "next_retry_at": None})
            log.error("review rebuild built %s but the reload refused it: %s", state.get("index_id"), error)
            return
        self._save({**state, "reload": reload})
        log.info("rebuild for %s done in %.1f s: %s", action_id, state.get("seconds") or 0, state.get("index_id"))

    def _failed(self, action_id: str, attempt: int, error: str, **extra) -> None:
        self._save(failure_state(action_id, attempt, error, self.backoff, **extra))

    # ---- reconciling ----

    def reconcile(self) -> str | None:
        """Start the build a decision still needs (a failed one after its back-off), if no build is running.

        Returns:
            What it did: ``"started"``, or None.
        """
        if self._running:
            return None
        try:
            raw = _read_raw(self.log_path)
            state = json.loads(raw) if raw else None
            if state is not None and state.get("state") == "running" and not _gone(state):
                return None
            if not self._pending():
                return None
        except (sqlite3.Error, ValueError, CorpusError, ServiceError, OSError) as exc:
            log.debug("reconcile: nothing to do now (%s)", exc)
            return None
        action = self._latest_action() or "reconcile"
        attempt = 1
        # The same latest decision as the last build's, which failed, or whose process is gone (still "running"),
        # or which succeeded and yet left it out (never built again and again): another attempt, if any is left. A
        # newer decision starts afresh.
        again = state is not None and state.get("action") == action
        if again:
            attempt = int(state.get("attempt") or 1) + 1
            if attempt > MAX_ATTEMPTS or time.time() < _epoch(state.get("next_retry_at")):
                return None
        claimed = {
            "state": "running",
            "action": action,
            "attempt": attempt,
            "started_at": _now(),
            "claimed": os.getpid(),
        }
        if not _claim(self.log_path, raw, claimed):
            return None  # another worker took it
        log.warning("review rebuild: decisions not in the current build; building (attempt %d)", attempt)
        self.request(action, attempt)
        return "started"

    def _pending(self) -> bool:
        """Whether the reviewed file holds decisions the current build lacks, or the entries API changed the corpus
        since it (and the build is of this corpus)."""
        corpus = read_manifest(self.index_dir).corpus
        if corpus.file != Path(self.corpus).name:
            return False  # FAQ_CORPUS is not what this index is built from: decisions are refused anyway
        if entries_unbuilt(self.log_path, self.corpus, corpus.sha256):
            return True
        if not reviewed_path(self.corpus).exists():
            return False
        return pending(read_actions(reviewed_path(self.corpus)), corpus.reviewed)

    def _latest_action(self) -> str | None:
        """The id of the reviewed file's last line (a decision or a revert): a build covers it and all before."""
        try:
            actions = read_actions(reviewed_path(self.corpus))
        except CorpusError:
            return None
        return actions[-1].id if actions else None

    def watch(self, every_seconds: float = RECONCILE_SECONDS) -> threading.Thread:
        """Reconcile every ``every_seconds`` in a thread of this worker."""

        def loop() -> None:
            while not self._stop.wait(every_seconds):
                try:
                    self.reconcile()
                except Exception:  # the reconciler outlives anything one tick meets
                    log.exception("review rebuild: reconcile failed; trying again later")

        thread = threading.Thread(target=loop, name="faq-review-reconcile", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    # ---- state ----

    def _save(self, state: dict) -> dict:
        try:
            write_state(self.log_path, state)
        except Exception as exc:  # the state is for display: a failure to record it changes nothing else
            log.warning("could not record the rebuild state: %s", exc)
        return state

    def _read(self, pid: int | None = None) -> dict | None:
        """The shared state, or the one the build ``pid`` recorded for itself (``write_state(…, own=True)``)."""
        try:
            raw = _read_raw(self.log_path, f"{STATE_KEY}:{pid}" if pid else STATE_KEY)
        except sqlite3.Error:
            return None
        return json.loads(raw) if raw else None

    def status(self) -> dict | None:
        """The last rebuild's state (any worker's), or None, with ``pending`` (decisions the current build lacks)
        and ``attempts_left``; a build whose process is gone without saying how it ended is ``interrupted``."""
        state = self._read()
        if state is None:
            return None
        if state.get("state") == "running" and _gone(state):
            state = {**state, "state": "interrupted", "error": "the build's process is gone without a word"}
        try:
            state["pending"] = self._pending()
        except (CorpusError, ServiceError, OSError):
            state["pending"] = None
        state["attempts_left"] = max(0, MAX_ATTEMPTS - int(state.get("attempt") or 1))
        return state


def failure_state(action_id: str, attempt: int, error: str, backoff=BACKOFF_SECONDS, **extra) -> dict:
    """A failed build's state, with when it is tried again (None: no attempts left)."""
    wait = backoff[min(attempt, len(backoff)) - 1] if attempt < MAX_ATTEMPTS else None
    return {
        "state": "failed",
        "action": action_id,
        "attempt": attempt,
        "finished_at": _now(),
        "error": error[:500],
        "next_retry_at": _iso(time.time() + wait) if wait is not None else None,
        **extra,
    }


def _gone(state: dict) -> bool:
    """Whether a "running" state's build process is gone (or never said who it is, long ago)."""
    pid = state.get("pid")
    if pid:
        return not alive(int(pid))
    return time.time() - _epoch(state.get("started_at")) > START_GRACE_SECONDS


def _iso(ts: float) -> str:
    """A time as the state writes them all: ISO 8601 in UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _epoch(iso: str | None) -> float:
    """Seconds since the epoch of a state's time (0 when it has none)."""
    if not iso:
        return 0.0
    return float(calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")))


def _exit_reason(code: int) -> str:
    if code < 0:
        return f"the build's process was killed by signal {signal.Signals(-code).name}"
    return f"the build's process ended with status {code} without recording its outcome"


@querylog.off_loop
def _read_raw(log_path: str, key: str = STATE_KEY) -> str | None:
    with closing(querylog.connect(log_path)) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


@querylog.off_loop
def write_state(log_path: str, state: dict, own: bool = False) -> None:
    """Record the rebuild's state (every worker and the build's child share it); ``own``: also under the build's
    pid, for the worker that waits for it (two builds may run one after the other and both write the shared one)."""
    with closing(querylog.connect(log_path, create=True)) as conn:
        rows = [(STATE_KEY, _dumps(state))]
        if own and state.get("pid"):
            rows.append((f"{STATE_KEY}:{state['pid']}", _dumps(state)))
        conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", rows)
        conn.execute(  # the builds' own records of an hour ago are read by now
            "DELETE FROM meta WHERE key LIKE ? AND json_extract(value, '$.finished_at') < ?",
            (f"{STATE_KEY}:%", _iso(time.time() - 3600)),
        )


@querylog.off_loop
def _claim(log_path: str, expected: str | None, state: dict) -> bool:
    """Write ``state`` only if the stored one is still ``expected`` (one worker of several wins)."""
    with closing(querylog.connect(log_path, create=True)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (STATE_KEY,)).fetchone()
            if (row[0] if row else None) != expected:
                conn.execute("ROLLBACK")
                return False
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (STATE_KEY, _dumps(state)))
            conn.execute("COMMIT")
            return True
        except BaseException:
            conn.execute("ROLLBACK")
            raise


@querylog.off_loop
def record_entries_change(log_path: str, checksum: str, removed: tuple[str, ...], served: str | None) -> dict:
    """Record the entries API's change (the corpus checksum it wrote, the entries it removed) for the build: the
    removals of changes not served yet (``served``: the current build's corpus checksum) add up."""
    with closing(querylog.connect(log_path, create=True)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (ENTRIES_KEY,)).fetchone()
            previous = json.loads(row[0]) if row else None
            carried = previous.get("removed", []) if previous and previous.get("sha256") != served else []
            history = [*(previous or {}).get("history", []), checksum][-HISTORY:]
            change = {"sha256": checksum, "removed": sorted({*carried, *removed}), "at": _now(), "history": history}
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (ENTRIES_KEY, _dumps(change)))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return change


def served_since(log_path: str, checksum: str, served: str | None) -> bool:
    """Whether ``served`` (the served build's corpus checksum) was written by the entries API at or after the change
    that wrote ``checksum``: a later change's build holds the earlier changes."""
    raw = _read_raw(log_path, ENTRIES_KEY)
    history = (json.loads(raw) if raw else {}).get("history", [])
    return checksum in history and served in history and history.index(served) >= history.index(checksum)


def entries_change(log_path: str, corpus: str) -> dict | None:
    """The entries API's last change if the corpus still holds it (the file's checksum is the one it wrote)."""
    try:
        raw = _read_raw(log_path, ENTRIES_KEY)
    except sqlite3.Error:  # no log yet, or one that does not read: no change recorded
        return None
    change = json.loads(raw) if raw else None
    if change is None or sha256_file(corpus) != change.get("sha256"):
        return None
    return change


def entries_unbuilt(log_path: str, corpus: str, built: str | None) -> bool:
    """Whether the corpus holds an entries API change that the build of corpus checksum ``built`` lacks."""
    change = entries_change(log_path, corpus)
    return change is not None and change["sha256"] != built


def _dumps(state: dict) -> str:
    return json.dumps(state, default=str)


def _now() -> str:
    return _iso(time.time())

"""Switching a running service to a new index build without a restart, and keeping the old one when it is bad.

Three triggers, all ending in ``Reloader.reload``: ``POST /admin/reload``, SIGHUP to a serving process (each
gunicorn worker installs the handler), and a watcher thread that notices when ``<index>/current`` points to a
new build (``FAQ_WATCH_SECONDS``). The new engine is built beside the old one (same model, new index) and swapped
in with one assignment (``FaqService.swap``): a request that already holds the old engine finishes on it, the next
one gets the new. A build that is missing, truncated, corrupted or made for another model or encoder is refused:
the old index keeps serving, and the reason is logged and shown in ``/health``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from ..errors import ServiceError
from ..indexing.store import load_index, load_manifest_origin, resolve
from ..search.engine_loading import engine_for, load_engine

if TYPE_CHECKING:
    from .faq_service import FaqService

log = logging.getLogger(__name__)


class Reloader:
    """Loads new builds for a ``FaqService`` and has it swap to them; one per service (so one per gunicorn
    worker)."""

    def __init__(self, service: FaqService):
        self.service = service
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._refused: str | None = None  # a build already refused: the watcher does not retry it every tick
        self.last: dict[str, Any] | None = None
        self.reloads = 0
        #: The gunicorn master's pid, set in each worker by ``gunicorn_conf.post_worker_init``: an admin reload
        #: in one worker then signals its sibling workers, so that every worker switches.
        self.gunicorn_master: int | None = None

    @property
    def engine(self):
        return self.service.current_engine

    def _current_build(self) -> str:
        return str(resolve(self.service.settings.index))

    def reload(self, trigger: str, force: bool = False) -> dict:
        """Load the index ``FAQ_INDEX`` points to now and switch to it if it is new and sound.

        Args:
            trigger: what asked for it (``admin``, ``sighup``, ``watch``), for the log and ``/health``.
            force: reload even when the build is the one already served.
        Returns:
            ``{"ok", "changed", "index_id", "previous_index_id", "trigger", "at"[, "error"]}``; never raises for a
            bad index (that is ``ok: false`` with the reason).
        """
        with self._lock:  # one reload at a time per process; searches never wait for this lock
            old = self.engine
            previous = old.index.index_id if old is not None else None
            outcome: dict[str, Any] = {
                "trigger": trigger,
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "previous_index_id": previous,
            }
            started = time.perf_counter()
            try:
                build = self._current_build()
                if old is not None and not force and str(old.index.path) == build:
                    return {**outcome, "ok": True, "changed": False, "index_id": previous}
                engine = self._new_engine(old)
                self.service.observer.engine(engine)  # instrumented before it serves (and it reads the manifest)
            except Exception as exc:  # a bad build of any kind is refused, never a 500 nor a dead watcher
                if not isinstance(exc, ServiceError):
                    log.exception("reload (%s): unexpected error while loading the new build", trigger)
                    exc = ServiceError(f"the new build could not be loaded: {type(exc).__name__}: {exc}")
                self._refused = self._safe_build()
                outcome.update(
                    ok=False, changed=False, index_id=previous, error={"code": exc.code, "message": exc.message}
                )
                log.error("reload (%s) refused, still serving %s: %s", trigger, previous, exc.message)
                self.service.observer.reload("refused")
                self.last = outcome
                return outcome
            self.service.swap(engine)
            self.service.observer.reload("switched")
            self._refused = None
            self.reloads += 1
            outcome.update(
                ok=True, changed=True, index_id=engine.index.index_id, seconds=round(time.perf_counter() - started, 3)
            )
            log.info(
                "reload (%s): now serving %s (was %s), in %.2f s",
                trigger,
                engine.index.index_id,
                previous,
                outcome["seconds"],
            )
            self.last = outcome
            return outcome

    def _safe_build(self) -> str | None:
        try:
            return self._current_build()
        except ServiceError:
            return None

    def _new_engine(self, old):
        """The new index with the model already loaded (the model does not change on a reload); the engine
        refuses an index made with another model or encoder."""

        settings = self.service.settings
        if old is None:  # started without a usable index: load everything now
            return load_engine(settings, self.service.embedders)
        return engine_for(settings, old.embedder, load_index(settings.index))

    # ---- triggers ----

    def install_sighup(self) -> bool:
        """Reload on SIGHUP (only possible from the main thread; gunicorn workers call this after fork)."""
        return install_sighup(lambda: self.reload("sighup"), self._stop)

    def signal_siblings(self) -> int:
        """SIGHUP the other workers of this gunicorn master (none outside gunicorn); returns how many."""
        if not self.gunicorn_master or self.gunicorn_master != os.getppid():
            return 0
        import psutil

        try:
            workers = psutil.Process(self.gunicorn_master).children()
        except psutil.Error:
            return 0
        signalled = 0
        for worker in workers:
            if worker.pid != os.getpid():
                try:
                    os.kill(worker.pid, signal.SIGHUP)
                    signalled += 1
                except ProcessLookupError:  # exited meanwhile
                    pass
        return signalled

    def watch(self, every_seconds: float) -> threading.Thread:
        """Poll ``<index>/current`` every ``every_seconds`` and reload when it points to another build."""

        def loop() -> None:
            while not self._stop.wait(every_seconds):
                try:
                    build = self._current_build()
                except ServiceError:
                    continue  # no index at all right now: keep serving what we have
                try:
                    engine = self.engine
                    if (engine is None or str(engine.index.path) != build) and build != self._refused:
                        self.reload("watch")
                except Exception:  # the watcher outlives anything a build can do to one tick
                    log.exception("index watcher: unexpected error; still watching")

        thread = threading.Thread(target=loop, name="faq-index-watch", daemon=True)
        thread.start()
        return thread

    def follow_review_builds(self) -> dict | None:
        """Switch to the current build if the review loop published it and this process does not serve it yet (a
        worker that was starting, or whose sibling's signal was lost, when it was published); None if nothing to do.
        An operator's build is left to the watcher or a reload, as configured."""
        engine = self.engine
        try:
            build = self._current_build()
            if engine is None or str(engine.index.path) == build or build == self._refused:
                return None
            origin = load_manifest_origin(build)
        except ServiceError:
            return None
        return self.reload("review") if origin == "review" else None

    def catch_up(self) -> dict | None:
        """Once a worker listens to SIGHUP: switch if ``current`` moved while it was loading (a signal sent then was
        ignored); None if it did not, or if this worker serves an earlier build because the current one is bad."""
        engine = self.engine
        if engine is None or engine.index.fallback is not None:
            return None
        try:
            if str(engine.index.path) == self._current_build():
                return None
        except ServiceError:
            return None
        return self.reload("catch-up")

    @property
    def stopped(self) -> threading.Event:
        """Set when the process stops reloading (threads that tick with the reloader wait on it)."""
        return self._stop

    def stop(self) -> None:
        self._stop.set()

    def status(self) -> dict:
        """For ``/health``: the last reload and how many succeeded."""
        return {
            "reloads": self.reloads,
            "last": self.last,
            "watch_seconds": self.service.settings.watch_seconds,
        }


def install_sighup(on_signal, stop: threading.Event) -> bool:
    """Call ``on_signal()`` in a thread after each SIGHUP to this process until ``stop`` is set; False when it cannot
    be installed (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    # The handler only sets an event that a waiting thread (a greenlet in a gevent worker) acts on: a signal
    # handler must neither take locks the interrupted code may hold nor block, and under gevent it runs in the
    # event loop, where starting a thread (which waits for it to start) kills the worker.
    wanted = threading.Event()

    def waiter() -> None:
        while not stop.is_set():
            if wanted.wait(1.0):
                wanted.clear()
                on_signal()

    threading.Thread(target=waiter, name="faq-sighup", daemon=True).start()
    signal.signal(signal.SIGHUP, lambda signum, frame: wanted.set())
    return True

"""``FaqService``: the running service of one FAQ, and the use cases every way in calls.

A request's way: an adapter (``http/routes.py``, ``integrations/mcp.py``) parses it into a ``core.models`` request
and calls a method here; the method applies the service's rules (the token budget and the search slots of
``search/admission.py``, the query log, the review loop) and calls the engine (``search/engine.py``), whose answer
decision is ``search/decision/``. The adapters add nothing but their transport: HTTP's keys, rate limit and JSON,
MCP's tool errors.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..corpus import CorpusError
from ..corpus_writer import CorpusFile, Edit, EditError
from ..errors import (
    Conflict,
    ErrorCode,
    FeatureDisabled,
    IndexUnavailable,
    InvalidRequest,
    NotFound,
    QueryLogUnavailable,
    ServiceError,
    redact_paths,
)
from ..learning import querylog, review_queue
from ..learning.querylog import QueryLog
from ..learning.rebuild import RECONCILE_SECONDS, Rebuilder, record_entries_change, served_since
from ..search.admission import SearchGate
from ..search.engine import SearchEngine
from ..search.engine_loading import EmbedderPool, load_engine
from ..settings import Settings
from .models import FeedbackRequest, ReviewActionRequest, SearchRequest
from .reloader import Reloader

log = logging.getLogger(__name__)

#: The review loop waits at most this long for this worker's queued searches to be written before it reads the log.
FLUSH_BEFORE_REVIEW_SECONDS = 1.0


class Observer:
    """What the service reports as it runs (the HTTP layer's metrics implement it; by default nothing)."""

    def engine(self, engine: SearchEngine | None) -> None:
        """An engine is about to serve (at start and after each reload)."""

    def reload(self, outcome: str) -> None:
        """A reload ``switched`` or was ``refused``."""

    def query_log(self, outcome: str, rows: int) -> None:
        """Query log rows ``written``, ``dropped`` or ``failed``."""

    def feedback(self, helpful: bool) -> None:
        """A user's judgement was recorded."""

    def review_action(self, action: str) -> None:
        """An owner's decision (or a revert) was recorded."""

    def gone(self) -> None:
        """The FAQ is no longer served (removed by a configuration reload)."""


class FaqService:
    """One FAQ, running: its engine (loaded, reloaded, watched), its query log and review loop, and its use cases.

    Args:
        settings: the service's settings (``Settings.from_env()`` by default).
        engine: a ready engine (tests pass a small one); None: loaded now from the settings. If that fails the
            service still starts: every use case that needs the engine raises that failure (503 and its code).
        observer: what the service reports to (metrics).
        name: the FAQ's name in a service of several (``core/faq_config.py``).
        gate: the process's search slots, shared by the FAQs of a service (None: this service's own).
        embedders: the process's encoders, shared by the FAQs of a service (None: this service's own).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        engine: SearchEngine | None = None,
        observer: Observer | None = None,
        name: str = "faq",
        gate: SearchGate | None = None,
        embedders: EmbedderPool | None = None,
    ):
        self.settings = settings or Settings.from_env()
        self.observer = observer or Observer()
        self.name = name
        self.embedders = embedders or EmbedderPool()
        self.failure: ServiceError | None = None
        if engine is None:
            try:
                engine = load_engine(self.settings, self.embedders)
            except ServiceError as exc:
                log.error("no search engine: %s", exc.message)
                self.failure = exc
        self._engine = engine
        self.observer.engine(engine)
        s = self.settings
        self.gate = gate or SearchGate(s.max_concurrent_searches, s.search_timeout, s.max_request_tokens)
        self.reloader = Reloader(self)
        #: Parts of ``health()`` a transport adds (HTTP's rate limit).
        self.health_extras: dict[str, Callable[[], dict]] = {}
        #: Called before a reload that signals the sibling workers (the catalog reads its configuration again).
        self.before_reload: Callable[[], object] | None = None
        self.query_log: QueryLog | None = None
        self.rebuilder: Rebuilder | None = None
        if s.query_log:
            self._start_learning()
        if s.watch_seconds > 0:
            self.reloader.watch(s.watch_seconds)

    # ---- the engine ----

    @property
    def current_engine(self) -> SearchEngine | None:
        """The engine serving now, or None (no usable index at start)."""
        return self._engine

    @property
    def engine(self) -> SearchEngine:
        """The engine serving now.

        Raises:
            ServiceError: the reason no engine could be loaded (a fresh instance each time, so that tracebacks do
                not pile up on one object), or ``IndexUnavailable``.
        """
        engine = self._engine
        if engine is None:
            if self.failure is not None:
                raise type(self.failure)(self.failure.message, code=self.failure.code)
            raise IndexUnavailable("no index is loaded")
        return engine

    def swap(self, engine: SearchEngine) -> None:
        """Serve ``engine`` from now on (one assignment: a request holding the old one finishes on it)."""
        self._engine = engine
        self.failure = None

    def reload(self, trigger: str = "admin", force: bool = False, siblings: bool = True) -> dict:
        """Switch to the build the index directory points to now (``Reloader.reload``), then, under gunicorn, have
        the sibling workers do the same; the outcome, with ``signalled_workers``."""
        if siblings and self.before_reload is not None:
            self.before_reload()
        outcome = self.reloader.reload(trigger, force=force)
        outcome["signalled_workers"] = self.reloader.signal_siblings() if siblings else 0
        return outcome

    # ---- searching ----

    def search(
        self,
        request: SearchRequest,
        request_id: str | None = None,
        client: str | None = None,
        arrived: float | None = None,
    ) -> dict:
        """One search within the token budget and a search slot; its response, logged when there is a query log.

        Args:
            arrived: ``time.monotonic()`` when the call came in, when it waited for a thread before this (the MCP
                server's tools): that wait counts in ``FAQ_SEARCH_TIMEOUT``.
        Raises:
            PayloadTooLarge: ``too_many_tokens``. SearchTimeout: no slot in time. ServiceError: no engine.
        """
        engine = self.engine
        tokens = self.gate.tokens(engine, [request.query])
        deadline = None if arrived is None else arrived + self.gate.timeout
        if request.filter is not None:
            engine.filters.keep(request.filter)  # a bad filter is refused before the search waits for a slot
        outcome = self.gate.run(
            lambda: engine.search(request.query, request.top_k, request.min_score, request.filter), tokens, deadline
        )
        body = outcome.to_dict()
        request_id = request_id or uuid.uuid4().hex
        self._log(request_id, request.query, body, client)
        body["request_id"] = request_id
        return body

    def search_batch(
        self, items: list, request_id: str | None = None, client: str | None = None, arrived: float | None = None
    ) -> dict:
        """Several searches encoded together: each item a validated ``SearchRequest`` or the error it got (its slot
        of the answer); one token budget and one slot for the whole batch (``arrived``: as for ``search``)."""
        started = time.perf_counter()
        engine = self.engine
        items = [_filter_checked(engine, item) for item in items]  # a bad filter is its query's error, in its slot
        valid = [(i, item) for i, item in enumerate(items) if isinstance(item, SearchRequest)]
        tokens = self.gate.tokens(engine, [r.query for _, r in valid])
        requests = [(r.query, r.top_k, r.min_score, r.filter) for _, r in valid]
        deadline = None if arrived is None else arrived + self.gate.timeout
        responses = self.gate.run(lambda: engine.search_batch(requests), tokens, deadline) if valid else []
        request_id = request_id or uuid.uuid4().hex
        results = [None if isinstance(item, SearchRequest) else item.to_dict() for item in items]
        for (i, item), response in zip(valid, responses, strict=True):
            results[i] = response.to_dict()
            self._log(request_id, item.query, results[i], client)
        return {
            "results": results,
            "took_ms": round((time.perf_counter() - started) * 1000, 2),
            "request_id": request_id,
        }

    def _log(self, request_id: str, query: str, body: dict, client: str | None) -> None:
        """Queue a search for the query log, when there is one: never blocks, never fails."""
        if self.query_log is not None:
            self.query_log.record(request_id, query, body, client)

    def entry(self, faq_id: str) -> dict:
        """The whole entry with its passages.

        Raises:
            NotFound: ``faq_not_found``.
        """
        return self.engine.entry(faq_id)

    def feedback(self, request: FeedbackRequest, client: str | None = None) -> dict:
        """Record whether an entry a search returned helped (needs the query log).

        Raises:
            FeatureDisabled: ``feedback_disabled``. NotFound: ``unknown_request``, ``unknown_entry``.
        """
        querylog = self.needs_query_log(
            "feedback is off: this service keeps no query log", code=ErrorCode.FEEDBACK_DISABLED
        )
        querylog.feedback(request.request_id, request.faq_id, request.helpful, self.engine.index.index_id, client)
        self.observer.feedback(request.helpful)
        return {
            "status": "recorded",
            "request_id": request.request_id,
            "faq_id": request.faq_id,
            "helpful": request.helpful,
        }

    # ---- state ----

    def ready(self) -> dict:
        """Readiness: the index served (raises the reason when there is none)."""
        return {"status": "ready", "index_id": self.engine.index.index_id}

    def health(self) -> dict:
        """The index served, the reloads, the query log and the transport's extras; paths cut to their last part
        (this is open to anyone)."""
        engine = self.engine
        status = {
            "status": "ok",
            "index": engine.summary(),
            "reload": self.reloader.status(),
            "query_log": self.query_log.status() if self.query_log is not None else {"enabled": False},
            **{name: extra() for name, extra in self.health_extras.items()},
        }
        status = redact_paths(status)
        status["index"]["faq"] = engine.index.identity.to_dict()  # the FAQ's own words, not paths: as written
        return status

    def stats(self) -> dict:
        """This process's index, reloads and memory (for the admin)."""
        import psutil

        engine = self._engine
        return {
            "pid": os.getpid(),
            "index": engine.summary() if engine is not None else None,
            "reload": self.reloader.status(),
            "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
        }

    # ---- the review loop (``learning/``) ----

    def _start_learning(self) -> None:
        s = self.settings
        self.query_log = QueryLog(s.query_log, days=s.query_log_days, observer=self.observer.query_log,
                                  max_mb=s.query_log_max_mb)  # fmt: skip
        self.query_log.start()  # opens the database (an error is logged and shown in /health); the retention
        self.rebuilder = Rebuilder(
            str(s.corpus),
            str(s.index),
            str(s.query_log),
            on_done=lambda: self.reload(
                "entries" if (self.rebuilder.finishing or "").startswith("entries-") else "review"
            ),
            model=s.model,
            master_pid=lambda: self.reloader.gunicorn_master,
        )

    def needs_query_log(self, why: str, code: str) -> QueryLog:
        if self.query_log is None:
            raise FeatureDisabled(f"{why}: set FAQ_QUERY_LOG to a database file", code=code)
        return self.query_log

    def _source(self, flush: bool = True) -> review_queue.Source:
        querylog = self.needs_query_log("the review queue needs the query log", code=ErrorCode.QUERY_LOG_DISABLED)
        if flush:  # what this worker queued before is written first: an owner sees the searches just made
            querylog.flush(FLUSH_BEFORE_REVIEW_SECONDS)
        s = self.settings
        return review_queue.Source(str(querylog.path), str(s.corpus), self.engine, str(s.index))

    def review_queue(self, days: float | None = None, limit: int = 50, page: int = 1) -> dict:
        """The groups of unanswered or unhelpful queries not reviewed yet, most flagged first, and the rebuild."""
        source = self._source()
        out = _reading(lambda: review_queue.review_queue(source, self._days(days), limit, page))
        out["rebuild"] = _reading(self.rebuilder.status)
        return out

    def gaps(self, days: float | None = None, limit: int = 50, page: int = 1) -> dict:
        """The FAQ's missing questions, the most failed first."""
        source = self._source()
        return _reading(lambda: review_queue.gaps(source, self._days(days), limit, page))

    def decide(self, request: ReviewActionRequest) -> dict:
        """Apply an owner's decision to queries of the queue; then (but for a dismissal) rebuild and reload.

        Raises:
            InvalidRequest, Conflict, NotFound: the decision is refused, and nothing is written.
        """
        if request.action != "dismiss" and not request.faq_id:
            raise InvalidRequest(f"'{request.action}' needs 'faq_id'", code=ErrorCode.MISSING_FIELD, field="faq_id")
        source = self._source()
        action = _reading(
            lambda: review_queue.apply(
                source, request.action, list(dict.fromkeys(request.query_keys)), request.index_id, request.by,
                faq_id=request.faq_id, note=request.note, days=self.settings.query_log_days,
            )
        )  # fmt: skip
        self.observer.review_action(request.action)
        rebuild = None if request.action == "dismiss" else self.rebuilder.request(action.id)
        return {"action": action.to_dict(), "rebuild": rebuild}

    def revert(self, action_id: str, by: str) -> dict:
        """Cancel a decision; then rebuild (not for a dismissal, which changed nothing)."""
        source = self._source(flush=False)
        record, target = _reading(lambda: review_queue.revert(source, action_id, by))
        self.observer.review_action("revert")
        rebuild = self.rebuilder.request(record.id) if target.action != "dismiss" else None
        return {"action": record.to_dict(), "rebuild": rebuild}

    def actions(self) -> dict:
        """Every decision, newest first."""
        source = self._source(flush=False)
        return {"actions": _reading(lambda: review_queue.list_actions(source))}

    def rebuild_now(self) -> dict:
        """Build again now for the decisions the current build lacks; ``started`` False when it has them all."""
        self._source(flush=False)
        state = _reading(self.rebuilder.retry)
        if state is None:
            return {"rebuild": _reading(self.rebuilder.status), "started": False}
        return {"rebuild": state, "started": True}

    # ---- the entries API (``corpus_writer.py``) ----

    def served_corpus(self) -> str | None:
        """The checksum of the corpus the served build was made from."""
        engine = self.current_engine
        return engine.index.manifest.corpus.sha256 if engine is not None else None

    def list_entries(self, offset: int = 0, limit: int = 50) -> dict:
        """A page of the corpus's entries as written, with the corpus's checksum and whether it is served."""
        checksum, entries = _editing(lambda: CorpusFile(self.settings.corpus).entries())
        return {
            "entries": entries[offset : offset + limit],
            "total": len(entries),
            "offset": offset,
            "limit": limit,
            "next_offset": offset + limit if offset + limit < len(entries) else None,
            **self._served(checksum),
        }

    def get_entry(self, faq_id: str) -> dict:
        """One entry of the corpus as written, with the corpus's checksum."""
        checksum, entries = _editing(lambda: CorpusFile(self.settings.corpus).entries())
        for entry in entries:
            if str(entry.get("id")) == faq_id:  # an integer id is its text, as the corpus reader takes it
                return {"entry": entry, **self._served(checksum)}
        raise NotFound(f"the corpus has no entry {faq_id!r}", code=ErrorCode.UNKNOWN_ENTRY)

    def get_synonyms(self) -> dict:
        """The corpus header's synonyms, with the corpus's checksum."""
        checksum, synonyms = _editing(lambda: CorpusFile(self.settings.corpus).synonyms())
        return {"synonyms": synonyms.to_dict(), **self._served(checksum)}

    def put_entries(
        self, entries: list[dict], expected: str | None = None, wait: float = 0.0, where: list[str] | None = None
    ) -> dict:
        """Create or replace entries in the corpus, then rebuild and reload as a review decision does."""
        return self._change(lambda file, record: file.put(entries, expected, where, record), wait)

    def delete_entry(self, faq_id: str, expected: str | None = None, wait: float = 0.0) -> dict:
        """Remove an entry from the corpus, then rebuild and reload."""
        return self._change(lambda file, record: file.delete(faq_id, expected, record), wait)

    def set_synonyms(self, synonyms: dict, expected: str | None = None, wait: float = 0.0) -> dict:
        """Replace the corpus header's synonyms, then rebuild and reload."""
        out = self._change(lambda file, record: file.set_synonyms(synonyms, expected, record), wait)
        out["synonyms"] = _editing(lambda: CorpusFile(self.settings.corpus).synonyms())[1].to_dict()
        return out

    def _served(self, checksum: str, holds: bool | None = None) -> dict:
        """The corpus's checksum and file, and whether the served build is made from it (``holds``: whether it holds
        it, when a caller knows better)."""
        served = self.served_corpus()
        engine = self.current_engine
        out = {"checksum": checksum, "served_checksum": served,
               "served": served == checksum if holds is None else holds, "corpus": self.settings.corpus.name,
               "index_built_from": engine.index.manifest.corpus.file if engine is not None else None}  # fmt: skip
        if out["index_built_from"] not in (None, out["corpus"]):
            out["warning"] = (
                f"FAQ_CORPUS is {out['corpus']!r} but the served index was built from {out['index_built_from']!r}: "
                "set FAQ_CORPUS to that corpus (changes are refused with corpus_mismatch until then)"
            )
        return out

    def _change(self, edit: Callable[[CorpusFile, Callable[[Edit], Any]], Edit], wait: float) -> dict:
        """Make a change to the corpus (refused whole, or written whole), record it for the build while the corpus
        is still locked, start the build; with ``wait``, answer once this worker serves a build that holds it (or
        ``wait`` seconds passed)."""
        self.needs_query_log("changing entries rebuilds as the review loop does, which needs the query log",
                             code=ErrorCode.QUERY_LOG_DISABLED)  # fmt: skip
        corpus = self.settings.corpus
        built_from = self.engine.index.manifest.corpus.file
        if built_from != corpus.name:
            raise Conflict(
                f"the served index was built from {built_from!r}, not from FAQ_CORPUS ({corpus.name!r}): set "
                "FAQ_CORPUS to the corpus this index is built from",
                code=ErrorCode.CORPUS_MISMATCH,
            )
        log_path = str(self.settings.query_log)

        served = self.served_corpus()

        def record(done: Edit) -> None:  # under the corpus's lock, before the rename: in the file's order of changes
            # Already off the event loop (below): the plain function, not its off-loop wrapper.
            _reading(lambda: record_entries_change.__wrapped__(log_path, done.after, done.removed, served))

        # Off the event loop (a gevent worker): the lock may be held by another writer, and checking a large corpus
        # takes a while; the worker's other requests go on meanwhile.
        done = _editing(lambda: querylog.off_loop(edit)(CorpusFile(corpus), record))
        out = {
            "created": list(done.created),
            "replaced": list(done.replaced),
            "removed": list(done.removed),
            "unchanged": list(done.unchanged),
            "previous_checksum": done.before,
            "rebuild": None,
        }
        if done.after != done.before:
            out["rebuild"] = self.rebuilder.request(f"entries-{done.after[:12]}")
        deadline = time.monotonic() + wait
        while not self._serves(log_path, done.after) and time.monotonic() < deadline:
            time.sleep(0.1)
        engine = self.current_engine
        # Served: this change's build, or a later change's that holds it.
        out.update(self._served(done.after, self._serves(log_path, done.after)),
                   index_id=engine.index.index_id if engine is not None else None)  # fmt: skip
        if out["rebuild"] is not None and out["served"]:  # the build that served it, as it ended
            out["rebuild"] = _reading(self.rebuilder.status) or out["rebuild"]
        return out

    def _serves(self, log_path: str, checksum: str) -> bool:
        """Whether the served build holds the entries API's change that wrote ``checksum``: it is built from that
        corpus, or from one a later change of the API wrote."""
        served = self.served_corpus()
        if served == checksum:
            return True
        try:
            return served_since(log_path, checksum, served)
        except sqlite3.Error:
            return False

    def _days(self, days: float | None) -> float:
        return self.settings.query_log_days if days is None else days

    # ---- running ----

    def start_background(self, every_seconds: float | None = None) -> threading.Thread | None:
        """The learning loop's upkeep in a thread of this serving process (gunicorn's ``post_worker_init``, the
        development server): decisions the current build lacks are built (``Rebuilder.reconcile``), a build the review
        loop published while this process was not listening is switched to, and flagged queries get their vectors
        ahead of the owner's next listing. Nothing without a query log."""
        if self.rebuilder is None:
            return None
        vectors_lock = f"{self.settings.query_log}.vectors.lock"

        def tick() -> None:
            self.rebuilder.reconcile()
            self.reloader.follow_review_builds()
            engine = self._engine
            if engine is None or not self.gate.try_slot():  # searches first: only a free slot is used
                return
            try:
                with _exclusive(vectors_lock) as mine:  # one worker encodes at a time
                    if mine:
                        review_queue.precompute_vectors(self._source(flush=False), self.settings.query_log_days)
            finally:
                self.gate.release()

        def loop() -> None:
            while not self.reloader.stopped.wait(every_seconds or RECONCILE_SECONDS):
                try:
                    tick()
                except Exception:  # the upkeep outlives anything one tick meets
                    log.exception("learning loop upkeep failed; trying again later")

        thread = threading.Thread(target=loop, name="faq-learning-upkeep", daemon=True)
        thread.start()
        return thread

    def close(self, timeout: float = 5.0) -> None:
        """Stop the watchers and write what the query log holds."""
        self.reloader.stop()
        if self.rebuilder is not None:
            self.rebuilder.stop()
        if self.query_log is not None:
            self.query_log.close(timeout)


def _filter_checked(engine: SearchEngine, item):
    """A batch item, or the error its filter gets from this FAQ's entries."""
    if isinstance(item, SearchRequest) and item.filter is not None:
        try:
            engine.filters.keep(item.filter)
        except InvalidRequest as exc:
            return exc
    return item


#: How each refusal of ``corpus_writer`` is answered.
EDIT_ERRORS = {
    "invalid_entry": (InvalidRequest, ErrorCode.INVALID_ENTRY),
    "invalid_synonyms": (InvalidRequest, ErrorCode.INVALID_SYNONYMS),
    "id_mismatch": (InvalidRequest, ErrorCode.ID_MISMATCH),
    "unknown_entry": (NotFound, ErrorCode.UNKNOWN_ENTRY),
    "last_entry": (Conflict, ErrorCode.LAST_ENTRY),
    "corpus_changed": (Conflict, ErrorCode.CORPUS_CHANGED),
    "stale": (Conflict, ErrorCode.PRECONDITION_FAILED),
    "invalid_corpus": (Conflict, ErrorCode.CORPUS_INVALID),
}


def _editing(call: Callable[[], Any]) -> Any:
    """Run a read or a change of the corpus file: a refusal or a file error becomes its error code."""
    try:
        return call()
    except EditError as exc:
        kind, code = EDIT_ERRORS[exc.kind]
        raise kind(exc.message, code=code) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # a read-only directory, a full disk, bytes gone bad
        raise ServiceError(
            f"the corpus cannot be read or written: {getattr(exc, 'strerror', None) or exc}",
            code=ErrorCode.CORPUS_UNWRITABLE,
        ) from None


def _reading(call: Callable[[], Any]) -> Any:
    """Run work on the log or the reviewed file: a database or file error becomes a clear error, never a bare 500."""
    try:
        return call()
    except sqlite3.Error as exc:
        raise QueryLogUnavailable(f"the query log cannot be read: {exc}") from None
    except CorpusError as exc:
        raise ServiceError(f"the reviewed file is damaged: {exc}", code=ErrorCode.REVIEWED_FILE_INVALID) from None
    except OSError as exc:  # a read-only corpus directory, a full disk
        raise ServiceError(
            f"the reviewed file cannot be written next to the corpus: {exc.strerror or exc}",
            code=ErrorCode.REVIEWED_FILE_UNWRITABLE,
        ) from None


@contextlib.contextmanager
def _exclusive(path: str):
    """Yield whether this process holds the lock file ``path`` (without waiting for it)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)

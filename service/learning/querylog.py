"""The query log: each search's redacted query, its top entries and whether it was answered, in SQLite.

Off unless ``FAQ_QUERY_LOG`` names a database file. A search only puts a small tuple on a bounded in-memory queue
(``record``, which never blocks and never raises); a writer thread of the worker redacts the queries
(``redaction.redact``, linear in the query's length) and writes them in batches, both in a native thread under
gevent (``_blocking``), so neither a long query nor a slow disk, a locked or a corrupted database slows the
worker's other requests or fails a search: the rows of a failed batch are counted as failed, the error is logged
and shown in ``/health``, and the writer tries again. SQLite in WAL mode lets every gunicorn worker write to the
same file while the review queue reads it. Rows older than ``FAQ_QUERY_LOG_DAYS`` are deleted at start and every
hour, and the oldest rows go first when the file's content passes ``FAQ_QUERY_LOG_MAX_MB``.

Each row names its client by a salted hash (an API key or an address, never stored as such): the review queue and
the gaps count one client's repeats once a day, so that nobody can push a question up the queue by asking it
again and again.

What a crash loses: the rows still on the queue, at most ``gather_seconds`` (0.05 s) worth of searches or
``batch_rows``, since the writer commits what it gathered at least that often (``scripts/bench.py querylog``,
docs/learning.md).
"""

from __future__ import annotations

import functools
import hmac
import itertools
import json
import logging
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ErrorCode, NotFound, QueryLogUnavailable
from .redaction import EMPTY_KEY, query_key, redact

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS searches (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,            -- seconds since the epoch
    request_id TEXT NOT NULL,
    query TEXT NOT NULL,         -- redacted
    query_key TEXT NOT NULL,     -- redaction.query_key(query)
    index_id TEXT,
    answered INTEGER NOT NULL,
    reason TEXT,                 -- the reason code when not answered
    results TEXT NOT NULL,       -- JSON [[faq_id, score], ...], best first
    client TEXT                  -- salted hash of the client (NULL: unknown, each row its own client)
);
CREATE INDEX IF NOT EXISTS searches_ts ON searches (ts);
CREATE INDEX IF NOT EXISTS searches_request ON searches (request_id);
CREATE INDEX IF NOT EXISTS searches_key ON searches (query_key);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    request_id TEXT NOT NULL,
    query_key TEXT NOT NULL,
    faq_id TEXT NOT NULL,
    helpful INTEGER NOT NULL,
    index_id TEXT,
    client TEXT
);
CREATE INDEX IF NOT EXISTS feedback_ts ON feedback (ts);
CREATE INDEX IF NOT EXISTS feedback_key ON feedback (query_key);
CREATE INDEX IF NOT EXISTS feedback_request ON feedback (request_id, faq_id);
CREATE TABLE IF NOT EXISTS vectors (
    query_key TEXT NOT NULL,
    model TEXT NOT NULL,
    ts REAL NOT NULL,
    vector BLOB NOT NULL,        -- float32, L2-normalised, of the redacted query
    PRIMARY KEY (query_key, model)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
#: Entries of a search kept in the log (its results, best first).
LOGGED_RESULTS = 5
PURGE_EVERY_SECONDS = 3600.0
#: The longest retention accepted (a hundred years: "keep it").
MAX_DAYS = 36_500
#: How long feedback waits for its search to reach the log.
FEEDBACK_WAIT_SECONDS = 1.0
#: How long a failing database is left alone before the writer opens it again.
RETRY_SECONDS = 5.0
#: How often the writer looks at the database's size (``max_mb``), at most.
SIZE_CHECK_SECONDS = 5.0
#: A client's repeats of one query count once per period of this many seconds (a day) in the review ranking.
CLIENT_PERIOD_SECONDS = 86400


@dataclass(frozen=True)
class LoggedSearch:
    """One search as the log holds it."""

    ts: float
    request_id: str
    query: str
    query_key: str
    index_id: str | None
    answered: bool
    reason: str | None
    results: list[tuple[str, float]]


def connect(path: str | os.PathLike, timeout: float = 2.0, create: bool = False) -> sqlite3.Connection:
    """A connection to the log; ``create``: also put the file in WAL mode and create the tables if need be.

    WAL mode lets every worker's writer and the review queue's readers use the file at once; it is a property of
    the file, set once (by the first writer), so readers only open it. A connection waits up to ``timeout``
    seconds for a lock.

    Raises:
        sqlite3.Error: the file is not a database, is locked beyond ``timeout``, or cannot be created.
    """
    if not create and not os.path.exists(path):  # a reader never creates the file
        raise sqlite3.OperationalError(f"no query log database at {path}")
    # check_same_thread off: under gevent the writer's statements run in the hub's native threads (``_blocking``).
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        if create:
            tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:  # a new file: freed pages can be given back (the size bound deletes oldest rows)
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            if not {"searches", "feedback", "vectors", "meta"} <= tables:
                conn.executescript(SCHEMA)
            for table in ("searches", "feedback"):  # a log from before clients were counted
                if "client" not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN client TEXT")
            conn.execute("PRAGMA secure_delete=ON")  # purged queries are overwritten, not left in free pages
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL: a commit survives a crash of the process, not of the host
    except BaseException:
        conn.close()
        raise
    return conn


def off_loop(function):
    """Run a function of plain SQLite work through ``_blocking``: under gevent, a locked or slow database then holds
    a native thread, not the worker's event loop (its other requests go on)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return _blocking(functools.partial(function, *args, **kwargs))

    return wrapper


def _blocking(function, *args):
    """Call ``function`` so that it does not stop other requests: in a gevent worker, in the hub's pool of native
    threads (SQLite releases the GIL while it writes, checkpoints and syncs the file); elsewhere, directly (the
    writer is a thread of its own already)."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is in requirements.txt
        return function(*args)
    if not monkey.is_module_patched("threading"):
        return function(*args)
    import gevent

    def outcome():  # an exception comes back as a value: gevent's pool would print it as a traceback of its own
        try:
            return True, function(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller's greenlet
            return False, exc

    ok, value = gevent.get_hub().threadpool.apply(outcome)
    if not ok:
        raise value
    return value


#: How often ``QueryLog.flush`` looks whether the writer has caught up.
FLUSH_POLL_SECONDS = 0.005


class QueryLog:
    """The log of one worker process: a queue, a writer thread, and reads for feedback and the review queue.

    Args:
        path: the SQLite file (created with its schema).
        days: retention; older rows are deleted.
        queue_rows: searches waiting at most; more are dropped (counted) rather than slowing searches.
        flush_seconds: how long the writer waits for a row before looking at the retention again.
        gather_seconds, batch_rows: after the first row, the writer gathers for this long (or this many rows) and
            writes them in one transaction: what a SIGKILL of the worker can lose.
        observer: called with ``(outcome, rows)`` for ``written``, ``dropped`` and ``failed`` (metrics).
        max_mb: the most the database's content may hold, in megabytes (``FAQ_QUERY_LOG_MAX_MB``; None: no bound):
            past it the oldest rows are deleted first.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        days: float = 30,
        queue_rows: int = 10_000,
        flush_seconds: float = 0.2,
        gather_seconds: float = 0.05,
        batch_rows: int = 256,
        observer: Callable[[str, int], None] | None = None,
        max_mb: float | None = 500,
    ):
        if not (isinstance(days, (int, float)) and 0 < days <= MAX_DAYS):  # NaN and infinity fail too
            raise ValueError(f"FAQ_QUERY_LOG_DAYS must be a number of days from 0 to {MAX_DAYS}, not {days!r}")
        if max_mb is not None and not (isinstance(max_mb, (int, float)) and 1 <= max_mb <= 10**7):
            raise ValueError(f"FAQ_QUERY_LOG_MAX_MB must be a number of megabytes from 1 to 10000000, not {max_mb!r}")
        self.max_bytes = int(max_mb * 2**20) if max_mb is not None else None
        self.path = Path(path)
        self.days = float(days)
        self.flush_seconds = flush_seconds
        self.gather_seconds = gather_seconds
        self.batch_rows = batch_rows
        self.observer = observer
        self._queue: queue.Queue = queue.Queue(maxsize=queue_rows)
        # Rows queued (their tickets, in queue order) and rows the writer is done with: ``flush`` waits for the
        # rows queued before it, not for an empty queue (never, under steady traffic).
        self._tickets = itertools.count(1)
        self._last_ticket = 0
        self._finished = 0
        self._thread: threading.Thread | None = None
        self._started_lock = threading.Lock()
        self._stop = threading.Event()
        self.counts = {"written": 0, "dropped": 0, "failed": 0}
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_purge: dict | None = None
        self._inode: int | None = None  # the file the writer's connection has open
        self._salt: bytes | None = None  # of the clients' hashes, kept in the database (``meta.client_salt``)
        self._next_size_check = 0.0
        self.size_deleted = 0

    def start(self) -> None:
        """Create the database's tables now (an error is logged and shows in ``status``; searches go on), then
        start the writer, which purges old rows first."""
        try:
            connect(self.path, create=True).close()
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc, "opening")
        self._ensure_writer()

    # ---- the request path ----

    def record(self, request_id: str, query: str, outcome: dict, client: str | None = None) -> None:
        """Queue one search (``outcome`` is its response dict; ``client`` who asked, hashed before it is written);
        never blocks, never raises."""
        self._enqueue(("search", time.time(), request_id, query, outcome, client))

    def record_feedback(
        self,
        request_id: str,
        query_key: str,
        faq_id: str,
        helpful: bool,
        index_id: str | None,
        client: str | None = None,
    ) -> None:
        """Queue one feedback row (written like searches)."""
        self._enqueue(("feedback", time.time(), request_id, query_key, faq_id, helpful, index_id, client))

    def _enqueue(self, row: tuple) -> None:
        """Put a row on the writer's queue; a full queue or a closed log drops it (counted), never waits or raises."""
        if self._stop.is_set():  # closed: no writer will take it
            self._count("dropped", 1)
            return
        try:
            self._ensure_writer()
            self._queue.put_nowait(row)
            self._last_ticket = next(self._tickets)
        except queue.Full:
            self._count("dropped", 1)
        except Exception:  # a search must never fail because of its log
            log.exception("query log: could not queue a row")
            self._count("dropped", 1)

    def feedback(
        self, request_id: str, faq_id: str, helpful: bool, index_id: str | None, client: str | None = None
    ) -> LoggedSearch:
        """Record whether ``faq_id`` helped for the search ``request_id``; returns that search.

        Waits up to ``FEEDBACK_WAIT_SECONDS`` for the search to reach the database (the writers of every worker
        flush every ``flush_seconds``). A batch has several searches under one id: the one that returned the
        entry is judged; an entry none of them returned (in its first ``LOGGED_RESULTS``) is refused.

        Raises:
            NotFound: ``unknown_request``: no search with this id in the log (unknown, or past the retention);
                ``unknown_entry``: the entry was not among that search's results.
            QueryLogUnavailable: the database cannot be read.
        """
        deadline = time.monotonic() + FEEDBACK_WAIT_SECONDS
        while True:
            try:
                searches = self.searches_of_request(request_id)
            except sqlite3.Error as exc:
                raise QueryLogUnavailable(f"the query log cannot be read: {exc}") from None
            if searches or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if not searches:
            raise NotFound(
                f"no logged search with request id {request_id!r} (unknown, or older than the log's retention)",
                code=ErrorCode.UNKNOWN_REQUEST,
                field="request_id",
            )
        # Of the searches under this id (a batch, or a reused id), the one that ranked the entry highest.
        ranked = [
            (ids.index(faq_id), n, s) for n, s in enumerate(searches) if faq_id in (ids := [f for f, _ in s.results])
        ]
        if not ranked:  # feedback judges what the user was shown, nothing else
            raise NotFound(
                f"entry {faq_id!r} was not among the results of search {request_id!r}",
                code=ErrorCode.UNKNOWN_ENTRY,
                field="faq_id",
            )
        search = min(ranked, key=lambda r: r[:2])[2]
        self.record_feedback(request_id, search.query_key, faq_id, helpful, index_id, client)
        return search

    # ---- the writer ----

    def _ensure_writer(self) -> None:
        if self._thread is not None:
            return
        with self._started_lock:  # started in the worker on first use, never before a fork
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="faq-query-log", daemon=True)
                self._thread.start()

    def _count(self, outcome: str, rows: int) -> None:
        self.counts[outcome] += rows
        if self.observer is not None:
            self.observer(outcome, rows)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        retry_at = 0.0
        next_purge = 0.0
        first = True
        while True:
            batch = [] if first else self._take_batch()  # the first turn opens and purges before any row comes
            taken = batch
            first = False
            if not batch and self._stop.is_set():
                break
            if conn is not None and self._replaced():  # deleted or rotated under us: write to the new file
                log.warning("query log: %s was removed or replaced; opening it again", self.path.name)
                conn.close()
                conn = None
            if conn is None and time.monotonic() >= retry_at:
                conn = self._open()
                if conn is None:
                    retry_at = time.monotonic() + RETRY_SECONDS
            if conn is None:
                if batch:
                    self._count("failed", len(batch))
                self._done(taken)
                continue
            try:
                if batch:
                    self._write(conn, batch)
                    self._count("written", len(batch))
                    self.last_error = None  # written again: the database is fine now
                batch = []  # from here on, an error is the purge's: no row is lost by it
                if time.monotonic() >= next_purge:
                    next_purge = time.monotonic() + PURGE_EVERY_SECONDS
                    self.purge(conn)
                if self.max_bytes is not None and time.monotonic() >= self._next_size_check:
                    self._next_size_check = time.monotonic() + SIZE_CHECK_SECONDS
                    self.size_deleted += _blocking(_bound_size, conn, self.max_bytes)
            except sqlite3.Error as exc:
                self._failed(exc, "writing")
                self._count("failed", len(batch))
                conn.close()
                conn, retry_at = None, time.monotonic() + RETRY_SECONDS
            except Exception as exc:  # the writer outlives any row
                log.exception("query log: unexpected error; %d rows not written", len(batch))
                self._failed(exc, "writing")
                self._count("failed", len(batch))
            self._done(taken)
        if conn is not None:
            conn.close()

    def _done(self, batch: list) -> None:
        for _ in batch:
            self._queue.task_done()
        self._finished += len(batch)  # the writer alone counts these

    def _take_batch(self) -> list[tuple]:
        """The rows to write next: waits up to ``flush_seconds`` for one, then gathers what comes within
        ``gather_seconds`` more (one commit for many rows under load), at most ``batch_rows``."""
        try:
            batch = [self._queue.get(timeout=self.flush_seconds)]
        except queue.Empty:
            return []
        if not self._stop.is_set():
            time.sleep(self.gather_seconds)  # one wake-up per batch, not one per row
        while len(batch) < self.batch_rows:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _replaced(self) -> bool:
        try:
            return os.stat(self.path).st_ino != self._inode
        except OSError:
            return True

    def _open(self) -> sqlite3.Connection | None:
        try:
            conn = _blocking(connect, self.path, 2.0, True)
            self._inode = os.stat(self.path).st_ino
            return conn
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc, "opening")
            return None

    def _failed(self, exc: BaseException, doing: str) -> None:
        message = f"{doing} {self.path.name}: {type(exc).__name__}: {exc}"
        if message != self.last_error or time.time() - (self.last_error_at or 0) > 60:
            log.error("query log: %s (searches go on; these rows are not kept)", message)
        self.last_error, self.last_error_at = message, time.time()

    def _write(self, conn: sqlite3.Connection, batch: list[tuple]) -> None:
        """Redact and write one batch in one transaction, both off the event loop under gevent (a native thread)."""
        if self._salt is None:
            self._salt = _blocking(_client_salt, conn)
        _blocking(_redact_and_commit, conn, batch, self._salt)

    def purge(self, conn: sqlite3.Connection | None = None, now: float | None = None) -> dict:
        """Delete what is older than the retention; returns how many rows of each table went."""
        cutoff = (now if now is not None else time.time()) - self.days * 86400
        if conn is None:
            with closing(connect(self.path, create=True)) as own:
                deleted = _blocking(_delete_before, own, cutoff)
        else:
            deleted = _blocking(_delete_before, conn, cutoff)
        self.last_purge = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "deleted": deleted}
        return deleted

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every row queued before this call is written or failed (the review loop reads after it; rows
        queued meanwhile are not waited for); False if not within ``timeout``."""
        # Polled rather than waited on: under gunicorn's gevent workers the queue is gevent's, which has no
        # ``all_tasks_done`` condition; its sleep yields to the writer.
        deadline = time.monotonic() + timeout
        target = self._last_ticket
        while self._finished < target:
            if time.monotonic() >= deadline:
                return False
            time.sleep(FLUSH_POLL_SECONDS)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the writer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> dict:
        """For ``/health``: on, what was written, dropped or failed, what is waiting, the last error."""
        return {
            "enabled": True,
            "file": self.path.name,
            "retention_days": self.days,
            "pending": self._queue.qsize(),
            **self.counts,
            "state": "ok" if self.last_error is None else "error",
            "last_error": self.last_error,
            "last_purge": self.last_purge,
            "max_mb": round(self.max_bytes / 2**20, 1) if self.max_bytes is not None else None,
            "deleted_for_size": self.size_deleted,
        }

    # ---- reads (feedback, the review queue, gaps) ----

    @off_loop
    def searches_of_request(self, request_id: str) -> list[LoggedSearch]:
        """The logged searches of one request id (several for a batch), newest first.

        Raises:
            sqlite3.Error: the database cannot be read.
        """
        with closing(connect(self.path)) as conn:
            rows = conn.execute(
                "SELECT ts, request_id, query, query_key, index_id, answered, reason, results FROM searches "
                "WHERE request_id = ? ORDER BY ts DESC LIMIT 64",
                (request_id,),
            ).fetchall()
        return [_logged(row) for row in rows]


def _delete_before(conn: sqlite3.Connection, cutoff: float) -> dict[str, int]:
    return {
        table: conn.execute(f"DELETE FROM {table} WHERE ts < ?", (cutoff,)).rowcount  # noqa: S608
        for table in ("searches", "feedback", "vectors")
    }


def _client_salt(conn: sqlite3.Connection) -> bytes:
    """The secret that salts the clients' hashes, made once per database (a hash of an address without it is
    reversed by trying every address)."""
    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('client_salt', ?)", (secrets.token_hex(16),))
    return bytes.fromhex(conn.execute("SELECT value FROM meta WHERE key = 'client_salt'").fetchone()[0])


def _client_id(salt: bytes, client: str | None) -> str | None:
    return hmac.new(salt, client.encode("utf-8", "replace"), "sha256").hexdigest()[:16] if client else None


def _redact_and_commit(conn: sqlite3.Connection, batch: list[tuple], salt: bytes) -> None:
    """Redact the batch's queries and insert its rows in one transaction (no gevent call here: it runs in a native
    thread; redaction is linear in a query's length, and the GIL is passed back to the event loop every few ms)."""
    searches, feedback = [], []
    for item in batch:
        if item[0] == "search":
            _, ts, request_id, query, outcome, client = item
            text = redact(query)
            results = [[r["faq_id"], round(float(r["score"]), 4)] for r in outcome["results"][:LOGGED_RESULTS]]
            reason = (outcome.get("reason") or {}).get("code")
            index_id = (outcome.get("index") or {}).get("id")
            answered = int(bool(outcome["answered"]))
            searches.append(
                (ts, request_id, text, query_key(text), index_id, answered, reason, json.dumps(results),
                 _client_id(salt, client))
            )  # fmt: skip
        else:
            *row, client = item[1:]
            feedback.append((*row, _client_id(salt, client)))
    _commit(conn, searches, feedback)


def _bound_size(conn: sqlite3.Connection, max_bytes: int) -> int:
    """Delete the oldest rows while the database's content is over ``max_bytes`` (a tenth of the rows at a time,
    down to nine tenths of the bound); returns how many searches went."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]

    def used() -> int:
        pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
        return pages * page_size

    deleted = 0
    for _ in range(20):
        if used() <= (max_bytes if deleted == 0 else int(max_bytes * 0.9)):
            break
        rows = conn.execute("SELECT COUNT(*) FROM searches").fetchone()[0]
        if rows == 0:
            break
        cutoff = conn.execute(
            "SELECT ts FROM searches ORDER BY ts LIMIT 1 OFFSET ?", (max(1, rows // 10) - 1,)
        ).fetchone()[0]
        deleted += _delete_before(conn, cutoff + 1e-6)["searches"]
    if deleted:
        conn.execute("PRAGMA incremental_vacuum")  # the freed pages back to the filesystem (a file made since)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # and the write-ahead log, which grew with the deletions
        log.warning("query log: over its size bound; the %d oldest searches were deleted", deleted)
    return deleted


def _commit(conn: sqlite3.Connection, searches: list[tuple], feedback: list[tuple]) -> None:
    """Insert the rows in one transaction (plain sqlite3 only: it may run in a native thread under gevent)."""
    conn.execute("BEGIN")
    try:
        conn.executemany(
            "INSERT INTO searches (ts, request_id, query, query_key, index_id, answered, reason, results, client) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            searches,
        )
        conn.executemany(
            "INSERT INTO feedback (ts, request_id, query_key, faq_id, helpful, index_id, client) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            feedback,
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _logged(row: tuple) -> LoggedSearch:
    ts, request_id, query, key, index_id, answered, reason, results = row
    return LoggedSearch(
        ts, request_id, query, key, index_id, bool(answered), reason, [(f, s) for f, s in json.loads(results)]
    )


@dataclass
class QueryStats:
    """One distinct query (by ``query_key``) over the log's window: how often asked, answered, found unhelpful.

    Counts are of clients and days, not of rows: one client asking the same query a hundred times in a day, or
    saying "not helpful" a hundred times, counts once (``CLIENT_PERIOD_SECONDS``; rows without a client, from
    before clients were counted, count one each).
    """

    key: str
    text: str  # its latest wording
    first_seen: float
    last_seen: float
    asked: int = 0
    unanswered: int = 0
    not_helpful: int = 0
    reasons: Counter = field(default_factory=Counter)
    shown: Counter = field(default_factory=Counter)  # the entry given first, and how often
    not_helpful_entries: Counter = field(default_factory=Counter)
    #: The (client, day) pairs behind each count, so that a group of wordings counts a client once too.
    units: dict = field(default_factory=dict, repr=False, compare=False)


def count_units(stats: list[QueryStats]) -> dict:
    """The counts of several queries taken together (a group): each client once a day, whatever wording it used."""

    def union(name: str) -> set:
        return set().union(*(s.units.get(name, set()) for s in stats))

    def by_key(name: str) -> Counter:
        merged: dict[str, set] = {}
        for s in stats:
            for key, units in s.units.get(name, {}).items():
                merged.setdefault(key, set()).update(units)
        return Counter({key: len(units) for key, units in merged.items()})

    return {
        "asked": len(union("asked")),
        "unanswered": len(union("unanswered")),
        "not_helpful": len(union("not_helpful")),
        "reasons": by_key("reasons"),
        "shown": by_key("shown"),
        "not_helpful_entries": by_key("entries"),
    }


class _Tally:
    """Distinct (client, day) pairs per query, turned into ``QueryStats`` counts."""

    def __init__(self, key: str, text: str, ts: float):
        self.stats = QueryStats(key, text, ts, ts)
        self.asked: set = set()
        self.unanswered: set = set()
        self.not_helpful: set = set()
        self.reasons: dict[str, set] = {}
        self.shown: dict[str, set] = {}
        self.entries: dict[str, set] = {}

    def done(self) -> QueryStats:
        s = self.stats
        s.asked, s.unanswered, s.not_helpful = len(self.asked), len(self.unanswered), len(self.not_helpful)
        s.reasons = Counter({k: len(v) for k, v in self.reasons.items()})
        s.shown = Counter({k: len(v) for k, v in self.shown.items()})
        s.not_helpful_entries = Counter({k: len(v) for k, v in self.entries.items()})
        s.units = {"asked": self.asked, "unanswered": self.unanswered, "not_helpful": self.not_helpful,
                   "reasons": self.reasons, "shown": self.shown, "entries": self.entries}  # fmt: skip
        return s


def _unit(client: str | None, row_id: int, ts: float, kind: str) -> tuple:
    """Who asked when: a client's repeats within one period are one."""
    return (client or f"{kind}:{row_id}", int(ts // CLIENT_PERIOD_SECONDS))


@off_loop
def query_stats(
    path: str | os.PathLike,
    since: float,
    limit: int = 500,
    skip_reason: str | None = None,
    exclude: frozenset[str] | set[str] = frozenset(),
    offset: int = 0,
) -> tuple[list[QueryStats], int]:
    """The distinct queries asked since ``since`` that went unanswered or got a "not helpful", most flagged first:
    the ``limit`` from ``offset`` on, and how many there are in all.

    A user's latest feedback on an entry of a search replaces their earlier one (a "non" clicked by mistake, then
    "oui"). ``skip_reason``: refusals with this reason code do not flag a query (the review queue leaves out what the
    owner already decided: ``known_non_answer``). ``exclude``: keys left out before the paging (those reviewed).
    An empty query (nothing visible once cleaned) is never listed.

    Raises:
        sqlite3.Error: the database cannot be read.
    """
    with closing(connect(path)) as conn:
        flagged = conn.execute(
            """
            SELECT query_key FROM searches WHERE ts >= :since AND answered = 0 AND reason IS NOT :skip AND query != ''
            UNION SELECT query_key FROM feedback f WHERE ts >= :since AND helpful = 0 AND id = (
                SELECT MAX(id) FROM feedback g WHERE g.request_id = f.request_id AND g.faq_id = f.faq_id)
            """,
            {"since": since, "skip": skip_reason},
        ).fetchall()
        keys = [k for (k,) in flagged if k not in exclude and k != EMPTY_KEY]  # no word in it: nothing to review
        tallies: dict[str, _Tally] = {}
        for chunk in _chunks(keys, 500):
            marks = ",".join("?" * len(chunk))
            for row_id, key, ts, query, answered, reason, results, client in conn.execute(
                f"SELECT id, query_key, ts, query, answered, reason, results, client FROM searches "  # noqa: S608
                f"WHERE ts >= ? AND query_key IN ({marks}) AND query != '' ORDER BY ts",
                (since, *chunk),
            ):
                t = tallies.get(key) or tallies.setdefault(key, _Tally(key, query, ts))
                t.stats.text, t.stats.last_seen = query, ts
                unit = _unit(client, row_id, ts, "search")
                t.asked.add(unit)
                if not answered and reason != skip_reason:
                    t.unanswered.add(unit)
                    t.reasons.setdefault(reason or "unknown", set()).add(unit)
                top = json.loads(results)
                if top:
                    t.shown.setdefault(top[0][0], set()).add(unit)
            for row_id, key, ts, faq_id, client in conn.execute(
                f"SELECT id, query_key, ts, faq_id, client FROM feedback f WHERE ts >= ? "  # noqa: S608
                f"AND query_key IN ({marks}) AND helpful = 0 "
                "AND id = (SELECT MAX(id) FROM feedback g WHERE g.request_id = f.request_id AND g.faq_id = f.faq_id)",
                (since, *chunk),
            ):
                if key in tallies:
                    unit = _unit(client, row_id, ts, "feedback")
                    tallies[key].not_helpful.add(unit)
                    tallies[key].entries.setdefault(faq_id, set()).add(unit)
    stats = [t.done() for t in tallies.values()]
    # The most flagged first; among equals, the most recent (a new question is never pushed out by old ones).
    ranked = sorted(stats, key=lambda s: (-(s.unanswered + s.not_helpful), -s.asked, -s.last_seen, s.key))
    return ranked[offset : offset + limit], len(ranked)


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@off_loop
def texts_of(path: str | os.PathLike, keys: list[str], since: float) -> dict[str, str]:
    """The latest logged wording of each of these query keys asked since ``since`` (absent: not in the log).

    Raises:
        sqlite3.Error: the database cannot be read.
    """
    out: dict[str, str] = {}
    with closing(connect(path)) as conn:
        for chunk in _chunks(keys, 500):
            marks = ",".join("?" * len(chunk))
            for key, query in conn.execute(
                f"SELECT query_key, query FROM searches WHERE ts >= ? AND query_key IN ({marks}) "  # noqa: S608
                "AND query != '' ORDER BY ts",
                (since, *chunk),
            ):
                out[key] = query
    return out


@off_loop
def cached_vectors(path: str | os.PathLike, keys: list[str], model: str) -> dict[str, bytes]:
    """Vectors of redacted queries already computed for the review queue, by key."""
    out: dict[str, bytes] = {}
    with closing(connect(path)) as conn:
        for chunk in _chunks(keys, 500):
            marks = ",".join("?" * len(chunk))
            out.update(
                conn.execute(
                    f"SELECT query_key, vector FROM vectors WHERE model = ? AND query_key IN ({marks})",  # noqa: S608
                    (model, *chunk),
                ).fetchall()
            )
    return out


@off_loop
def store_vectors(path: str | os.PathLike, rows: list[tuple[str, bytes]], model: str) -> None:
    """Keep the vectors just computed (a later listing of the queue does not encode them again)."""
    now = time.time()
    with closing(connect(path)) as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO vectors (query_key, model, ts, vector) VALUES (?, ?, ?, ?)",
            [(key, model, now, blob) for key, blob in rows],
        )

"""gunicorn settings for the service, from the environment (docs/performance.md, docs/reliability.md).

Defaults for a CPU-only machine: one worker process per core and the encoder limited to cores ÷ workers threads, so
workers do not fight over cores. With one encoder thread a worker (the default when there are as many workers as
cores), the master loads the ONNX encoder before forking and the workers share it copy-on-write (ONNX Runtime makes
no thread pool for one thread, so nothing is lost at the fork); otherwise each worker loads its own after the fork
(thread pools do not survive a fork) and the master only preloads the tokenizer.

Connections are cheap: gevent workers hold each connection in a greenlet, so clients that send their request
slowly (or never finish it) cost a socket each, not one of a few threads. With gthread workers, 4 connections
holding a half-sent request line took every thread of `make run` and every other client timed out
(docs/reliability.md has both measured). The encoding itself is CPU work that does not yield: the token budget
of a request (``FAQ_MAX_REQUEST_TOKENS``) bounds how long one search holds its worker.
"""

import json
import os
import signal
import sys
import tempfile

from gunicorn import util as _gunicorn_util
from gunicorn.glogging import Logger as _GunicornLogger

from service.errors import HTTP_STATUS_CODES, error_body
from service.http.log_scrub import scrub_request_text

_cores = os.cpu_count() or 1
_port = os.environ.get("FAQ_PORT", "8000")
bind = f"{os.environ.get('FAQ_HOST', '127.0.0.1')}:{_port}"
workers = int(os.environ.get("FAQ_WORKERS", _cores))
worker_class = os.environ.get("FAQ_WORKER_CLASS", "gevent")
worker_connections = int(os.environ.get("FAQ_WORKER_CONNECTIONS", 1000))  # open connections per gevent worker
threads = int(os.environ.get("FAQ_THREADS", 2))  # gthread workers only
# A GET /search of 1,000 accented characters is about 6,000 bytes of request line once percent-encoded.
limit_request_line = 8190
# One control socket per instance (gunicorn's default, ~/.gunicorn/gunicorn.ctl, is shared by every instance of a
# user: stopping one removed the others').
control_socket = os.environ.get("FAQ_CONTROL_SOCKET") or os.path.join(
    tempfile.gettempdir(), f"faq-gunicorn-{os.getuid()}-{_port}.ctl"
)
preload_app = False
timeout = int(os.environ.get("FAQ_WORKER_TIMEOUT", 120))  # model loading takes several seconds
graceful_timeout = 30
accesslog = os.environ.get("FAQ_ACCESS_LOG") or None  # the app logs one JSON line per request already
# The access log, when on, without the query string (%(U)s is the path alone), the referrer, the user agent or a basic
# authentication's user name: what users type, and who they are, stays out of it.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s'
loglevel = os.environ.get("FAQ_LOG_LEVEL", "info").lower()
encoder_threads = int(
    os.environ.get("FAQ_ENCODER_THREADS") or os.environ.get("FAQ_TORCH_THREADS") or max(1, _cores // workers)
)


#: Whether the master imported ONNX Runtime before forking (the workers inherit the flag: see worker_exit).
_master_state = {"onnxruntime": False}


def _preload_model() -> None:
    """The model's ONNX encoder loaded in the master, so that the workers share it (``preload_encoder``: the session
    and the tokenizer, when the workers' encoders run on one thread), else its tokenizer alone (``preload_tokenizer``);
    nothing for the torch encoder, which has its own. ``FAQ_PRELOAD_ENCODER=0`` and ``FAQ_PRELOAD_TOKENIZER=0`` turn
    each off. Records whether the master now holds ONNX Runtime (``worker_exit``)."""
    try:
        if os.environ.get("FAQ_BACKEND") == "torch":
            return
        from service.config import DEFAULTS, config_from_env
        from service.encoders.loading import resolve_backend
        from service.indexing.store import read_manifest
        from service.search.loading import encoder_for

        config = {**DEFAULTS, **config_from_env()}
        # The encoder a worker will load for the index it serves (its fine-tune, the backend that made its vectors).
        model, backend = encoder_for(config, read_manifest(config["FAQ_INDEX"]))
        backend = resolve_backend(model, backend)
        if backend == "torch":
            return
        if os.environ.get("FAQ_PRELOAD_ENCODER", "1") != "0" and encoder_threads == 1:
            from service.encoders.onnx_encoder import preload_encoder

            os.environ["FAQ_ENCODER_THREADS"] = str(encoder_threads)  # as each worker will have it (post_fork)
            if preload_encoder(model, backend):
                return
        if os.environ.get("FAQ_PRELOAD_TOKENIZER", "1") != "0":
            from service.encoders.tokenizer import preload_tokenizer

            preload_tokenizer(model)
    except Exception as exc:  # each worker then loads its own: more memory, nothing else
        print(f"warning: the model was not preloaded ({type(exc).__name__}: {exc})")
    finally:
        _master_state["onnxruntime"] = "onnxruntime" in sys.modules


def on_starting(server):
    """In the master, before the first workers are forked."""
    _preload_model()


def on_reload(server):
    """In the master, on SIGHUP (its graceful restart of every worker): the model's files may have changed."""
    _preload_model()


def post_fork(server, worker):
    """Limit the encoder's threads in each worker before the model is loaded (``encoders.base.encoder_threads``),
    and keep SIGHUP ignored while the worker boots.

    gunicorn's ``init_signals`` resets SIGHUP to its default (terminate the process) before the app is loaded; a
    sibling's reload signal (an admin or review rebuild) would then kill a worker still loading its model ("Worker
    was sent SIGHUP!"). The booting worker loads the current build anyway, and ``post_worker_init`` catches up with
    a build published meanwhile.
    """
    os.environ["FAQ_ENCODER_THREADS"] = str(encoder_threads)
    init_signals = worker.init_signals

    def init_signals_then_ignore_hup():
        init_signals()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    worker.init_signals = init_signals_then_ignore_hup


def post_worker_init(worker):
    """Reload the index in place on SIGHUP to this worker, let an admin reload reach the other workers, switch to a
    build published while this worker loaded, and start the learning loop's upkeep (with a query log).

    (SIGHUP to the master is gunicorn's own graceful restart of every worker, which also picks up a new index.)
    """
    from service.http.app import start_background

    app = worker.wsgi
    reloader = app.extensions["faq_reloader"]
    reloader.gunicorn_master = os.getppid()
    reloader.install_sighup()
    reloader.catch_up()
    start_background(app)


# Prometheus: each worker writes its samples under this directory and /metrics adds them up (a fresh directory per
# server start, so that the figures of a previous run never leak in).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="faq-metrics-")


def worker_exit(server, worker):
    """A worker stopping (restart, reload of the master, shutdown, or a failed boot) writes its queued query-log rows
    first. Then, when the master had imported ONNX Runtime (to preload the encoder), it leaves at once with its
    exit status (``os._exit``): ONNX Runtime's C++ destructors, run at a normal exit, wait on a condition variable
    of a thread that exists only in the master (ONNX Runtime starts one when it is imported), and a forked worker
    would hang there until gunicorn killed it (30 s per stop; a worker that failed to boot never told the master
    so, and the server went on without one)."""
    try:
        querylog = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("faq_query_log")
        if querylog is not None:
            querylog.close(timeout=5)
    finally:
        if _master_state["onnxruntime"]:
            import logging

            # Called from gunicorn's `finally` around the worker: the exception in flight is the worker's exit.
            leaving = sys.exc_info()[1]
            code = leaving.code if isinstance(leaving, SystemExit) else (1 if leaving is not None else 0)
            code = code if isinstance(code, int) else (0 if code is None else 1)
            logging.shutdown()
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os._exit(code)


def child_exit(server, worker):
    """Drop a dead worker's live gauges and its served index from /metrics."""
    from prometheus_client import multiprocess

    from service.http import served_index

    multiprocess.mark_process_dead(worker.pid)
    served_index.forget(worker.pid)


def _scrubbing(level: str):
    """gunicorn's logger method ``level``, its message passed through ``scrub_request_text`` first."""

    def method(self, msg, *args, **kwargs):
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = str(msg)
        getattr(_GunicornLogger, level)(self, scrub_request_text(text), **kwargs)

    return method


class ScrubbingLogger(_GunicornLogger):
    """gunicorn's logger, its messages about requests cut to the method and the path (``log_scrub``): a malformed
    request line is logged as it came, query string and all."""

    critical, error, warning = _scrubbing("critical"), _scrubbing("error"), _scrubbing("warning")
    info, debug, exception = _scrubbing("info"), _scrubbing("debug"), _scrubbing("exception")

    def log(self, lvl, msg, *args, **kwargs):
        super().log(lvl, scrub_request_text(str(msg) % args if args else str(msg)), **kwargs)


logger_class = ScrubbingLogger


def _write_json_error(sock, status_int, reason, mesg):
    """gunicorn's own error answers (a malformed request line, headers too large, a bad chunk size…) in the
    service's JSON error shape instead of gunicorn's HTML page."""
    code = HTTP_STATUS_CODES.get(status_int, "http_error")
    body = json.dumps(error_body(status_int, code, f"{reason}: {mesg}" if mesg else reason)).encode("utf-8")
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    _gunicorn_util.write_nonblock(sock, head.encode("latin-1") + body)


_gunicorn_util.write_error = _write_json_error


def pre_request(worker, req):
    """gevent workers: before each request, a short sleep that lets the event loop look at the other connections.

    Without it a keep-alive connection whose next request is already in the socket buffer is served again and
    again without yielding (a greenlet yields only when it would block), and the worker's other connections wait:
    at concurrency 4, p50 11 ms but p90 590 ms and p99 1.2 s; with it, 22, 24 and 33 ms (docs/reliability.md).
    ``gevent.sleep(0)`` is not enough: it resumes this greenlet before the loop polls for I/O. The first request of
    a connection came through the loop already and does not wait (the sleep costs about a millisecond).
    """
    if worker_class.startswith("gevent") and getattr(req, "req_number", 1) > 1:  # a kept-alive connection's next
        import gevent

        gevent.sleep(0.0002)

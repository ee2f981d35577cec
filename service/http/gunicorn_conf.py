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
import shutil
import signal
import sys
import tempfile

from gunicorn import util as _gunicorn_util
from gunicorn.glogging import Logger as _GunicornLogger

from service.errors import HTTP_STATUS_CODES, ErrorCode, error_body
from service.http.log_scrub import scrub_request_text
from service.settings import Settings, export, metrics_dir, set_metrics_dir

_settings = Settings.from_env()  # once, in the master (again when it reloads this file on SIGHUP)
_cores = os.cpu_count() or 1
bind = f"{_settings.host}:{_settings.port}"
workers = _settings.workers or _cores
worker_class = _settings.worker_class
worker_connections = _settings.worker_connections  # open connections per gevent worker
threads = _settings.threads  # gthread workers only
# A GET /search of 1,000 accented characters is about 6,000 bytes of request line once percent-encoded.
limit_request_line = 8190
# One control socket per instance (gunicorn's default, ~/.gunicorn/gunicorn.ctl, is shared by every instance of a
# user: stopping one removed the others').
control_socket = _settings.control_socket or os.path.join(
    tempfile.gettempdir(), f"faq-gunicorn-{os.getuid()}-{_settings.port}.ctl"
)
preload_app = False
timeout = _settings.worker_timeout  # model loading takes several seconds
graceful_timeout = 30
accesslog = _settings.access_log  # the app logs one JSON line per request already
# The access log, when on, without the query string (%(U)s is the path alone), the referrer, the user agent or a basic
# authentication's user name: what users type, and who they are, stays out of it.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s'
loglevel = _settings.log_level.lower()
encoder_threads = _settings.encoder_threads or max(1, _cores // workers)


#: Whether the master imported ONNX Runtime before forking (the workers inherit the flag: see worker_exit).
_master_state = {"onnxruntime": False}


def _preload_model() -> None:
    """The model's ONNX encoder loaded in the master, so that the workers share it (``preload_encoder``: the session
    and the tokenizer, when the workers' encoders run on one thread), else its tokenizer alone (``preload_tokenizer``);
    nothing for the torch encoder, which has its own. ``FAQ_PRELOAD_ENCODER=0`` and ``FAQ_PRELOAD_TOKENIZER=0`` turn
    each off. Records whether the master now holds ONNX Runtime (``worker_exit``)."""
    try:
        if _settings.backend == "torch":
            return
        from service.core.faq_config import faq_specs
        from service.encoders.loading import resolve_backend
        from service.indexing.store import read_manifest
        from service.search.engine_loading import encoder_for

        # The encoder a worker will load for the index it serves (its fine-tune, the backend that made its vectors);
        # with several FAQs, the default FAQ's (those built with the same model share it).
        index = faq_specs(_settings, check_indexes=False)[0].index
        model, backend = encoder_for(_settings, read_manifest(index))
        backend = resolve_backend(model, backend)
        if backend == "torch":
            return
        if _settings.preload_encoder and encoder_threads == 1:
            from service.encoders.onnx_encoder import preload_encoder

            export(encoder_threads=encoder_threads)  # as each worker will have it (post_fork)
            if preload_encoder(model, backend):
                return
        if _settings.preload_tokenizer:
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
    export(encoder_threads=encoder_threads)
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
    catalog = worker.wsgi.extensions["faqs"]
    catalog.set_gunicorn_master(os.getppid())
    catalog.install_sighup()
    catalog.catch_up()
    catalog.start_background()


# Prometheus: each worker writes its samples under this directory and /metrics adds them up (a fresh directory per
# server start, so that the figures of a previous run never leak in; removed when the server stops).
METRICS_PREFIX = "faq-metrics-"


def _remove_orphan_metrics_dirs() -> None:
    """Metrics directories whose master is gone without removing its own (killed: ``on_exit`` never ran); each is
    named after its master's pid, and only this user's are looked at."""
    import glob

    from service.processes import alive

    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{METRICS_PREFIX}*-*")):
        owner = os.path.basename(path)[len(METRICS_PREFIX) :].split("-", 1)[0]
        try:
            mine = os.stat(path).st_uid == os.getuid()
        except OSError:
            continue
        if mine and owner.isdigit() and not alive(int(owner)):
            shutil.rmtree(path, ignore_errors=True)


if not metrics_dir():
    _remove_orphan_metrics_dirs()
    set_metrics_dir(tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-"))
# Ours to remove when the master exits (this file is read again on SIGHUP: the directory is the environment's then).
_made_metrics_dir = metrics_dir() if os.path.basename(metrics_dir()).startswith(METRICS_PREFIX) else None


def on_exit(server):
    """The master stops: the metrics directory it made goes with it."""
    if _made_metrics_dir:
        shutil.rmtree(_made_metrics_dir, ignore_errors=True)


def worker_exit(server, worker):
    """A worker stopping (restart, reload of the master, shutdown, or a failed boot) writes its queued query-log rows
    first. Then, when the master had imported ONNX Runtime (to preload the encoder), it leaves at once with its
    exit status (``os._exit``): ONNX Runtime's C++ destructors, run at a normal exit, wait on a condition variable
    of a thread that exists only in the master (ONNX Runtime starts one when it is imported), and a forked worker
    would hang there until gunicorn killed it (30 s per stop; a worker that failed to boot never told the master
    so, and the server went on without one)."""
    try:
        catalog = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("faqs")
        for service in catalog.services.values() if catalog is not None else ():
            if service.query_log is not None:
                service.query_log.close(timeout=5)
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
    code = HTTP_STATUS_CODES.get(status_int, ErrorCode.HTTP_ERROR)
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

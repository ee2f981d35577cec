"""gunicorn settings for the service, from the environment (docs/performance.md).

Defaults for a CPU-only machine: one worker process per core, each with its own copy of the model (loaded after
the fork: neither torch nor ONNX Runtime thread pools survive a fork) and the encoder limited to cores ÷ workers
threads, so workers do not fight over cores; a few threads per worker overlap network I/O with encoding.
"""

import os
import tempfile

_cores = os.cpu_count() or 1
bind = f"{os.environ.get('FAQ_HOST', '127.0.0.1')}:{os.environ.get('FAQ_PORT', '8000')}"
workers = int(os.environ.get("FAQ_WORKERS", _cores))
threads = int(os.environ.get("FAQ_THREADS", 2))
worker_class = "gthread"
preload_app = False
timeout = int(os.environ.get("FAQ_WORKER_TIMEOUT", 120))  # model loading takes several seconds
graceful_timeout = 30
accesslog = os.environ.get("FAQ_ACCESS_LOG") or None  # the app logs one JSON line per request already
loglevel = os.environ.get("FAQ_LOG_LEVEL", "info").lower()
encoder_threads = int(
    os.environ.get("FAQ_ENCODER_THREADS") or os.environ.get("FAQ_TORCH_THREADS") or max(1, _cores // workers)
)


def post_fork(server, worker):
    """Limit the encoder's threads in each worker before the model is loaded (``embedder.encoder_threads``)."""
    os.environ["FAQ_ENCODER_THREADS"] = str(encoder_threads)


def post_worker_init(worker):
    """Reload the index in place on SIGHUP to this worker, and let an admin reload reach the other workers.

    (SIGHUP to the master is gunicorn's own graceful restart of every worker, which also picks up a new index.)
    """
    reloader = worker.wsgi.extensions["faq_reloader"]
    reloader.gunicorn_master = os.getppid()
    reloader.install_sighup()


# Prometheus: each worker writes its samples under this directory and /metrics adds them up (a fresh directory per
# server start, so that the figures of a previous run never leak in).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="faq-metrics-")


def child_exit(server, worker):
    """Drop a dead worker's live gauges from /metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)

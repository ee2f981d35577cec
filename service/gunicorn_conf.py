"""gunicorn settings for the service, from the environment (see the README, "Performance").

Defaults for a CPU-only machine: one worker process per core, each with its own copy of the model (loaded after
the fork: torch does not share well across fork) and torch limited to one thread, so workers do not fight over
cores; a few threads per worker overlap network I/O with encoding.
"""

import os

_cores = os.cpu_count() or 1
bind = f"{os.environ.get('FAQ_HOST', '127.0.0.1')}:{os.environ.get('FAQ_PORT', '8000')}"
workers = int(os.environ.get("FAQ_WORKERS", _cores))
threads = int(os.environ.get("FAQ_THREADS", 2))
worker_class = "gthread"
preload_app = False
timeout = int(os.environ.get("FAQ_WORKER_TIMEOUT", 120))  # model loading takes several seconds
graceful_timeout = 30
accesslog = os.environ.get("FAQ_ACCESS_LOG") or None
loglevel = os.environ.get("FAQ_LOG_LEVEL", "info").lower()
torch_threads = int(os.environ.get("FAQ_TORCH_THREADS", max(1, _cores // workers)))


def post_fork(server, worker):
    """Limit torch's threads in each worker before the model is loaded."""
    import torch

    torch.set_num_threads(torch_threads)
    torch.set_num_interop_threads(1)

"""Serve the search API: gunicorn with the service's settings (production), or ``--dev``, Flask's own server in
this process. Either loads the model and the index once, at start-up."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..config import GUNICORN_ARGS


def main(argv: list[str] | None = None, prog: str = "faq-search serve", dev_only: bool = False) -> int:
    """Parse options into the ``FAQ_*`` environment, then become gunicorn (or run the development server).

    Args:
        dev_only: ``python -m service``: always the development server, without the production options.
    """
    description = "The development server, in one process (production: faq-search serve)." if dev_only else __doc__
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--host",
        default=os.environ.get("FAQ_HOST", "127.0.0.1"),
        help="address to listen on (env FAQ_HOST, default 127.0.0.1)",
    )
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("FAQ_PORT", "8000")), help="port (env FAQ_PORT, default 8000)"
    )
    parser.add_argument("--index", default=None, help="index directory (env FAQ_INDEX, default index/)")
    parser.add_argument(
        "--corpus",
        default=None,
        help="the corpus the index is built from: the review queue writes its decisions beside it and rebuilds from "
        "it (env FAQ_CORPUS, default corpus/chorus_pro_faq.jsonl)",
    )
    parser.add_argument("--model", default=None, help="model directory or sentence-transformers name (env FAQ_MODEL)")
    parser.add_argument(
        "--watch-seconds",
        type=float,
        default=None,
        help="switch to a new build of the index within this many seconds (env FAQ_WATCH_SECONDS; 0: off, the "
        "default; `make run` uses 5)",
    )
    if not dev_only:
        parser.add_argument(
            "--workers", type=int, default=None, help="worker processes (env FAQ_WORKERS; default: cores)"
        )
        parser.add_argument("--dev", action="store_true", help="Flask's development server, in this process")
    args = parser.parse_args(argv)
    args.dev = dev_only or args.dev
    args.workers = None if dev_only else args.workers
    options = {
        "FAQ_HOST": args.host,
        "FAQ_PORT": args.port,
        "FAQ_INDEX": args.index,
        "FAQ_CORPUS": args.corpus,
        "FAQ_MODEL": args.model,
        "FAQ_WORKERS": args.workers,
        "FAQ_WATCH_SECONDS": args.watch_seconds,
    }
    os.environ.update({name: str(value) for name, value in options.items() if value is not None})
    if args.dev:
        return _dev_server(args.host, args.port)
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", *GUNICORN_ARGS])
    return 0  # not reached: execv replaces this process


def _dev_server(host: str, port: int) -> int:
    """Flask's threaded server (``http.devserver``); 2 with the reason on stderr when no index can be served."""
    logging.basicConfig(
        level=os.environ.get("FAQ_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from ..http.devserver import serve

    failure = serve(host, port)
    if failure is not None:
        print(f"error: {failure}", file=sys.stderr)
        return 2
    return 0

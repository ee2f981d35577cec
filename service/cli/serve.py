"""Serve the search API: gunicorn with the service's settings (production), or ``--dev``, Flask's own server in
this process. Either loads the model and the index once, at start-up."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..core.faq_config import FaqConfigError, faq_specs, parse_faq_option
from ..settings import GUNICORN_ARGS, Settings, export
from . import settings_or_exit


def main(argv: list[str] | None = None, prog: str = "faq-search serve", dev_only: bool = False) -> int:
    """Parse options into the ``FAQ_*`` environment, then become gunicorn (or run the development server).

    Args:
        dev_only: ``python -m service``: always the development server, without the production options.
    """
    defaults = settings_or_exit()
    description = (
        "The development server, in one process (production: faq-search serve)."
        if dev_only
        else __doc__.replace("``", "`")
    )
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--host", default=defaults.host, help=f"address to listen on (env FAQ_HOST, default {defaults.host})"
    )
    parser.add_argument("--port", type=int, default=defaults.port, help=f"port (env FAQ_PORT, default {defaults.port})")
    parser.add_argument("--index", default=None, help="index directory (env FAQ_INDEX, default index/)")
    parser.add_argument(
        "--corpus",
        default=None,
        help="the corpus the index is built from: the review queue writes its decisions beside it and rebuilds from "
        "it (env FAQ_CORPUS, default corpus/chorus_pro_faq.jsonl)",
    )
    parser.add_argument("--model", default=None, help="model directory or sentence-transformers name (env FAQ_MODEL)")
    parser.add_argument(
        "--config",
        default=None,
        help="a TOML file of the FAQs to serve, each under its name (env FAQ_CONFIG; docs/faqs.md); --index and "
        "--corpus are then not served",
    )
    parser.add_argument(
        "--faq",
        action="append",
        default=[],
        metavar="NAME=INDEX_DIR",
        help="serve the index INDEX_DIR as the FAQ NAME (repeat for several; with --config, after its FAQs; the "
        "first FAQ is the default of the routes without a name)",
    )
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
    for option in args.faq:
        try:
            parse_faq_option(option)
            if "," in option:
                raise ValueError(f"--faq {option!r}: a comma in the name or the path (use --config for such a path)")
        except ValueError as exc:
            parser.error(str(exc))
    options = {
        "host": args.host,
        "port": args.port,
        "index": args.index,
        "corpus": args.corpus,
        "model": args.model,
        "workers": None if dev_only else args.workers,
        "watch_seconds": args.watch_seconds,
        "config": args.config,
        "faqs": ",".join(args.faq) or None,
    }
    settings = settings_or_exit(**options)  # checked here: a bad option is said before anything starts
    if settings.config or settings.faqs:
        try:
            specs = faq_specs(settings)  # every FAQ is checked before anything starts: all served, or none
        except FaqConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print("serving " + ", ".join(f"{s.name} ({s.index})" for s in specs) + f"; the default: {specs[0].name}",
              file=sys.stderr)  # fmt: skip
    if args.dev:
        return _dev_server(settings)
    export(**options)  # for gunicorn, which this process becomes
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", *GUNICORN_ARGS])
    return 0  # not reached: execv replaces this process


def _dev_server(settings: Settings) -> int:
    """Flask's threaded server (``http.devserver``); 2 with the reason on stderr when no index can be served."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ..http.devserver import serve

    failure = serve(settings)
    if failure is not None:
        print(f"error: {failure}", file=sys.stderr)
        return 2
    return 0

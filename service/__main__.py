"""``python -m service``: serve the search API (loads the model and the index once, at start-up)."""

from __future__ import annotations

import argparse
import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse options, build the app, serve; exit 2 with the reason when no index can be served."""
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("FAQ_HOST", "127.0.0.1"),
                        help="address to listen on (env FAQ_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("FAQ_PORT", "8000")),
                        help="port (env FAQ_PORT, default 8000)")
    parser.add_argument("--index", default=None, help="index directory (env FAQ_INDEX, default index/)")
    parser.add_argument("--model", default=None,
                        help="model directory or sentence-transformers name (env FAQ_MODEL)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("FAQ_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from . import create_app

    overrides = {k: v for k, v in (("FAQ_INDEX", args.index), ("FAQ_MODEL", args.model)) if v}
    app = create_app(overrides)
    if app.extensions["faq_engine"] is None:
        print(f"error: {app.extensions['faq_engine_failure'].message}", file=sys.stderr)
        return 2
    from werkzeug.serving import run_simple

    app.extensions["faq_reloader"].install_sighup()  # `kill -HUP <pid>` switches to a new index build

    logging.getLogger(__name__).info("serving on http://%s:%d", args.host, args.port)
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

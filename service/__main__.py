"""``python -m service``: the development server, in one process (the same as ``faq-search serve --dev``)."""

from __future__ import annotations

import sys

from .cli.serve import main as serve


def main(argv: list[str] | None = None) -> int:
    """``faq-search serve --dev`` with these arguments; exit 2 with the reason when no index can be served."""
    return serve(sys.argv[1:] if argv is None else argv, prog="python -m service", dev_only=True)


if __name__ == "__main__":
    sys.exit(main())

"""Publish a finished build to the index directory the replicas of a cluster serve from (docs/scaling.md).

    faq-search publish --index index --to /srv/faq/published
    faq-search publish --faq mairie --index my-faq/index --to /srv/faq/published    # a cluster of several FAQs

Checks the build, copies it, checks the copy, then swaps the published ``current``: every replica's watcher
(``FAQ_WATCH_SECONDS``) reloads it with the usual zero-downtime reload. Prints the published manifest's summary as
JSON; exits 1 with the reason when a check fails (the published index is then unchanged).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from service.cli import settings_or_exit
from service.core.faq_config import SLUG
from service.errors import ServiceError
from service.indexing.store import publish_index


def main(argv: list[str] | None = None) -> int:
    """Parse the options and publish."""
    settings = settings_or_exit()
    parser = argparse.ArgumentParser(
        description=__doc__.replace("``", "`"), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--index", default=str(settings.index),
        help="the index directory (or build) to publish (default: $FAQ_INDEX or index)",
    )  # fmt: skip
    parser.add_argument(
        "--to", default=settings.publish_dir, required=settings.publish_dir is None,
        help="the index directory every replica serves from (default: $FAQ_PUBLISH_DIR)",
    )  # fmt: skip
    parser.add_argument(
        "--faq", default=None, metavar="NAME",
        help="a cluster of several FAQs: publish this FAQ's build, into <to>/NAME (docs/faqs.md)",
    )  # fmt: skip
    parser.add_argument(
        "--new-model", action="store_true",
        help="publish a build of another model than the published one (after the replicas were started with it)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.faq is not None and not SLUG.fullmatch(args.faq):
        parser.error(f"--faq {args.faq!r} is not a FAQ's name (a slug: a-z, 0-9, - and _)")
    to = Path(args.to) / args.faq if args.faq else Path(args.to)
    try:
        manifest = publish_index(args.index, to, new_model=args.new_model)
    except ServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot publish into {to}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"published": manifest.index_id, "to": str(to), "counts": manifest.counts.to_dict()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

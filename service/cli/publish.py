"""Publish a finished build to the index directory the replicas of a cluster serve from (docs/scaling.md), or the
files a host without torch serves the model from (docs/model.md, "A serving host without torch").

    faq-search publish --index index --to /srv/faq/published
    faq-search publish --faq mairie --index my-faq/index --to /srv/faq/published    # a cluster of several FAQs
    faq-search publish --model models/multilingual-e5-small --to /srv/faq/model     # the model's serving files
    faq-search publish --check-model /srv/faq/model                                 # on the serving host

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
        "--model", metavar="DIR", default=None,
        help="publish this exported model's serving files (ONNX graphs and weights, tokenizer, configuration) to --to",
    )  # fmt: skip
    parser.add_argument(
        "--check-model", metavar="DIR", default=None,
        help="check a published model directory against its serving.json (sizes and SHA-256); exits 1 if it differs",
    )  # fmt: skip
    parser.add_argument(
        "--index", default=str(settings.index),
        help="the index directory (or build) to publish (default: $FAQ_INDEX or index)",
    )  # fmt: skip
    parser.add_argument(
        "--to", default=None,
        help="where to publish: the index directory every replica serves from (default: $FAQ_PUBLISH_DIR), or with "
        "--model the directory a serving host reads the model from (never defaulted)",
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
    if args.check_model is not None or args.model is not None:
        return _model(args, parser, argv or [])
    args.to = args.to or settings.publish_dir  # the cluster's index directory: for an index only, never a model
    if args.to is None:
        parser.error("--to (or FAQ_PUBLISH_DIR) is required")
    if args.faq is not None and not SLUG.fullmatch(args.faq):
        parser.error(f"--faq {args.faq!r} is not a FAQ's name (a slug: a-z, 0-9, - and _)")
    to = Path(args.to) / args.faq if args.faq else Path(args.to)
    manifest = _publishing(lambda: publish_index(args.index, to, new_model=args.new_model), to)
    if manifest is None:
        return 1
    print(json.dumps({"published": manifest.index_id, "to": str(to), "counts": manifest.counts.to_dict()}))
    return 0


def _model(args, parser, argv: list[str]) -> int:
    """``--model DIR --to DEST``: publish a model's serving files; ``--check-model DIR``: check a published one."""
    from service.encoders.serving_files import check_model, publish_model

    index_options = [o for o in ("--index", "--faq", "--new-model") if any(a.split("=")[0] == o for a in argv)]
    if args.model is not None and args.check_model is not None:
        parser.error("--model publishes and --check-model checks: one at a time")
    if index_options:
        parser.error(f"{', '.join(index_options)} publish an index: not with --model or --check-model")
    if args.check_model is not None:
        if not args.check_model:
            parser.error("--check-model needs the published model's directory")
        problems = check_model(args.check_model)
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if not problems:
            print(json.dumps({"model": args.check_model, "ok": True}))
        return 1 if problems else 0
    to = args.to
    if not to:  # given on the command line: FAQ_PUBLISH_DIR is the cluster's index directory, never the model's
        parser.error("--model needs --to: the directory the serving host reads the model from")
    listing = _publishing(lambda: publish_model(args.model, to), to)
    if listing is None:
        return 1
    size = sum(f["bytes"] for f in listing["files"].values())
    print(json.dumps({"published_model": args.model, "to": str(to), "files": len(listing["files"]),
                      "megabytes": round(size / 2**20, 1)}))  # fmt: skip
    return 0


def _publishing(call, to):
    """``call()``, or None after printing why it failed (a check that failed, or a destination not writable)."""
    try:
        return call()
    except ServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
    except OSError as exc:
        print(f"error: cannot publish into {to}: {exc}", file=sys.stderr)
    return None


if __name__ == "__main__":
    sys.exit(main())

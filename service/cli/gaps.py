"""The FAQ's missing questions from the query log: groups of unanswered (or unhelpful) queries, the most
failed first, then the most asked.

    faq-search gaps --log /var/lib/faq/queries.db            # JSON, as GET /admin/gaps
    faq-search gaps --log /var/lib/faq/queries.db --csv      # one row per group, for a spreadsheet

Reads the log (``FAQ_QUERY_LOG``) and the reviewed file next to the corpus; loads the model and the index to group
the queries by meaning and name the nearest entries. Only the log's cache of query vectors is written.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import sys
from pathlib import Path

from service.cli import settings_or_exit
from service.corpus import CorpusError
from service.errors import ServiceError
from service.learning import review_queue
from service.search.engine_loading import load_engine

CSV_COLUMNS = [
    "rank", "asked", "unanswered", "not_helpful", "queries", "first_seen", "last_seen", "example",
    "other_examples", "nearest_entry", "nearest_question", "nearest_score",
]  # fmt: skip


def _cell(value):
    """A cell a spreadsheet shows as text: users' words starting with ``= + - @`` (or a tab or carriage return)
    would otherwise run as a formula (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def write_csv(gaps: list[dict], out) -> None:
    """One row per group, in ``CSV_COLUMNS`` order (text cells guarded against formula injection)."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for rank, g in enumerate(gaps, start=1):
        nearest = g["suggested"][0] if g["suggested"] else {"faq_id": "", "question": "", "score": ""}
        writer.writerow(
            [_cell(value) for value in [
                rank, g["asked"], g["unanswered"], g["not_helpful"], g["queries"], g["first_seen"], g["last_seen"],
                g["examples"][0]["text"], " | ".join(e["text"] for e in g["examples"][1:]),
                nearest["faq_id"], nearest["question"], nearest["score"],
            ]]
        )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    settings = settings_or_exit()
    parser = argparse.ArgumentParser(
        description=__doc__.replace("``", "`"), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--log", default=settings.query_log, help="the query log (env FAQ_QUERY_LOG)")
    parser.add_argument(
        "--index", default=settings.index, help="the served index directory (env FAQ_INDEX, default index/)"
    )
    parser.add_argument("--corpus", default=settings.corpus, help="corpus whose reviewed file to read (env FAQ_CORPUS)")
    parser.add_argument("--days", type=float, default=settings.query_log_days, help="look back this many days")
    parser.add_argument("--limit", type=int, default=50, help="groups at most (default 50)")
    parser.add_argument("--csv", action="store_true", help="CSV on stdout instead of JSON")
    args = parser.parse_args(argv)
    if not args.log:
        parser.error("--log is required (or set FAQ_QUERY_LOG)")
    if not Path(args.log).is_file():
        print(f"error: no query log at {args.log}", file=sys.stderr)
        return 1
    if not (args.days > 0 and args.limit > 0):
        parser.error("--days and --limit must be positive")
    try:
        engine = load_engine(settings.model_copy(update={"index": Path(args.index)}))
        built_from = engine.index.manifest.corpus.file
        if built_from != Path(args.corpus).name:
            print(
                f"error: the index in {args.index} was built from {built_from!r}, not from {args.corpus}: pass the "
                "corpus it was built from with --corpus (its reviewed file says which queries are decided)",
                file=sys.stderr,
            )
            return 1
        source = review_queue.Source(os.fspath(args.log), str(args.corpus), engine)
        result = review_queue.gaps(source, args.days, args.limit)
    except ServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except (sqlite3.Error, CorpusError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.csv:
        write_csv(result["gaps"], sys.stdout)
    else:
        print(json.dumps(result, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

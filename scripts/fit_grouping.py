"""Choose the review queue's grouping distance on covid_quebec_fr: the questions of one answer are one need.

Prints, per average-linkage cut, how pure the groups are (homogeneity: a group holds one need), how whole
(completeness: a need is one group) and the adjusted Rand index, over simulated logs of 300 questions from 25
answers; writes the table to --out (JSON). A group that mixes two needs misleads the FAQ owner more than a need
split in two, so the cut favours homogeneity (``service/learning/grouping.py``; the function is
``service.evaluation.review_simulation.grouping_table``).
Usage: ``python scripts/fit_grouping.py [--data ../shared/data]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from service.encoders.loading import load_embedder
from service.evaluation.review_simulation import grouping_table
from service.settings import REPO_ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data"), help="evaluation data directory")
    parser.add_argument("--out", default="grouping.json", help="JSON file for the table (default grouping.json)")
    parser.add_argument("--draws", type=int, default=5, help="simulated logs per cut (default 5)")
    args = parser.parse_args(argv)
    if not (Path(args.data) / "covid_quebec_fr").is_dir():
        print(f"error: no covid_quebec_fr under {args.data}", file=sys.stderr)
        return 1
    table = grouping_table(args.data, load_embedder(None, "auto"), draws=args.draws)
    print(f"{'cut':>5} {'homog.':>7} {'compl.':>7} {'ARI':>6} {'groups':>7}  (25 needs per log)")
    for row in table:
        h, c, ari = row["homogeneity"], row["completeness"], row["ari"]
        print(f"{row['cut']:5.2f} {h:7.3f} {c:7.3f} {ari:6.3f} {row['groups']:7.1f}")
    Path(args.out).write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

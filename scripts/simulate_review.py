"""What the review queue is worth, simulated on covid_quebec_fr: approved alternative questions and known
non-answers as approvals accumulate (k = 0, 1, 2, 4, 8 per answer); prints two tables and writes them to --out.

The functions live in ``service/evaluation/review_simulation.py`` (docs/learning.md explains the protocol).
About a minute on two cores.
Usage: ``python scripts/simulate_review.py [--data ../shared/data] [--out review_simulation.json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from service.encoders.loading import load_embedder
from service.evaluation.methods import CachingEmbedder
from service.evaluation.review_simulation import alt_questions_curve, non_answers_curve
from service.settings import REPO_ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data"), help="evaluation data directory")
    parser.add_argument("--out", default="review_simulation.json", help="JSON file for both tables")
    parser.add_argument("--model", default=None, help="model directory (default: the converted e5)")
    args = parser.parse_args(argv)
    if not (Path(args.data) / "covid_quebec_fr").is_dir():
        print(f"error: no covid_quebec_fr under {args.data}", file=sys.stderr)
        return 1
    embedder = CachingEmbedder(load_embedder(args.model, "auto"))
    with tempfile.TemporaryDirectory(prefix="faq-review-sim-") as workdir:
        alts = alt_questions_curve(args.data, embedder, Path(workdir) / "alt")
        print("Approved alternative questions (k per answer); held-out questions, 3 seeds")
        print(
            f"{'k':>3} {'R@1':>6} {'MRR':>6} {'right+answered':>15} {'gone refused':>13} {'ood refused':>12} "
            f"{'R@1 remaining':>14} {'MRR remaining':>14} {'(questions)':>11}"
        )
        for row in alts:
            print(
                f"{row['k']:>3} {row['r@1']:6.3f} {row['mrr']:6.3f} {row['answered_right']:15.3f} "
                f"{row['gone_refused']:13.3f} {row['ood_refused']:12.3f} {row['remaining_r@1']:14.3f} "
                f"{row['remaining_mrr']:14.3f} {row['remaining_queries']:11.0f}"
            )
        print(f"    ({alts[0]['queries']:.0f} held-out questions of {alts[0]['answers']:.0f} answers per seed)")
        nots = non_answers_curve(args.data, embedder, Path(workdir) / "not")
        print("\nKnown non-answers (k per removed answer); a fifth of the answers removed, 5 folds")
        print(f"{'k':>3} {'marked':>7} {'gone refused':>13} {'right answered':>15}")
        for row in nots:
            print(f"{row['k']:>3} {row['marked']:7.1f} {row['gone_refused']:13.3f} {row['answered_right']:15.3f}")
    Path(args.out).write_text(
        json.dumps({"alt_questions": alts, "not_questions": nots}, indent=1) + "\n", encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

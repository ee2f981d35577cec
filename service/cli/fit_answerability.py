"""Fit the answer check (does the first entry answer *this* question?) on covid_quebec_fr, and report it.

Every covid_quebec_fr question is asked of FAQs built from its answers (all of them with distractors; a fifth
removed; small FAQs of 5, 10 and 25 answers) and labelled by whether the first entry answers it. The figures are
cross-fitted by answer (2 folds); the model written to --out is fitted on everything. The team's Chorus Pro
questions (paraphrases and uncovered questions, tests/data/) are asked of the Chorus Pro FAQ, never fitted on.

Example:
    faq-search fit-answerability --json answerability-report.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from service.cli import settings_or_exit
from service.encoders.base import BACKENDS, default_backend, default_model
from service.encoders.loading import load_embedder
from service.errors import ModelUnavailable
from service.evaluation import answer_check_fitting as fitting
from service.evaluation.datasets import CHORUS_GAPS, CHORUS_GAPS_SEEN, chorus_gaps, chorus_questions
from service.evaluation.methods import CachingEmbedder
from service.indexing.scoring import MODEL_FILE
from service.settings import REPO_ROOT


def table(rows: dict[str, dict[str, float]]) -> str:
    """The figures side by side: one line per scenario and kind, one column per decision."""
    names = list(rows)
    keys = list(dict.fromkeys(k for row in rows.values() for k in row))
    lines = [f"{'scenario/figure':40s}" + "".join(f"{n:>18s}" for n in names)]
    for key in keys:
        lines.append(f"{key:40s}" + "".join(f"{rows[n].get(key, float('nan')):18.3f}" for n in names))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.replace("``", "`"), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir",
        default=str(settings_or_exit().eval_data),
        help="folder of the public sets (env FAQ_EVAL_DATA, default ../shared/data)",
    )
    parser.add_argument("--model", default=default_model(), help="model directory (env FAQ_MODEL)")
    parser.add_argument(
        "--backend", default=default_backend(), choices=("auto", *BACKENDS), help="encoder backend (env FAQ_BACKEND)"
    )
    parser.add_argument(
        "--keep-right",
        type=float,
        default=fitting.KEEP_RIGHT,
        help=f"share of right first entries to keep answered at each FAQ size (default {fitting.KEEP_RIGHT})",
    )
    parser.add_argument("--out", default=str(MODEL_FILE), help=f"where the fitted check goes (default {MODEL_FILE})")
    parser.add_argument("--dry-run", action="store_true", help="report only; write no model")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--workdir", help="where temporary indexes go (default: a temporary directory)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if not 0.5 <= args.keep_right < 1.0:
        parser.error("--keep-right must be within 0.5..1")

    started = time.time()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="faq-answerability-"))
    corpus = REPO_ROOT / "corpus" / "chorus_pro_faq.jsonl"
    try:  # a missing data set, model or dev-set file: one line, no traceback
        embedder = CachingEmbedder(load_embedder(args.model, args.backend))
        examples = fitting.collect_examples(args.data_dir, embedder, workdir)
        chorus = fitting.chorus_examples(corpus, chorus_questions(), chorus_gaps(), embedder, workdir)
        review = fitting.known_non_answers(args.data_dir, embedder, workdir)
        chorus_marked = fitting.chorus_review(
            corpus, chorus_questions(), chorus_gaps(CHORUS_GAPS_SEEN), chorus_gaps(), embedder, workdir
        )
    except (OSError, ValueError, ModelUnavailable) as exc:
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    check = fitting.fit_check(
        examples,
        args.keep_right,
        fitted_on=f"covid_quebec_fr leave-entry-out ({len(examples)} questions asked), keep_right={args.keep_right}",
    )
    covid = {
        "threshold only": fitting.summary(examples, fitting.decisions(None, examples)),
        "with the check": fitting.summary(examples, fitting.cross_fitted(examples, keep_right=args.keep_right)),
    }
    dev = {
        "threshold only": fitting.summary(chorus, fitting.decisions(None, chorus)),
        "with the check": fitting.summary(chorus, fitting.decisions(check, chorus)),
    }
    print(f"covid_quebec_fr, cross-fitted by answer ({fitting.FOLDS} folds):")
    print(table(covid))
    gaps = CHORUS_GAPS.relative_to(REPO_ROOT)
    print(f"\nChorus Pro FAQ: tests/data/chorus_paraphrases.jsonl and {gaps} (never fitted on):")
    print(table(dev))
    print("\nKnown non-answers: the review queue simulated on covid_quebec_fr (half of each uncovered answer's")
    print("questions marked when answered, the other half asked after; mean over the FAQs):")
    for key, value in review.items():
        print(f"  {key:44s} {value:8.3f}")
    print(f"\nThe same on the Chorus Pro FAQ: {CHORUS_GAPS_SEEN.relative_to(REPO_ROOT)} marked, the dev sets asked:")
    for key, value in chorus_marked.items():
        print(f"  {key:44s} {value:8.3f}")
    sizes = ", ".join(f"{n}: {t:.3f}" for n, t in check.model.thresholds)
    print(f"\nscore threshold {fitting.SCORE_THRESHOLD}; check thresholds by FAQ size: {sizes}")
    if not args.dry_run:
        Path(args.out).write_text(json.dumps(check.model.to_dict(), indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    if args.json:
        report = {
            "covid_quebec_fr": covid,
            "chorus": dev,
            "known_non_answers": review,
            "chorus_known_non_answers": chorus_marked,
            "check": check.model.to_dict(),
            "seconds": time.time() - started,
        }
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

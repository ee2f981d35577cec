"""Measure retrieval quality with the service's own builder and engine: R@k, MRR, nDCG@10 and the answer decision.

Examples:
    faq-search evaluate --dataset covid_quebec_fr --compare answer,bm25,qa,max,weighted,default
    faq-search evaluate --corpus my_faq.jsonl --queries my_questions.jsonl --ood off_topic.jsonl
    faq-search evaluate --dataset covid_quebec_fr --fit      # refit the default scoring (dev set only)
    faq-search evaluate --dataset covid_quebec_fr --questions heldout --synonyms data/synonyms/covid_quebec_fr.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from service.cli import require_extra, settings_or_exit
from service.encoders.base import BACKENDS, default_backend, default_model
from service.encoders.loading import load_embedder
from service.encoders.torch_encoder import SentenceTransformerEmbedder
from service.errors import ModelUnavailable
from service.evaluation.datasets import COVID_QUESTIONS, load_cnil, load_covid, load_custom, load_piaf
from service.evaluation.fitting import fit_scoring
from service.evaluation.methods import METHODS, CachingEmbedder, evaluate_adapted, evaluate_method
from service.synonyms import Synonyms

DATASETS = {"cnil_faq": load_cnil, "covid_quebec_fr": load_covid, "piaf": load_piaf}
COLUMNS = [
    ("method", "method", 10),
    ("R@1", "R@1", 6),
    ("R@5", "R@5", 6),
    ("R@10", "R@10", 6),
    ("MRR", "MRR", 6),
    ("nDCG@10", "nDCG@10", 7),
    ("answered_when_right", "ans|right", 9),
    ("answered_when_wrong", "ans|wrong", 9),
    ("ood_unanswered", "ood-unans", 9),
    ("removed_unanswered", "gone-unans", 10),
    ("query_ms_p50", "query ms", 8),
]


def table(rows: list[dict]) -> str:
    """Fixed-width table of result rows ("-" where a figure does not apply)."""

    def cell(value, width):
        text = "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
        return text.rjust(width) if not isinstance(value, str) else text.ljust(width)

    lines = ["  ".join(label.ljust(w) if key == "method" else label.rjust(w) for key, label, w in COLUMNS)]
    lines += ["  ".join(cell(row.get(key), w) for key, _, w in COLUMNS) for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.replace("``", "`"), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_argument_group("what to evaluate (a public set, or your own FAQ)")
    source.add_argument("--dataset", choices=sorted(DATASETS), help="a set under --data-dir")
    source.add_argument(
        "--data-dir",
        default=str(settings_or_exit().eval_data),
        help="folder of the public sets (env FAQ_EVAL_DATA, default ../shared/data)",
    )
    source.add_argument(
        "--sample",
        type=int,
        default=1000,
        help="queries sampled from piaf, and out-of-domain queries for the others (default 1000)",
    )
    source.add_argument("--corpus", help="your corpus (the service's JSONL format)")
    source.add_argument("--queries", help='your questions: JSONL of {"query": ..., "faq_id": ... or [...]}')
    source.add_argument("--ood", help='optional JSONL of {"query": ...} that no entry answers')
    source.add_argument(
        "--questions",
        choices=COVID_QUESTIONS,
        default="all",
        help="covid_quebec_fr: all its questions, or the half a synonym list was written from (train) or the other "
        "(heldout) (default all)",
    )
    source.add_argument(
        "--synonyms",
        help='a JSON file of synonyms ({"equivalent": [...], "oneway": {...}}) to index with, or "none" to drop '
        "the corpus's own (default: the corpus's, none for the public sets)",
    )
    parser.add_argument(
        "--compare",
        default="default",
        help=f"comma-separated methods to run side by side, among {', '.join(METHODS)} (default: default)",
    )
    parser.add_argument(
        "--model",
        default=default_model(),
        help="model directory or name (env FAQ_MODEL, default models/multilingual-e5-small)",
    )
    parser.add_argument(
        "--backend",
        default=default_backend(),
        choices=("auto", *BACKENDS),
        help="encoder backend (env FAQ_BACKEND, default auto: onnx when exported, else torch)",
    )
    parser.add_argument(
        "--fit",
        action="store_true",
        help="refit fusion weights, calibration and threshold on this (development) set and print them",
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--workdir", help="where temporary indexes go (default: a temporary directory)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    if bool(args.dataset) == bool(args.corpus) or bool(args.corpus) != bool(args.queries):
        parser.error("give either --dataset, or --corpus with --queries")
    methods = [m.strip() for m in args.compare.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; known: {', '.join(METHODS)}")
    require_extra("eval", "evaluate")
    if any(METHODS[m].finetune or METHODS[m].adapt for m in methods):
        require_extra("finetune", "the finetuned and adapted methods")
    if args.fit and args.dataset == "cnil_faq":  # refused before anything is read: the data may not even be here
        parser.error("cnil_faq is for reporting only: fit on covid_quebec_fr")
    try:
        if args.dataset == "piaf":
            evalset = load_piaf(args.data_dir, sample=args.sample)
        elif args.dataset == "covid_quebec_fr":
            evalset = load_covid(args.data_dir, ood_sample=args.sample, questions=args.questions)
        elif args.dataset:
            evalset = DATASETS[args.dataset](args.data_dir, ood_sample=args.sample)
        else:
            evalset = load_custom(args.corpus, args.queries, args.ood)
        if args.synonyms == "none":
            evalset.synonyms = None
        elif args.synonyms:
            evalset.synonyms = Synonyms.parse(json.loads(Path(args.synonyms).read_text(encoding="utf-8")))
        base = CachingEmbedder(load_embedder(args.model, args.backend))
    except (OSError, ValueError, KeyError, ModelUnavailable) as exc:  # a missing or bad file, or no model
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1

    started = time.time()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="faq-eval-"))
    print(
        f"{evalset.name}: {len(evalset.entries)} entries, {len(evalset.queries)} queries, "
        f"{len(evalset.ood_queries)} out-of-domain; model {base.model_id}",
        file=sys.stderr,
    )
    report: dict = {
        "dataset": evalset.name,
        "entries": len(evalset.entries),
        "queries": len(evalset.queries),
        "ood_queries": len(evalset.ood_queries),
        "model": base.model_id,
    }
    if args.fit:
        fitted = fit_scoring(evalset, base, workdir)
        report["fit"] = fitted
        print(json.dumps({"scoring": fitted["scoring"], "operating_point": fitted["operating_point"]}, indent=2))
    else:
        rows = []
        for name in methods:
            method = METHODS[name]
            embedder = base
            if method.finetune:
                from service.encoders.finetune import finetune_model
                from service.evaluation.datasets import entries_checksum

                t = time.perf_counter()
                tuned = finetune_model(
                    args.model, evalset.entries, workdir / "finetuned-model", entries_checksum(evalset.entries)
                )
                train_s = round(time.perf_counter() - t, 1)
                embedder = CachingEmbedder(SentenceTransformerEmbedder(str(tuned)))
            if method.adapt:
                row = evaluate_adapted(
                    evalset,
                    args.model,
                    args.data_dir,
                    workdir,
                    lambda path: CachingEmbedder(SentenceTransformerEmbedder(path)),
                )
            else:
                row = evaluate_method(evalset, method, embedder, workdir)
            if method.finetune:
                row["train_s"] = train_s
            rows.append(row)
            print(f"  {name}: done", file=sys.stderr)
        report["results"] = rows
        print(table(rows))
    report["seconds"] = round(time.time() - started, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Adapt the embedding model to real user questions: fine-tune it on labelled questions of an FAQ, once.

Users ask in everyday words ("mon admin est parti"); FAQ entries are written in the administration's. Trained on
questions as users really asked them, each paired with the entry that answers it, the model learns that gap and
keeps it for other FAQs: adapted on covid_quebec_fr's 662 user questions (one epoch, about 6 minutes on 2 cores),
it ranks cnil_faq's paraphrases better too (docs/quality.md). The result is a new model directory
(with its ONNX export); build an index with it and the service loads it from the index's manifest.

Examples:
    faq-search adapt --dataset covid_quebec_fr
    faq-search adapt --corpus corpus/my_faq.jsonl --queries my_questions.jsonl --out models/my-adapted
    faq-search build --model models/multilingual-e5-small-adapted

Needs the fine-tuning packages, which `make run` does not install: `.venv/bin/pip install -r requirements-finetune.txt`
(or `make install-dev`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from service.cli import require_extra, settings_or_exit
from service.corpus import corpus_checksum
from service.encoders.base import default_model
from service.encoders.finetune import FinetuneSettings, finetune_model
from service.encoders.onnx_export import export_onnx
from service.errors import ModelUnavailable
from service.evaluation.datasets import entries_checksum, load_covid, load_custom, user_questions
from service.settings import REPO_ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.replace("``", "`"), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_argument_group("the labelled questions to learn from")
    source.add_argument(
        "--dataset", choices=["covid_quebec_fr"], help="a public set of real user questions under --data-dir"
    )
    source.add_argument(
        "--data-dir",
        default=str(settings_or_exit().eval_data),
        help="folder of the public sets (env FAQ_EVAL_DATA, default ../shared/data)",
    )
    source.add_argument("--corpus", help="an FAQ corpus (the service's JSONL format)")
    source.add_argument("--queries", help='its users\' questions: JSONL of {"query": ..., "faq_id": ...}')
    parser.add_argument(
        "--model",
        default=default_model(),
        help="model directory to adapt (env FAQ_MODEL, default models/multilingual-e5-small)",
    )
    parser.add_argument(
        "--out",
        default=str(REPO_ROOT / "models" / "multilingual-e5-small-adapted"),
        help="the new model directory (default models/multilingual-e5-small-adapted)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=FinetuneSettings.epochs,
        help=f"training epochs (default {FinetuneSettings.epochs}: 3 did worse on held-out covid_quebec_fr questions)",
    )
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX export (the torch backend only)")
    args = parser.parse_args(argv)
    require_extra("finetune", "fine-tuning")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if bool(args.dataset) == bool(args.corpus) or bool(args.corpus) != bool(args.queries):
        parser.error("give either --dataset, or --corpus with --queries")
    try:
        if args.dataset:
            labelled = load_covid(args.data_dir, distractors=False, ood_sample=0)
            checksum, tuned_on = entries_checksum(labelled.entries), f"{args.dataset} user questions"
        else:
            labelled = load_custom(args.corpus, args.queries)
            checksum = corpus_checksum(args.corpus)
            tuned_on = f"{Path(args.queries).name} ({checksum[:12]})"
        out = finetune_model(
            args.model,
            labelled.entries,
            args.out,
            checksum,
            FinetuneSettings(epochs=args.epochs),
            questions=user_questions(labelled),
            tuned_on=tuned_on,
        )
        if not args.no_onnx:
            export_onnx(out)
    except (OSError, ValueError, KeyError, ModelUnavailable) as exc:  # a bad file or label, or no base model
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    print(f"model ready: {out} ({len(labelled.queries)} user questions, {len(labelled.entries)} entries)")
    print(f"build an index with it: faq-search build --model {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

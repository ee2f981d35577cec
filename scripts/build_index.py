#!/usr/bin/env python
"""Build the FAISS index of an FAQ corpus and publish it atomically (the previous index stays until then)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.build import build_index  # noqa: E402
from service.corpus import CorpusError  # noqa: E402
from service.embedder import default_model  # noqa: E402
from service.errors import ServiceError  # noqa: E402
from service.finetune import FinetuneSettings  # noqa: E402
from service.scoring import Scoring  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", default=os.environ.get("FAQ_CORPUS", str(ROOT / "corpus" / "chorus_pro_faq.jsonl")),
                        help="JSONL corpus (env FAQ_CORPUS, default corpus/chorus_pro_faq.jsonl)")
    parser.add_argument("--out", default=os.environ.get("FAQ_INDEX", str(ROOT / "index")),
                        help="index directory (env FAQ_INDEX, default index/)")
    parser.add_argument("--model", default=default_model(),
                        help="model directory or sentence-transformers name (env FAQ_MODEL, "
                             "default models/multilingual-e5-small)")
    parser.add_argument("--batch-size", type=int, default=32, help="passages per encoding batch (default 32)")
    parser.add_argument("--answer-threshold", type=float, default=Scoring.answer_threshold,
                        help="calibrated score (0-1) at which the best entry counts as an answer, stored in the "
                             f"manifest (default {Scoring.answer_threshold}, fitted on covid_quebec_fr)")
    parser.add_argument("--answer-margin", type=float, default=Scoring.answer_margin,
                        help="lead over the second entry's score the best entry also needs to count as an answer "
                             f"(default {Scoring.answer_margin})")
    parser.add_argument("--finetune", action="store_true",
                        help="fine-tune the model on this corpus's (question, answer) pairs first (minutes on a CPU; "
                             "saved under models/finetuned/ and reused; the service loads it with this index)")
    parser.add_argument("--finetune-epochs", type=int, default=FinetuneSettings.epochs,
                        help=f"training epochs with --finetune (default {FinetuneSettings.epochs})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        manifest = build_index(args.corpus, args.out, args.model, batch_size=args.batch_size,
                               scoring=Scoring(answer_threshold=args.answer_threshold,
                                               answer_margin=args.answer_margin),
                               finetune=FinetuneSettings(epochs=args.finetune_epochs) if args.finetune else None)
    except CorpusError as exc:
        print(f"corpus error: {exc}", file=sys.stderr)
        return 1
    except ServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    summary = {k: manifest[k] for k in ("index_id", "counts", "build_seconds")}
    summary["model"] = manifest["model"]["name"]
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

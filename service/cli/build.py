"""``faq-search build``: the command line of ``indexing/build.py`` (same concept, the CLI layer). Build the FAISS
index of an FAQ corpus and publish it atomically (the previous index stays until then)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from service.cli import require_extra, settings_or_exit
from service.corpus import CorpusError, read_corpus, split_passages
from service.encoders.base import BACKENDS, default_backend, default_model
from service.encoders.finetune import FinetuneSettings
from service.errors import ServiceError
from service.indexing.build import build_index, build_lock, corpus_changes, describe_changes, settings_like_current
from service.indexing.scoring import Scoring
from service.indexing.store import EXACT_MAX_VECTORS, INDEX_KINDS
from service.reviewed_file import apply_reviewed


def check(corpus: str, out: str) -> int:
    """``--check``: validate ``corpus`` and report the changes against the index in ``out``; 0 if valid, 1 if not."""
    try:
        identity, entries = read_corpus(corpus)
        entries, reviewed = apply_reviewed(entries, corpus)
        passages = split_passages(entries)
        changes = corpus_changes(entries, out, identity)
    except CorpusError as exc:
        print(f"corpus error: {exc}", file=sys.stderr)
        return 1
    except ServiceError as exc:  # the current index is unreadable: the corpus itself may still be fine
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "corpus": corpus,
                "valid": True,
                "entries": len(entries),
                "passages": len(passages),
                "synonyms": {"equivalent": len(identity.synonyms.equivalent), "oneway": len(identity.synonyms.oneway)},
                "reviewed": reviewed.to_dict(),
                "changes": changes,
                "summary": describe_changes(changes),
            },
            ensure_ascii=False,
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    settings = settings_or_exit()
    parser = argparse.ArgumentParser(description=__doc__.replace("``", "`"))
    parser.add_argument(
        "--corpus",
        default=str(settings.corpus),
        help="JSONL corpus (env FAQ_CORPUS, default corpus/chorus_pro_faq.jsonl)",
    )
    parser.add_argument(
        "--out",
        default=str(settings.index),
        help="index directory (env FAQ_INDEX, default index/)",
    )
    parser.add_argument(
        "--model",
        default=default_model(),
        help="model directory or sentence-transformers name (env FAQ_MODEL, default models/multilingual-e5-small)",
    )
    parser.add_argument(
        "--backend",
        default=default_backend(),
        choices=("auto", *BACKENDS),
        help="encoder: torch (sentence-transformers), onnx (fp32) or onnx-int8; auto takes onnx (fp32) "
        "when the model directory has that export, else torch. The service encodes queries "
        "with the same one (env FAQ_BACKEND, default auto)",
    )
    parser.add_argument(
        "--index-kind",
        default="auto",
        choices=("auto", *INDEX_KINDS),
        help=f"FAISS index: auto (exact up to {EXACT_MAX_VECTORS:,} vectors, then HNSW), flat, hnsw, "
        "hnsw-sq8 (vectors in 8 bits: about a third of the memory) or ivf-sq8 (default auto)",
    )
    parser.add_argument(
        "--index-param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="index parameter, repeatable: M, efConstruction, efSearch (HNSW), nlist, nprobe (IVF)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="passages per encoding batch (default 32)")
    parser.add_argument(
        "--answer-threshold",
        type=float,
        default=Scoring.answer_threshold,
        help="calibrated score (0-1) at which the best entry counts as an answer, stored in the "
        f"manifest (default {Scoring.answer_threshold}, fitted on covid_quebec_fr)",
    )
    parser.add_argument(
        "--answer-margin",
        type=float,
        default=Scoring.answer_margin,
        help="lead over the second entry's score the best entry also needs to count as an answer "
        f"(default {Scoring.answer_margin})",
    )
    parser.add_argument(
        "--no-reuse",
        action="store_true",
        help="embed every text again, even those the current index already holds with the same model and weights "
        "(by default their vectors are reused, and the manifest's vectors_reused counts them)",
    )
    parser.add_argument(
        "--no-answer-check",
        action="store_true",
        help="decide `answered` without the answer check that refuses an entry which does not cover the question "
        "(the threshold, the margin and known non-answers still apply; docs/quality.md)",
    )
    parser.add_argument(
        "--like-current",
        action="store_true",
        help="build with the encoder, the FAISS index kind and parameters and the scoring of the build --out serves "
        "now instead of the defaults (what the review queue runs after each action; --model still applies)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only validate the corpus and print what a build would add, change and remove against "
        "the current index; no model is loaded and nothing is written",
    )
    parser.add_argument(
        "--finetune",
        action="store_true",
        help="fine-tune the model on this corpus's (question, answer) pairs first (minutes on a CPU; "
        "saved under models/finetuned/ and reused; the service loads it with this index)",
    )
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        default=FinetuneSettings.epochs,
        help=f"training epochs with --finetune (default {FinetuneSettings.epochs})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        params = {name: int(value) for name, value in (p.split("=", 1) for p in args.index_param)}
    except ValueError:
        parser.error(f"--index-param takes NAME=INTEGER, got {args.index_param}")
    if args.check:
        return check(args.corpus, args.out)
    if args.finetune:
        require_extra("finetune", "--finetune")
    scoring = Scoring(answer_threshold=args.answer_threshold, answer_margin=args.answer_margin).with_overrides(
        answerability=False if args.no_answer_check else None
    )
    if args.like_current:
        try:
            like = settings_like_current(args.out)
        except ServiceError as exc:
            print(f"error: --like-current needs a current build in {args.out} it can repeat: {exc.message}",
                  file=sys.stderr)  # fmt: skip
            return 1
        args.backend = like["backend"] or args.backend
        args.index_kind, params, scoring = like["index_kind"], like["index_params"], like["scoring"]
    try:
        with build_lock(args.out):
            manifest = build_index(
                args.corpus,
                args.out,
                args.model,
                batch_size=args.batch_size,
                scoring=scoring,
                finetune=FinetuneSettings(epochs=args.finetune_epochs) if args.finetune else None,
                backend=args.backend,
                index_kind=args.index_kind,
                index_params=params,
                reuse=not args.no_reuse,
            )
    except CorpusError as exc:
        print(f"corpus error: {exc}", file=sys.stderr)
        return 1
    except ServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except ValueError as exc:  # an index parameter the chosen kind does not take
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only directory, no lock…: the current index is untouched
        print(f"error: the build failed and the current index is unchanged: {exc}", file=sys.stderr)
        return 1
    summary = {
        "index_id": manifest.index_id,
        "counts": manifest.counts.to_dict(),
        "build_seconds": manifest.build_seconds,
        "model": manifest.model.name,
        "encoder": manifest.encoder_backend,
        "vector_index": manifest.vector_index,
        "changes": describe_changes(manifest.changes),
        "vectors_reused": manifest.vectors_reused,
    }
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

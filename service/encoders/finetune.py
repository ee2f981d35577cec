"""Adaptation: fine-tune the embedding model on (question, passage) pairs of an FAQ.

Two uses, one trainer:

- **In-domain** (``build_index.py --finetune``): no user query is needed; each entry's question (with the query
  prompt) is trained to find its own passages (with the passage prompt) among the other entries' passages in the
  batch (MultipleNegativesRankingLoss), on the CPU.
- **To real user questions** (``faq-search adapt``): labelled questions as users ask them (informal,
  misspelt, in words the FAQ does not use) are trained to find their entry's passages. Adapted once on one FAQ's
  questions, the model is then used for any FAQ (docs/quality.md: trained on covid_quebec_fr, it helps
  cnil_faq too).

The result is a new sentence-transformers directory whose ``faq_model.json`` names its base model and what it was
tuned on; an index built with it names that model in its manifest.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..corpus import FaqEntry, split_passages
from .base import MODEL_MARKER, model_id_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneSettings:
    """Training settings; the defaults were chosen on covid_quebec_fr (docs/quality.md)."""

    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 2e-5
    max_seq_length: int = 256
    warmup_ratio: float = 0.1
    seed: int = 13


def tuned_info(model: str | os.PathLike | None) -> dict | None:
    """What a directory made by ``finetune_model`` records of itself (path, base model, settings, pairs, training
    time), as an index manifest names it; None for any other model."""
    if model is None or not (Path(model) / MODEL_MARKER).is_file():
        return None
    marker = Path(model) / MODEL_MARKER
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        return {
            "path": str(Path(model).resolve()),
            "base": data["base_model"],
            "settings": data["settings"],
            "pairs": data["pairs"],
            "train_seconds": data["train_seconds"],
        }
    except (ValueError, KeyError):  # a converted base model's marker has no base_model
        return None


def training_pairs(entries: list[FaqEntry], questions: Sequence[tuple[str, str]] = ()) -> tuple[list[str], list[str]]:
    """(anchor, positive) texts: each question, alternative question and labelled user question against each of
    its entry's passages.

    Args:
        entries: the corpus.
        questions: labelled user questions as ``(text, faq_id)``.
    Raises:
        ValueError: a question names an entry that is not in ``entries``.
    """
    by_id = {entry.id: [entry.question, *entry.alt_questions] for entry in entries}
    for text, faq_id in questions:
        if faq_id not in by_id:
            raise ValueError(f"labelled question {text!r} names entry {faq_id!r}, which is not in the corpus")
        by_id[faq_id].append(text)
    anchors: list[str] = []
    positives: list[str] = []
    for entry in entries:
        for passage in split_passages([entry]):
            for question in by_id[entry.id]:
                anchors.append(question)
                positives.append(passage.embed_text)
    return anchors, positives


def finetune_model(
    base_model: str,
    entries: list[FaqEntry],
    out_dir: str | os.PathLike,
    corpus_sha256: str,
    settings: FinetuneSettings = FinetuneSettings(),
    questions: Sequence[tuple[str, str]] = (),
    tuned_on: str | None = None,
) -> Path:
    """Fine-tune ``base_model`` on ``entries`` (and labelled ``questions``) and save it atomically to ``out_dir``.

    Args:
        base_model: a sentence-transformers model directory with ``query``/``passage`` prompts.
        entries: the corpus.
        out_dir: where the new model directory goes (replaced if it exists).
        corpus_sha256: checksum of the corpus file, recorded in the model's marker.
        settings: training settings.
        questions: labelled user questions as ``(text, faq_id)`` (see ``training_pairs``).
        tuned_on: what the model is named after in its marker (default: the corpus checksum).
    Returns:
        ``out_dir``.
    """
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
    from transformers.trainer_callback import PrinterCallback

    started = time.perf_counter()
    model = SentenceTransformer(base_model, device="cpu", local_files_only=Path(base_model).is_dir())
    model.max_seq_length = settings.max_seq_length
    prompts = model.prompts or {}
    anchors, positives = training_pairs(entries, questions)
    dataset = Dataset.from_dict({"anchor": anchors, "positive": positives})
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    try:
        args = SentenceTransformerTrainingArguments(
            output_dir=str(work / "trainer"),
            num_train_epochs=settings.epochs,
            per_device_train_batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            warmup_steps=settings.warmup_ratio,
            seed=settings.seed,  # a float below 1 is a ratio (transformers 5)
            use_cpu=True,
            save_strategy="no",
            report_to="none",
            logging_steps=10,
            disable_tqdm=True,
            log_level="warning",
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            prompts={"anchor": prompts.get("query", ""), "positive": prompts.get("passage", "")},
        )
        trainer = SentenceTransformerTrainer(
            model=model, args=args, train_dataset=dataset, loss=MultipleNegativesRankingLoss(model)
        )
        # Without tqdm the trainer prints its logs to stdout, where a CLI's output goes; keep them in the log.
        trainer.remove_callback(PrinterCallback)
        result = trainer.train()
        model.max_seq_length = 512
        model.save(str(work / "model"))
        marker = {
            "model_id": f"{model_id_for(base_model)} + finetuned on {tuned_on or 'corpus ' + corpus_sha256[:12]}",
            "base_model": model_id_for(base_model),
            "corpus_sha256": corpus_sha256,
            "pairs": len(anchors),
            "user_questions": len(questions),
            "settings": asdict(settings),
            "training_loss": round(float(result.training_loss), 4),
            "train_seconds": round(time.perf_counter() - started, 1),
        }
        (work / "model" / MODEL_MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        (work / "model").rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("fine-tuned %s on %d pairs in %.0f s -> %s", base_model, len(anchors), time.perf_counter() - started, out)
    return out

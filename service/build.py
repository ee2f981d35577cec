"""Building an index from a corpus: read, split into passages, embed with the passage prompt, write."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from .corpus import corpus_checksum, load_corpus, split_passages
from .embedder import Embedder, SentenceTransformerEmbedder
from .engine import FALLBACK_ANSWER_THRESHOLD
from .index_store import new_index_id, write_index

log = logging.getLogger(__name__)


def build_index(corpus: str | os.PathLike, out_dir: str | os.PathLike, model: str | Embedder | None = None,
                batch_size: int = 32, show_progress: bool | None = None,
                answer_threshold: float = FALLBACK_ANSWER_THRESHOLD) -> dict:
    """Build and atomically publish an index of ``corpus`` under ``out_dir``.

    Args:
        corpus: JSONL corpus file (format in ``service/corpus.py`` and the README).
        out_dir: index directory; its ``current`` link is replaced only when the build succeeded.
        model: an embedder, or a model directory / sentence-transformers name (default ``FAQ_MODEL``).
        batch_size: passages per encoding batch.
        show_progress: progress bar while embedding (default: when stderr is a terminal).
        answer_threshold: default cosine at which a best result counts as an answer, stored in the manifest.
    Returns:
        The manifest written.
    Raises:
        CorpusError: the corpus is invalid (file, line, reason).
        ModelUnavailable: the model cannot be loaded.
    """
    started = time.time()
    entries = load_corpus(corpus)
    passages = split_passages(entries)
    embedder = model if model is not None and not isinstance(model, str) else SentenceTransformerEmbedder(model)
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    log.info("embedding %d passages of %d entries with %s", len(passages), len(entries), embedder.model_id)
    t0 = time.perf_counter()
    vectors = embedder.encode([p.embed_text for p in passages], kind="passage", batch_size=batch_size,
                              show_progress=show_progress)
    embed_seconds = time.perf_counter() - t0
    if vectors.shape != (len(passages), embedder.dimension):
        raise ValueError(f"embedder returned shape {vectors.shape}, expected {(len(passages), embedder.dimension)}")
    checksum = corpus_checksum(corpus)
    manifest = {
        "index_id": new_index_id(checksum, embedder.model_id),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "model": {"name": embedder.model_id, "dimension": embedder.dimension,
                  "prompts": {"query": embedder.prompt_for("query"), "passage": embedder.prompt_for("passage")}},
        "corpus": {"file": Path(corpus).name, "sha256": checksum},
        "passage_text": "question\\n[section heading\\n]section text",
        "answer_threshold": answer_threshold,
    }
    manifest["build_seconds"] = {"embed": round(embed_seconds, 3), "before_write": round(time.time() - started, 3)}
    written = write_index(out_dir, vectors, passages, entries, manifest)
    log.info("index %s written to %s in %.1f s", written["index_id"], out_dir, time.time() - started)
    return written

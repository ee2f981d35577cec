"""Building an index from a corpus: read, split into passages, embed every representation of each entry, write
(``cli/build.py`` is its command line)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import numpy as np

from ..corpus import (
    PASSAGE_TEXT,
    ROW_KINDS,
    CorpusError,
    FaqEntry,
    FaqIdentity,
    Passage,
    Row,
    entry_rows,
    read_corpus_snapshot,
    split_passages,
)
from ..encoders.base import BACKENDS, Embedder, default_backend, default_model, encoder_info, model_id_for
from ..encoders.finetune import FinetuneSettings, finetune_model, tuned_info
from ..encoders.loading import load_embedder, resolve_backend
from ..errors import IndexUnavailable, ServiceError
from ..files import sha256_file
from ..reviewed_file import apply_reviewed
from ..settings import REPO_ROOT
from .manifest import CorpusInfo, Encoder, Manifest, ModelInfo
from .scoring import Scoring
from .store import choose_index_spec, load_index, new_index_id, read_entries, read_manifest, write_index

log = logging.getLogger(__name__)

#: Makes the rows of an index and the text each embeds from the entries and their passages (``corpus.entry_rows``).
RowMaker = Callable[[list[FaqEntry], list[Passage]], tuple[list[Row], list[str]]]


def build_index(
    corpus: str | os.PathLike,
    out_dir: str | os.PathLike,
    model: str | Embedder | None = None,
    batch_size: int = 32,
    show_progress: bool | None = None,
    scoring: Scoring | None = None,
    rows: RowMaker = entry_rows,
    finetune: FinetuneSettings | None = None,
    finetune_root: str | os.PathLike | None = None,
    backend: str | None = None,
    index_kind: str = "auto",
    index_params: dict | None = None,
    reuse: bool = True,
    may_remove: Collection[str] | None = None,
    origin: str = "operator",
    settle: float = 0.0,
) -> Manifest:
    """Build and atomically publish an index of ``corpus`` under ``out_dir``.

    Args:
        corpus: JSONL corpus file (format in ``service/corpus.py`` and docs/corpus.md).
        out_dir: index directory; its ``current`` link is replaced only when the build succeeded.
        model: an embedder, or a model directory / sentence-transformers name (default ``FAQ_MODEL``).
        batch_size: passages per encoding batch.
        show_progress: progress bar while embedding (default: when stderr is a terminal).
        scoring: fusion weights, calibration and answer decision stored in the manifest (default: ``Scoring()``,
            fitted on covid_quebec_fr).
        rows: which vectors each entry gets and what each embeds (default ``corpus.entry_rows``: every
            representation). Evaluation baselines pass their own; their build reuses no vector.
        finetune: first fine-tune ``model`` on this corpus's own pairs (``service/encoders/finetune.py``) and index with
            the tuned model, saved under ``finetune_root/<corpus checksum>-<settings>`` (default
            ``models/finetuned``) and reused when it already exists; the manifest names it, and the service
            loads it in place of its base model.
        backend: encoder for a model given by name: ``torch``, ``onnx``, ``onnx-int8`` or ``auto`` (default
            ``FAQ_BACKEND``, else auto: fp32 ONNX when the model directory has that export). The manifest records
            it in ``model.encoder`` and the service encodes queries with the same one.
        index_kind: FAISS index: ``auto`` (exact up to ``store.EXACT_MAX_VECTORS`` vectors, then HNSW),
            ``flat``, ``hnsw``, ``hnsw-sq8`` (about a third of the memory) or ``ivf-sq8``; recorded in the manifest.
        index_params: overrides of ``store.DEFAULT_PARAMS`` (``M``, ``efConstruction``, ``efSearch``…).
        reuse: take the vector of every text the current index already embedded with the same model, weights,
            encoder and prompts (``reusable_vectors``) instead of embedding it again; the manifest's
            ``vectors_reused`` says how many. False: embed everything.
        may_remove: the entries of the current index this build may leave out; None: any (an operator's build of
            the corpus as it is). A build that nobody asked to remove entries (the rebuild after a review decision)
            passes an empty set: a corpus that lost entries is then refused, since it is more likely a file
            caught half-written than a deletion.
        origin: who asked for the build, ``operator`` or ``review`` (the manifest's ``origin``): each keeps its own
            earlier builds (``store.KEEP_OLD_BUILDS``), so decisions never push out an operator's last build.
        settle: seconds the corpus must have been left alone before it is read (``corpus.stable_read``).
    Returns:
        The manifest written (``indexing.manifest.Manifest``).
    Raises:
        CorpusError: the corpus is invalid (file, line, reason), changed while it was read, or lost entries it
            may not lose.
        ModelUnavailable: the model cannot be loaded.
    """
    started = time.time()
    snapshot = read_corpus_snapshot(corpus, settle)  # read once: the checksum is of the very bytes indexed
    identity, checksum = snapshot.identity, snapshot.sha256
    # The FAQ owner's decisions on real questions (corpus/<name>.reviewed.jsonl), the corpus file untouched.
    entries, reviewed = apply_reviewed(snapshot.entries, corpus)
    if reviewed.skipped:
        log.warning("reviewed file: %d actions skipped: %s", len(reviewed.skipped), "; ".join(reviewed.skipped[:5]))
    if reviewed.unreadable:
        log.warning(
            "reviewed file: %d lines left out: %s", len(reviewed.unreadable), "; ".join(reviewed.unreadable[:5])
        )
    passages = split_passages(entries)
    try:
        changes = corpus_changes(entries, out_dir, identity)
    except IndexUnavailable as exc:  # a damaged current build must never stop the build that replaces it
        log.warning("the current index is unreadable (%s): building as if there were none", exc.message)
        changes = {
            "previous_index_id": None,
            "current_unreadable": exc.message,
            "added": sorted(e.id for e in entries),
            "changed": [],
            "removed": [],
            "unchanged": 0,
            "identity_changed": False,
        }
    log.info("against the current index: %s", describe_changes(changes))
    lost = sorted(set(changes["removed"]) - set(may_remove)) if may_remove is not None else []
    if lost:
        raise CorpusError(
            corpus,
            None,
            f"{len(lost)} {'entry' if len(lost) == 1 else 'entries'} of the served index "
            f"{'is' if len(lost) == 1 else 'are'} not in the corpus ({', '.join(lost[:5])}"
            f"{', …' if len(lost) > 5 else ''}): this build may not remove entries (a file caught half-written?). "
            "If they were removed on purpose, build with `faq-search build`",
        )
    if origin not in ORIGINS:
        raise ValueError(f"origin must be one of {ORIGINS}, not {origin!r}")
    tuned = None
    if finetune is not None:
        if model is not None and not isinstance(model, str):
            raise ValueError("fine-tuning needs a model directory or name, not an embedder object")
        base = model or default_model()
        backend = resolve_backend(base, backend or default_backend())
        tuned = _finetuned_model(base, entries, checksum, finetune, finetune_root)
        model = str(tuned["path"])
        if backend != "torch":  # the tuned model gets the same kind of encoder as its base
            from ..encoders.onnx_export import export_onnx  # set-up code: only when fine-tuning

            export_onnx(model)
    embedder = model if model is not None and not isinstance(model, str) else load_embedder(model, backend)
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    custom = rows is not entry_rows
    rows, texts = rows(entries, passages)
    vector_index = choose_index_spec(len(rows), index_kind, **(index_params or {}))  # bad options fail before encoding
    t0 = time.perf_counter()
    vectors = np.empty((len(rows), embedder.dimension), dtype=np.float32)
    weights = weights_sha256(embedder)
    keys = [row_key(ROW_KINDS[row.kind], text) for row, text in zip(rows, texts, strict=True)]
    reused, reused_from = (
        reusable_vectors(out_dir, embedder, weights, keys) if reuse and tuned is None and not custom else ({}, None)
    )
    for i, key in enumerate(keys):
        if key in reused:
            vectors[i] = reused[key]
    to_embed = len(rows) - sum(k in reused for k in keys)
    log.info(
        "embedding %d of %d vectors (%d reused from the current index; %d passages, %d entries) with %s",
        to_embed,
        len(rows),
        len(rows) - to_embed,
        len(passages),
        len(entries),
        embedder.model_id,
    )
    progress = _Progress(to_embed, enabled=not show_progress)
    for prompt in ("query", "passage"):
        picked = [i for i, row in enumerate(rows) if ROW_KINDS[row.kind] == prompt and keys[i] not in reused]
        for start in range(0, len(picked), PROGRESS_CHUNK):
            chunk = picked[start : start + PROGRESS_CHUNK]
            encoded = embedder.encode(
                [texts[i] for i in chunk], kind=prompt, batch_size=batch_size, show_progress=show_progress
            )
            if encoded.shape != (len(chunk), embedder.dimension):
                raise ValueError(
                    f"embedder returned shape {encoded.shape}, expected {(len(chunk), embedder.dimension)}"
                )
            vectors[chunk] = encoded
            progress.done(len(chunk))
    embed_seconds = time.perf_counter() - t0
    scoring_settings = (scoring or Scoring()).to_dict()
    if tuned is None and isinstance(model, str):
        tuned = tuned_info(model)  # a model adapted beforehand (faq-search adapt), passed as --model
    if tuned is not None:
        # Fine-tuning moves every cosine; a calibration fitted for the base model does not hold for it.
        scoring_settings["calibrated_for"] = tuned["base"]
        log.warning(
            "the answer threshold was calibrated for %s, not for the fine-tuned model: `answered` is "
            "unreliable until refitted on labelled questions (faq-search evaluate --fit)",
            tuned["base"],
        )
    info = encoder_info(embedder)
    manifest = Manifest(
        index_id=new_index_id(checksum + (reviewed.sha256 or ""), embedder.model_id),
        built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        origin=origin,
        model=ModelInfo(
            name=embedder.model_id,
            dimension=embedder.dimension,
            prompts={"query": embedder.prompt_for("query"), "passage": embedder.prompt_for("passage")},
            encoder=Encoder(**info) if info else Encoder("custom", None),
            weights_sha256=weights,
            # The service configured with the base model loads this one for this index (search.engine_loading).
            finetuned=tuned,
        ),
        corpus=CorpusInfo(Path(corpus).name, checksum, reviewed.to_dict()),
        faq=identity,
        representations={
            kind: {"prompt": prompt}
            for kind, prompt in ROW_KINDS.items()
            if not custom or kind == "passage" or any(row.kind == kind for row in rows)
        },
        passage_text="custom" if custom else PASSAGE_TEXT,
        lexical={"method": "bm25s lucene", "stemmer": "snowball french", "unit": "entry"},
        scoring_settings=scoring_settings,
        vector_index=vector_index,
        changes=changes,
        vectors_reused={"reused": len(rows) - to_embed, "embedded": to_embed, "from": reused_from},
        build_seconds={"embed": round(embed_seconds, 3), "before_write": round(time.time() - started, 3)},
    )
    written = write_index(out_dir, vectors, rows, passages, entries, manifest)
    log.info("index %s written to %s in %.1f s", written.index_id, out_dir, time.time() - started)
    return written


@contextlib.contextmanager
def build_lock(out_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the exclusive lock of builds of one index directory (``<out>/.build.lock``): builds started together
    would otherwise switch ``current`` in the order they finish, not the order they started.

    Raises:
        OSError: the index directory cannot be created or written.
    """
    os.makedirs(out_dir, exist_ok=True)
    fd = os.open(os.path.join(out_dir, ".build.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


#: Who asks for a build: an operator (``faq-search build``, ``make index``) or the review loop after a decision.
ORIGINS = ("operator", "review")


def settings_like_current(index_dir: str | os.PathLike) -> dict:
    """The build settings of the build ``index_dir`` serves now, as ``build_index`` keyword arguments: its encoder,
    its FAISS index kind and parameters, its scoring (what the rebuild after a review decision keeps).

    Raises:
        IndexUnavailable: no current build, or its manifest cannot be read.
        ServiceError: the current build uses a model fine-tuned on its corpus (``--finetune`` builds it again).
    """
    current = read_manifest(index_dir)
    if current.model.finetuned:
        raise ServiceError(
            "the current build uses a model fine-tuned on its corpus; a build like it does not fine-tune: "
            "rebuild it with `faq-search build --finetune`"
        )
    built_with = current.encoder_backend
    return {
        "backend": built_with if built_with in BACKENDS else None,
        "index_kind": (current.vector_index or {}).get("kind", "auto"),
        "index_params": dict((current.vector_index or {}).get("params") or {}),
        "scoring": Scoring.carried_over(current.scoring_settings),
    }


def row_key(prompt_kind: str, text: str) -> str:
    """What a vector depends on besides the model: the prompt it is embedded with and its text (stripped)."""
    return hashlib.sha256(f"{prompt_kind}\0{text.strip()}".encode()).hexdigest()


#: Files of a model directory besides the weights that change what a text's vector is (tokenisation, length).
ENCODER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "sentence_bert_config.json",
    "config.json",
    "config_sentence_transformers.json",
    "modules.json",
)


def weights_sha256(embedder) -> str | None:
    """SHA-256 of what makes the encoder's vectors: its weights file (the ONNX file) and the model directory's
    tokenizer and configuration files (``ENCODER_FILES``); None when the embedder has no weights file."""
    path = getattr(embedder, "path", None)
    if not isinstance(path, Path) or not path.is_file():
        return None
    model_dir = path.parent.parent  # <model>/onnx/<file>.onnx
    data = getattr(embedder, "data_path", None)  # the weights beside the graph, when the export keeps them apart
    parts = [sha256_file(path), *([sha256_file(data)] if isinstance(data, Path) and data.is_file() else [])] + [
        f"{name}:{sha256_file(model_dir / name) if (model_dir / name).is_file() else '-'}" for name in ENCODER_FILES
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def reusable_vectors(
    index_dir: str | os.PathLike, embedder, weights: str | None, keys: list[str]
) -> tuple[dict[str, np.ndarray], str | None]:
    """The vectors of the current index that a build with ``embedder`` would compute again, by ``row_key``, and
    that index's id.

    Only from an index made by the same model name, dimension, prompts and encoder, with the same weights
    (``weights_sha256``; an embedder without a weights file, such as the tests' fakes, by name alone unless it
    names a backend), not fine-tuned, and storing its vectors exactly (flat or HNSW, not SQ8).
    """
    try:
        current = load_index(index_dir)
    except IndexUnavailable:
        return {}, None
    model, info = current.manifest.model, encoder_info(embedder)
    passage_shape = current.manifest.passage_text
    same = (
        model.name == embedder.model_id
        and model.dimension == embedder.dimension
        and model.prompts == {"query": embedder.prompt_for("query"), "passage": embedder.prompt_for("passage")}
        and model.encoder.to_dict() == (info or {"backend": "custom", "file": None})
        and model.weights_sha256 == weights
        and (weights is not None or info is None)
        and not model.finetuned
        and passage_shape == PASSAGE_TEXT
        and current.vectors.spec.get("kind") in ("flat", "hnsw")
    )
    if not same:
        log.info("the current index was made otherwise (model, weights, encoder or storage): embedding everything")
        return {}, None
    passages = {p.passage_id: p for p in current.passages}
    wanted = set(keys)
    found: dict[str, int] = {}
    for n, row in enumerate(current.rows):
        text = passages[row.ref].embed_text if row.kind == "passage" else row.ref
        key = row_key(ROW_KINDS[row.kind], text)
        if key in wanted:
            found.setdefault(key, n)
    if not found:
        return {}, None
    rows = np.fromiter(found.values(), dtype=np.int64, count=len(found))
    vectors = np.concatenate([current.vectors.reconstruct(rows[i : i + 65536]) for i in range(0, len(rows), 65536)])
    log.info("reusing %d vectors of the current index %s", len(found), current.index_id)
    return dict(zip(found, vectors, strict=True)), current.index_id


def corpus_changes(entries, index_dir: str | os.PathLike, identity: FaqIdentity | None = None) -> dict:
    """Entries added, changed and removed by ``entries`` against the index ``index_dir`` serves now, and whether
    the FAQ's identity header (``identity``) changed.

    Returns:
        ``{"previous_index_id", "added", "changed", "removed", "unchanged", "identity_changed"}`` (id lists
        sorted, and a count of unchanged entries); ``previous_index_id`` is None and everything is "added" when
        there is no index yet.
    """
    before = read_entries(index_dir) or {}
    after = {e.id: e.to_dict() for e in entries}
    manifest = read_manifest(index_dir) if before else None
    previous = manifest.index_id if manifest else None
    previous_identity = manifest.faq.to_dict() if manifest else None
    changed = sorted(i for i in after.keys() & before.keys() if after[i] != before[i])
    return {
        "previous_index_id": previous,
        "added": sorted(after.keys() - before.keys()),
        "changed": changed,
        "removed": sorted(before.keys() - after.keys()),
        "unchanged": len(after.keys() & before.keys()) - len(changed),
        "identity_changed": previous is not None and (identity or FaqIdentity()).to_dict() != previous_identity,
    }


def describe_changes(changes: dict, limit: int = 10) -> str:
    """One line for an operator: counts, and the first ids of each kind of change."""
    if changes.get("current_unreadable"):
        return f"the current index is unreadable; {len(changes['added'])} entries to add"
    if changes["previous_index_id"] is None:
        return f"no current index; {len(changes['added'])} entries to add"

    def ids(kind: str) -> str:
        items = changes[kind]
        shown = ", ".join(items[:limit]) + (f", … ({len(items) - limit} more)" if len(items) > limit else "")
        return f"{len(items)} {kind}" + (f" ({shown})" if items else "")

    header = "; the faq header changed" if changes.get("identity_changed") else ""
    return (
        f"{ids('added')}, {ids('changed')}, {ids('removed')}, {changes['unchanged']} unchanged{header} "
        f"(current index {changes['previous_index_id']})"
    )


#: Texts per encoding call; between calls a long build logs its progress and ETA (a tqdm bar does on a terminal).
PROGRESS_CHUNK = 2048
#: Least time between two progress lines.
PROGRESS_EVERY_SECONDS = 10.0


class _Progress:
    """Logs "embedded n/total, rate, ETA" after each chunk of a build that runs long enough to need it."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.every = total, enabled, PROGRESS_EVERY_SECONDS
        self.count = 0
        self.started = self.last = time.perf_counter()

    def done(self, n: int) -> None:
        self.count += n
        now = time.perf_counter()
        if not self.enabled or now - self.last < self.every or self.count >= self.total:
            return
        self.last = now
        rate = self.count / (now - self.started)
        log.info(
            "embedded %d/%d vectors (%.0f/s), about %.0f s left",
            self.count,
            self.total,
            rate,
            (self.total - self.count) / rate,
        )


def _finetuned_model(
    base: str, entries, corpus_sha256: str, settings: FinetuneSettings, root: str | os.PathLike | None
) -> dict:
    """The fine-tuned model for this corpus and these settings: reused if already made, else trained now."""
    import hashlib
    import json
    from dataclasses import asdict

    key = hashlib.sha256(json.dumps([model_id_for(base), asdict(settings)], sort_keys=True).encode()).hexdigest()
    out = Path(root or REPO_ROOT / "models" / "finetuned") / f"{corpus_sha256[:12]}-{key[:8]}"
    if not (out / "faq_model.json").is_file():
        log.info("fine-tuning %s on the corpus (%s); this takes minutes on a CPU", base, settings)
        finetune_model(base, entries, out, corpus_sha256, settings)
    else:
        log.info("reusing the fine-tuned model %s", out)
    return tuned_info(out)

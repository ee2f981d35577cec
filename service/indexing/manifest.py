"""The manifest of an index build, typed: what the build was made from and with, and how it is scored.

``Manifest`` is the only code that knows the manifest's keys: the build makes one (``indexing/build.py``), the
store writes it as ``manifest.json`` and reads it back (``indexing/store.py``), and everything else reads its
attributes. Each setting added over time has one default here, for the builds made before it: an index of format 2
or 3, or without an ``origin``, an ``encoder`` or ``faq``, still loads (``tests/test_index_store.py``). Keys this
version does not know are kept as they were (``extra``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..corpus import FaqIdentity
from .scoring import Scoring

#: 2: several vectors per entry (rows.jsonl), scoring settings in the manifest. 3: rows of kind ``not_question``
#: (known non-answers, never a match: a reader of version 2 would take them for questions, so it must refuse them).
FORMAT_VERSION = 3
#: The versions this service reads (2 has no known non-answers).
READABLE_VERSIONS = (2, 3)
#: Who made a build: an operator (``faq-search build``, ``make index``) or the review loop after a decision.
ORIGINS = ("operator", "review")


class ManifestError(ValueError):
    """A manifest the service cannot serve from; the message says which field and why."""


@dataclass(frozen=True)
class Encoder:
    """The encoder that made the vectors: ``torch``, ``onnx``, ``onnx-int8`` or ``custom`` (an embedder object), and
    its file."""

    backend: str = "torch"  # the only encoder before the field existed
    file: str | None = None

    def to_dict(self) -> dict:
        return {"backend": self.backend, "file": self.file}


@dataclass(frozen=True)
class ModelInfo:
    """The model that made the vectors, as the service must load it to encode queries."""

    name: str
    dimension: int
    prompts: dict = field(default_factory=dict)
    encoder: Encoder = field(default_factory=Encoder)
    weights_sha256: str | None = None
    #: A model fine-tuned on the corpus (``{"base", "path", …}``): the service loads it in place of its base.
    finetuned: dict | None = None

    def to_dict(self) -> dict:
        out = {"name": self.name, "dimension": self.dimension, "prompts": self.prompts,
               "encoder": self.encoder.to_dict(), "weights_sha256": self.weights_sha256}  # fmt: skip
        if self.finetuned is not None:
            out["finetuned"] = self.finetuned
        return out


@dataclass(frozen=True)
class CorpusInfo:
    """The corpus file the build read (its name, the SHA-256 of the bytes read) and its reviewed file's merge."""

    file: str | None = None
    sha256: str | None = None
    reviewed: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"file": self.file, "sha256": self.sha256, "reviewed": self.reviewed}


@dataclass(frozen=True)
class Counts:
    """What the build holds."""

    entries: int
    passages: int
    vectors: int
    vectors_by_kind: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"entries": self.entries, "passages": self.passages, "vectors": self.vectors,
                "vectors_by_kind": self.vectors_by_kind}  # fmt: skip


@dataclass(frozen=True)
class Manifest:
    """One build's manifest. ``store.write_index`` fills ``format_version``, ``counts``, ``files``, ``faiss`` and
    ``versions`` when it writes the build."""

    index_id: str
    built_at: str
    model: ModelInfo
    corpus: CorpusInfo = field(default_factory=CorpusInfo)
    origin: str = "operator"
    faq: FaqIdentity = field(default_factory=FaqIdentity)
    #: The scoring settings as written (``scoring`` reads them: an old index keeps deciding as it was built).
    scoring_settings: dict | None = None
    format_version: int = FORMAT_VERSION
    metric: str = "inner_product"
    normalized: bool = True
    counts: Counts | None = None
    files: dict = field(default_factory=dict)
    vector_index: dict | None = None
    faiss: dict | None = None
    representations: dict = field(default_factory=dict)
    passage_text: str | None = None
    lexical: dict | None = None
    changes: dict = field(default_factory=dict)
    vectors_reused: dict = field(default_factory=dict)
    build_seconds: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    #: Keys this version does not know, kept as they were.
    extra: dict = field(default_factory=dict)

    # ---- what the service reads ----

    @property
    def scoring(self) -> Scoring:
        """The scoring settings this build decides with (``Scoring.from_dict``: the defaults of when it was built)."""
        return Scoring.from_dict(self.scoring_settings)

    @property
    def encoder_backend(self) -> str:
        """The encoder that made the vectors (``torch`` for a build older than the field)."""
        return self.model.encoder.backend

    @property
    def identity(self) -> FaqIdentity:
        """The FAQ's name, language, examples and support contact."""
        return self.faq

    @property
    def index_kind(self) -> str:
        """The FAISS index's kind (``flat``, ``hnsw``…; ``flat`` for a build older than the field)."""
        return (self.vector_index or {}).get("kind", "flat")

    def with_(self, **changes: Any) -> Manifest:
        """A copy with these fields replaced."""
        return replace(self, **changes)

    # ---- reading and writing ----

    def to_dict(self) -> dict:
        """The manifest as ``manifest.json`` holds it."""
        out: dict[str, Any] = {
            "format_version": self.format_version,
            "index_id": self.index_id,
            "built_at": self.built_at,
            "origin": self.origin,
            "model": self.model.to_dict(),
            "corpus": self.corpus.to_dict(),
            "faq": self.faq.to_dict(),
            "representations": self.representations,
            "passage_text": self.passage_text,
            "lexical": self.lexical,
            "scoring": self.scoring_settings,
            "vector_index": self.vector_index,
            "changes": self.changes,
            "vectors_reused": self.vectors_reused,
            "build_seconds": self.build_seconds,
            "metric": self.metric,
            "normalized": self.normalized,
            "faiss": self.faiss,
            "counts": self.counts.to_dict() if self.counts is not None else None,
            "files": self.files,
            "versions": self.versions,
            **self.extra,
        }
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """A manifest as read from ``manifest.json``, checked field by field.

        Raises:
            ManifestError: not an object, a field missing or of the wrong type, scoring settings that are not finite
                numbers in their range (a tampered ``slope`` would turn every search into a 500, a NaN into invalid
                JSON, an ``answer_threshold`` of 2.5 into a service that never answers), an identity the corpus
                header would refuse.
        """
        if not isinstance(data, dict):
            raise ManifestError("not a JSON object")
        for name, kind in (("index_id", str), ("built_at", str), ("metric", str), ("model", dict), ("corpus", dict),
                           ("counts", dict), ("files", dict)):  # fmt: skip
            if not isinstance(data.get(name), kind):
                raise ManifestError(f"'{name}' is missing or not a {kind.__name__}")
        model, counts = data["model"], data["counts"]
        if not isinstance(model.get("name"), str) or not _is_int(model.get("dimension")):
            raise ManifestError("'model' needs a 'name' (string) and a 'dimension' (integer)")
        if not all(_is_int(counts.get(k)) and counts[k] >= 0 for k in ("entries", "passages", "vectors")):
            raise ManifestError("'counts' needs 'entries', 'passages' and 'vectors' (integers)")
        scoring = data.get("scoring")
        if scoring is not None:
            try:
                Scoring.from_dict(scoring).check()
            except (TypeError, ValueError, OverflowError) as exc:
                raise ManifestError(f"'scoring': {exc}") from None
        try:
            faq = FaqIdentity.from_dict(data["faq"]) if "faq" in data else FaqIdentity()
        except ValueError as exc:
            raise ManifestError(str(exc)) from None
        encoder = model.get("encoder") or {}
        if not isinstance(encoder, dict):
            raise ManifestError("'model.encoder' must be an object")
        origin = data.get("origin", "operator")
        known = {"format_version", "index_id", "built_at", "origin", "model", "corpus", "faq", "representations",
                 "passage_text", "lexical", "scoring", "vector_index", "changes", "vectors_reused", "build_seconds",
                 "metric", "normalized", "faiss", "counts", "files", "versions"}  # fmt: skip
        corpus = data["corpus"]
        return cls(
            index_id=data["index_id"],
            built_at=data["built_at"],
            model=ModelInfo(
                name=model["name"],
                dimension=int(model["dimension"]),
                prompts=model.get("prompts") or {},
                encoder=Encoder(encoder.get("backend", "torch"), encoder.get("file")),
                weights_sha256=model.get("weights_sha256"),
                finetuned=model.get("finetuned"),
            ),
            corpus=CorpusInfo(corpus.get("file"), corpus.get("sha256"), corpus.get("reviewed") or {}),
            origin=origin if origin in ORIGINS else "operator",
            faq=faq,
            scoring_settings=scoring,
            format_version=data.get("format_version"),
            metric=data["metric"],
            normalized=data.get("normalized", True),
            counts=Counts(
                int(counts["entries"]),
                int(counts["passages"]),
                int(counts["vectors"]),
                counts.get("vectors_by_kind") or {},
            ),  # fmt: skip
            files=data["files"],
            vector_index=data.get("vector_index"),
            faiss=data.get("faiss"),
            representations=data.get("representations") or {},
            passage_text=data.get("passage_text"),
            lexical=data.get("lexical"),
            changes=data.get("changes") or {},
            vectors_reused=data.get("vectors_reused") or {},
            build_seconds=data.get("build_seconds") or {},
            versions=data.get("versions") or {},
            extra={k: v for k, v in data.items() if k not in known},
        )


def origin_of(data: Any) -> str:
    """Who made a build, from its manifest's JSON however damaged the rest is (``operator`` when it does not say):
    pruning keeps each origin's builds even when one of them no longer loads."""
    origin = data.get("origin") if isinstance(data, dict) else None
    return origin if origin in ORIGINS else "operator"


def _is_int(value: Any) -> bool:
    return isinstance(value, int)

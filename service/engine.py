"""The search engine: embeds a query once, searches the index once, and shapes the results."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from .embedder import Embedder
from .errors import NotFound
from .index_store import StoredIndex

#: Used when neither the request, the configuration nor the manifest gives an answer threshold.
FALLBACK_ANSWER_THRESHOLD = 0.86


@dataclass(frozen=True)
class SearchResult:
    """One FAQ entry in a result list, represented by its best passage."""

    rank: int
    score: float
    faq_id: str
    passage_id: str
    question: str
    text: str
    section: str | None


@dataclass(frozen=True)
class SearchResponse:
    """What ``POST /search`` returns."""

    query: str
    answered: bool
    min_score: float
    results: list[SearchResult]
    index: dict
    took_ms: float

    def to_dict(self) -> dict:
        """JSON-ready dict in the API's field order."""
        return {"query": self.query, "answered": self.answered, "min_score": self.min_score,
                "results": [asdict(r) for r in self.results], "index": self.index, "took_ms": self.took_ms}


class SearchEngine:
    """Joins an embedder and a stored index; one instance per process, shared by all requests."""

    def __init__(self, embedder: Embedder, index: StoredIndex, answer_threshold: float | None = None):
        index.check_model(embedder.model_id, embedder.dimension)
        self.embedder = embedder
        self.index = index
        if answer_threshold is None:
            answer_threshold = index.manifest.get("answer_threshold", FALLBACK_ANSWER_THRESHOLD)
        self.answer_threshold = float(answer_threshold)
        counts: dict[str, int] = {}
        for passage in index.passages:
            counts[passage.faq_id] = counts.get(passage.faq_id, 0) + 1
        # Searching this many passages always yields top_k distinct entries when they exist.
        self._max_passages_per_entry = max(counts.values())

    def search(self, query: str, top_k: int = 5, min_score: float | None = None) -> SearchResponse:
        """Best passage of each of the ``top_k`` best FAQ entries, highest cosine first.

        Args:
            query: the user's question, as typed.
            top_k: number of distinct entries to return.
            min_score: answer threshold for this request (default: the engine's).
        """
        started = time.perf_counter()
        threshold = self.answer_threshold if min_score is None else float(min_score)
        vector = self.embedder.encode([query], kind="query")
        scores, ids = self.index.vectors.search(vector, top_k * self._max_passages_per_entry)
        results: list[SearchResult] = []
        seen: set[str] = set()
        for score, row in zip(scores[0], ids[0]):
            if row < 0:
                continue
            passage = self.index.passages[row]
            if passage.faq_id in seen:
                continue
            seen.add(passage.faq_id)
            results.append(SearchResult(len(results) + 1, round(float(score), 6), passage.faq_id,
                                        passage.passage_id, passage.question, passage.text, passage.section))
            if len(results) == top_k:
                break
        answered = bool(results) and results[0].score >= threshold
        took_ms = round((time.perf_counter() - started) * 1000, 2)
        return SearchResponse(query, answered, threshold, results, self.index_info(), took_ms)

    def entry(self, faq_id: str) -> dict:
        """The whole entry with its passages.

        Raises:
            NotFound: no entry has this id (code ``faq_not_found``).
        """
        entry = self.index.entries.get(faq_id)
        if entry is None:
            raise NotFound(f"no FAQ entry with id {faq_id!r}", code="faq_not_found")
        out = entry.to_dict()
        out["passages"] = [p.to_dict() for p in self.index.passages if p.faq_id == faq_id]
        return out

    def index_info(self) -> dict:
        """The ``index`` object of a search response."""
        return {"id": self.index.index_id, "model": self.index.manifest["model"]["name"]}

    def summary(self) -> dict:
        """Manifest summary for ``GET /health``."""
        m = self.index.manifest
        return {
            "id": m["index_id"], "model": m["model"]["name"], "dimension": m["model"]["dimension"],
            "metric": m["metric"], "entries": m["counts"]["entries"], "passages": m["counts"]["passages"],
            "built_at": m["built_at"], "corpus": m["corpus"], "format_version": m["format_version"],
            "answer_threshold": self.answer_threshold,
        }

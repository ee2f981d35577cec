"""The search engine: embeds a query once, gathers candidate entries, scores and ranks them, and gathers the evidence
the answer decision (``search/decision/``) reads about the first one."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..corpus import lexical_text
from ..encoders.base import Embedder, count_tokens, encoder_info
from ..errors import ErrorCode, NotFound
from ..indexing.scoring import Scoring
from ..indexing.store import StoredIndex
from .cache import ResponseCache
from .decision import AnswerCheck, Evidence, Features, decide, features
from .decision.reasons import reason
from .filters import EntryFilters
from .highlights import Highlighter
from .lexical import LexicalIndex, LexicalScores

#: Dense candidates looked at per query at least (rows of the vector index), before exact rescoring.
MIN_CANDIDATE_ROWS = 100
#: Rows averaged at most for the FAQ's centroid (evenly spaced; the answer check's ``specificity``).
CENTROID_SAMPLE = 20_000
#: The leg each kind of row scores in: an entry's questions, its passages, and its known non-answers (never a match).
QUESTION, PASSAGE, NOT_QUESTION = 0, 1, 2
#: The entry's own question alone (not a leg of its own: the answer decision's scale, ``alt_question_discount``).
OWN_QUESTION = 3
LEG_OF_KIND = {"question": QUESTION, "alt_question": QUESTION, "passage": PASSAGE, "not_question": NOT_QUESTION}


@dataclass(frozen=True)
class RankedEntry:
    """One FAQ entry in a result list, shown by its best passage, with what made it match."""

    rank: int
    score: float
    faq_id: str
    passage_id: str
    question: str
    text: str
    section: str | None
    match: dict
    #: The entry's links (its ``links``, then its answer's markdown links): where to go further.
    links: list = field(default_factory=list)
    #: The sentence of ``text`` that best answers and the query's words in it (``search/highlights.py``).
    highlights: list = field(default_factory=list)


@dataclass(frozen=True)
class SearchOutcome:
    """The engine's answer to one query; ``to_dict()`` is the JSON of ``POST /search`` (its wire schema is
    ``core.models.SearchResponse``)."""

    query: str
    answered: bool
    min_score: float
    results: list[RankedEntry]
    index: dict
    took_ms: float
    #: Why the best entry is not an answer (``decision.reason``); None when ``answered``.
    reason: dict | None = None
    #: The answer check's inputs (evaluation and fitting read them; not part of the JSON).
    features: Features | None = None

    def to_dict(self) -> dict:
        """JSON-ready dict in the API's field order."""
        return {
            "query": self.query,
            "answered": self.answered,
            "reason": self.reason,
            "min_score": self.min_score,
            "results": [asdict(r) for r in self.results],
            "index": self.index,
            "took_ms": self.took_ms,
        }


class SearchEngine:
    """Joins an embedder, a stored index and its lexical leg; one instance per process, shared by all requests.

    Args:
        embedder: the model the index was built with.
        index: the loaded index.
        scoring: overrides of the manifest's scoring settings (None fields keep the manifest's), or a ``Scoring``
            that replaces them (evaluation baselines).
        cache_size: responses kept for repeated questions (least recently used first out; 0: no cache).
    """

    def __init__(
        self, embedder: Embedder, index: StoredIndex, scoring: dict | Scoring | None = None, cache_size: int = 1024
    ):
        index.check_model(embedder.model_id, embedder.dimension)
        index.check_encoder((encoder_info(embedder) or {}).get("backend"))
        self.embedder = embedder
        self.index = index
        if isinstance(scoring, Scoring):
            self.scoring = scoring.check()
        else:
            self.scoring = index.manifest.scoring.with_overrides(**(scoring or {}))
        self.answer_check = AnswerCheck.of(self.scoring)
        self._entry_ids = list(index.entries)
        position = {faq_id: i for i, faq_id in enumerate(self._entry_ids)}
        self._row_entry = np.array([position[row.faq_id] for row in index.rows], dtype=np.int64)
        self._entry_rows: list[list[int]] = [[] for _ in self._entry_ids]
        for i, row in enumerate(index.rows):
            self._entry_rows[position[row.faq_id]].append(i)
        self._row_leg = np.array([LEG_OF_KIND[row.kind] for row in index.rows], dtype=np.int8)
        self._row_own = np.array([row.kind == "question" for row in index.rows], dtype=bool)
        self._entry_alts = np.array([len(index.entries[i].alt_questions) for i in self._entry_ids], dtype=np.float64)
        self._passages = {p.passage_id: p for p in index.passages}
        self._links = {faq_id: entry.all_links() for faq_id, entry in index.entries.items()}
        self._entry_passages: dict[str, list] = {faq_id: [] for faq_id in self._entry_ids}
        for passage in index.passages:  # in index order, so an entry's passages keep their order
            self._entry_passages[passage.faq_id].append(passage)
        self.lexical = LexicalIndex(
            [lexical_text(index.entries[i]) for i in self._entry_ids], synonyms=index.identity.synonyms
        )
        self.highlighter = Highlighter(self.lexical.analyzer, self.lexical.idf, self.lexical.synonyms)
        #: What a search may be filtered on (``search/filters.py``), in the order of ``_entry_ids``.
        self.filters = EntryFilters([index.entries[i] for i in self._entry_ids])
        self._centroid = self._mean_vector()
        # Known non-answers do not widen the candidate search (an entry may collect hundreds from a review queue).
        counted = self._row_entry[self._row_leg != NOT_QUESTION]
        self._max_rows_per_entry = int(np.bincount(counted, minlength=len(self._entry_ids)).max())
        self.cache = ResponseCache(cache_size)
        #: Called after each search call with its timings, cache hits and answers (the service's metrics).
        self.observer: Callable[[dict], None] | None = None

    @property
    def answer_threshold(self) -> float:
        """Default calibrated score at which the best entry counts as an answer."""
        return self.scoring.answer_threshold

    def search(
        self, query: str, top_k: int = 5, min_score: float | None = None, filter: dict | None = None
    ) -> SearchOutcome:
        """The ``top_k`` best FAQ entries for ``query``, best first, with calibrated scores.

        Candidates are the entries of the nearest vectors and the best lexical matches; each candidate is then
        scored exactly from all its vectors (``Scoring.fuse``), so the ranking does not depend on which of its
        vectors the approximate first pass happened to return.

        Args:
            query: the user's question, as typed.
            top_k: number of distinct entries to return.
            min_score: answer threshold for this request (default: the index's).
            filter: which entries it may return (``search/filters.py``); None: all.
        Raises:
            InvalidRequest: ``invalid_filter``, ``unknown_filter_field``.
        """
        return self.search_batch([(query, top_k, min_score, filter)])[0]

    def _cache_key(self, query: str, top_k: int, min_score: float | None, filter: dict | None = None) -> tuple:
        # Exactly what the search depends on, no more folded than the encoder folds: it is case-sensitive, so
        # "FACTURE" and "facture" are two searches. The index id keeps another index's answers out; repr()
        # keeps -0.0 apart from 0.0 (the response echoes min_score as given).
        kept = json.dumps(filter, sort_keys=True, ensure_ascii=False) if filter is not None else None
        return (self.index.index_id, query.strip(), top_k, repr(min_score), kept)

    @staticmethod
    def _from_cache(response: SearchOutcome, query: str, started: float) -> SearchOutcome:
        return replace(response, query=query, took_ms=round((time.perf_counter() - started) * 1000, 2))

    def search_batch(self, requests: list[tuple]) -> list[SearchOutcome]:
        """Several searches, their queries embedded in one batch.

        Args:
            requests: ``(query, top_k, min_score)`` for each search, or ``(query, top_k, min_score, filter)``.
        Raises:
            InvalidRequest: a filter that is not valid (``FaqService`` checks each before the search waits for a slot:
                ``filters.keep``).
        Returns:
            One response per request, in order; each ``took_ms`` counts from the start of the batch.
        """
        started = time.perf_counter()
        requests = [(*r, None) if len(r) == 3 else tuple(r) for r in requests]
        keys = [self._cache_key(*request) for request in requests]
        out: list[SearchOutcome | None] = []
        for (query, _, _, _), key in zip(requests, keys, strict=True):
            cached = self.cache.get(key)
            out.append(None if cached is None else self._from_cache(cached, query, started))
        missing = [i for i, response in enumerate(out) if response is None]
        encode_started = time.perf_counter()
        vectors = self.embedder.encode([requests[i][0] for i in missing], kind="query") if missing else []
        encode_seconds = time.perf_counter() - encode_started if missing else None
        search_seconds = []
        for i, vector in zip(missing, vectors, strict=True):
            query, top_k, min_score, kept = requests[i]
            t = time.perf_counter()
            out[i] = self.search_encoded(query, vector, top_k, min_score, started, filter=kept)
            search_seconds.append(time.perf_counter() - t)
            self.cache.put(keys[i], out[i])
        if self.observer is not None:
            self.observer(
                {
                    "encode_seconds": encode_seconds,
                    "search_seconds": search_seconds,
                    "cache_hits": len(out) - len(missing),
                    "cache_misses": len(missing),
                    "answered": [r.answered for r in out],
                }
            )
        return out

    def search_encoded(
        self,
        query: str,
        vector: np.ndarray,
        top_k: int = 5,
        min_score: float | None = None,
        started: float | None = None,
        filter: dict | None = None,
        strict: bool = True,
    ) -> SearchOutcome:
        """``search`` for a query already embedded with the query prompt (batch callers, evaluation).

        Args:
            query: the query's text (for the lexical leg and the response).
            vector: its (dimension,) L2-normalised embedding.
            top_k: number of distinct entries to return.
            min_score: answer threshold for this request (default: the index's).
            started: ``time.perf_counter()`` when the request began (default: now).
            filter: the entries it may return (``search/filters.py``): the candidates are all of them, ranked and
                decided among themselves. strict: a field no entry has is an error (else: no entry kept).
        """
        started = time.perf_counter() if started is None else started
        threshold = self.answer_threshold if min_score is None else float(min_score)
        lexical = self.lexical.scores(query)
        if filter is None:
            entries = self._candidates(vector, lexical, top_k)
        else:
            entries = self.filters.keep(filter, strict)
            if not len(entries):
                took_ms = round((time.perf_counter() - started) * 1000, 2)
                nothing = {**reason("no_close_entry"), "message": "no entry matches the filter"}
                return SearchOutcome(query, False, threshold, [], self.index_info(), took_ms, nothing, None)
        question, passage, unanswered, own = self._best_vectors(entries, vector)
        # Ranking weighs users' approved wordings in (the more an entry has, the more its best question says);
        # the decision and the scores shown stay on the calibrated scale of an entry's own question.
        order = np.argsort(
            -self.scoring.fuse(question[:, 0], passage[:, 0], lexical.scores[entries], self._entry_alts[entries]),
            kind="stable",
        )
        decided = own.copy()
        decided[:, 0] = np.maximum(own[:, 0], question[:, 0] - self.scoring.alt_question_discount)
        fused = self.scoring.fuse(decided[:, 0], passage[:, 0], lexical.scores[entries])
        calibrated = self.scoring.calibrate(fused)
        results = []
        for rank, i in enumerate(order[:top_k].tolist(), start=1):
            results.append(self._result(rank, float(calibrated[i]), int(entries[i]), question[i], passage[i], lexical))
        found = self._features(vector, entries, order, fused, decided, passage, lexical)
        # The first entry against the best other one, whatever top_k (answered must not depend on how many results
        # are shown), both on the decision's scale: an entry ranked first by its approved wordings but below another
        # there is a close call, not a hidden one.
        best = int(order[0])
        others = np.delete(calibrated, best)
        marked_row = int(unanswered[best, 1])
        evidence = Evidence(
            score=float(calibrated[best]),
            other_score=float(others.max()) if len(others) else None,
            question=float(question[best, 0]),
            marked=float(unanswered[best, 0]),
            marked_text=self.index.rows[marked_row].ref if marked_row >= 0 else None,
            term_entries=tuple(self.lexical.document_frequency(t) for t in lexical.terms),
            features=found,
        )
        why = decide(evidence, self.scoring, self.answer_check, threshold)
        took_ms = round((time.perf_counter() - started) * 1000, 2)
        return SearchOutcome(query, why is None, threshold, results, self.index_info(), took_ms, why, found)

    def _features(
        self,
        vector: np.ndarray,
        entries: np.ndarray,
        order: np.ndarray,
        fused: np.ndarray,
        question: np.ndarray,
        passage: np.ndarray,
        lexical: LexicalScores,
    ) -> Features:
        """The answer check's features of the best-ranked candidate (``decision.features``)."""
        best = int(order[0])
        lexical_best = float(lexical.scores[entries[best]])
        top = (float(fused[best]), float(question[best, 0]), float(passage[best, 0]), lexical_best)
        others = np.arange(len(order)) != best
        # No other candidate: no lead to measure (0), as for the fused lead (decision.features).
        margins = tuple(
            float(leg[best, 0] - leg[others, 0].max()) if others.any() else 0.0 for leg in (question, passage)
        )
        return features(
            top,
            float(fused[others].max()) if others.any() else None,  # the best other entry (on the decision scale)
            margins,
            int(np.argmax(question[:, 0])) == int(np.argmax(passage[:, 0])),
            float(self._centroid @ vector),
            lexical.terms,
            self.lexical.terms_of(int(entries[best])),
            self.lexical.idf,
            len(self._entry_ids),
        )

    def _mean_vector(self) -> np.ndarray:
        """The unit-length mean of the index's question and passage vectors (an evenly spaced sample of at most
        CENTROID_SAMPLE)."""
        eligible = np.flatnonzero(self._row_leg != NOT_QUESTION)  # known non-answers say nothing about the FAQ
        n = len(eligible)
        rows = eligible[np.unique(np.linspace(0, n - 1, num=min(n, CENTROID_SAMPLE)).astype(np.int64))]
        mean = self.index.vectors.reconstruct(rows).mean(axis=0)
        norm = float(np.linalg.norm(mean))
        return (mean / norm if norm > 0 else mean).astype(np.float32)

    def _candidates(self, vector: np.ndarray, lexical: LexicalScores, top_k: int) -> np.ndarray:
        """Positions of the entries owning the nearest vectors, plus the best lexical matches."""
        depth = max(MIN_CANDIDATE_ROWS, 4 * top_k * self._max_rows_per_entry)
        _, ids = self.index.vectors.search(vector[None, :], depth)
        candidates = set(self._row_entry[ids[0][ids[0] >= 0]].tolist())
        if lexical.scores.any():
            best_lexical = np.argsort(-lexical.scores)[: 2 * top_k]
            candidates.update(int(i) for i in best_lexical if lexical.scores[i] > 0)
        return np.array(sorted(candidates), dtype=np.int64)

    def _best_vectors(
        self, entries: np.ndarray, vector: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For each entry, its best question-like vector, its best passage vector and its best known non-answer,
        exactly.

        Returns:
            Four (len(entries), 2) arrays of (cosine, row): the best question (its own or an alternative), the
            best passage, the best known non-answer, and its own question. An index built without question vectors
            (an evaluation baseline) uses the best passage for the questions; an entry without known non-answers
            has (-inf, -1) for the third.
        """
        rows = np.concatenate([self._entry_rows[e] for e in entries])
        # Looked up from the index (no second copy of the vectors in memory); exact for flat and HNSW indexes.
        cosines = self.index.vectors.reconstruct(rows) @ vector
        best: dict[tuple[int, int], tuple[float, int]] = {}
        for row, cosine in zip(rows.tolist(), cosines.tolist(), strict=True):
            keys = [(int(self._row_leg[row]), int(self._row_entry[row]))]
            if self._row_own[row]:
                keys.append((OWN_QUESTION, keys[0][1]))
            for key in keys:
                if key not in best or cosine > best[key][0]:
                    best[key] = (cosine, row)
        ids = entries.tolist()
        passage = np.array([best[(PASSAGE, e)] for e in ids])
        question = np.array([best.get((QUESTION, e), best[(PASSAGE, e)]) for e in ids])
        unanswered = np.array([best.get((NOT_QUESTION, e), (float("-inf"), -1)) for e in ids])
        own = np.array([best.get((OWN_QUESTION, e), tuple(question[j])) for j, e in enumerate(ids)])
        return question, passage, unanswered, own

    def _result(
        self, rank: int, score: float, entry: int, question: np.ndarray, passage: np.ndarray, lexical: LexicalScores
    ) -> RankedEntry:
        """One result: the entry's best passage, and which of its representations matched and how."""
        question_row = self.index.rows[int(question[1])]
        shown = self._passages[self.index.rows[int(passage[1])].ref]
        is_question = question_row.kind != "passage"
        match = {
            "by": question_row.kind if is_question and question[0] >= passage[0] else "passage",
            "matched_question": question_row.ref if is_question else shown.question,
            "question_similarity": round(float(question[0]), 4),
            "passage_similarity": round(float(passage[0]), 4),
            "lexical_score": round(float(lexical.scores[entry]), 4),
            "terms": self.lexical.matched(lexical, entry),
        }
        return RankedEntry(
            rank,
            round(score, 6),
            shown.faq_id,
            shown.passage_id,
            shown.question,
            shown.text,
            shown.section,
            match,
            self._links[shown.faq_id],
            self.highlighter.highlights(shown.text, lexical.terms),
        )

    def count_tokens(self, queries: list[str]) -> list[int]:
        """Tokens the encoder reads for each query: the work a search costs (its request budget counts these)."""
        return count_tokens(self.embedder, queries, "query")

    def entry(self, faq_id: str) -> dict:
        """The whole entry with its passages.

        Raises:
            NotFound: no entry has this id (code ``faq_not_found``).
        """
        entry = self.index.entries.get(faq_id)
        if entry is None:
            raise NotFound(f"no FAQ entry with id {faq_id!r}", code=ErrorCode.FAQ_NOT_FOUND)
        out = entry.to_dict()
        out["passages"] = [p.to_dict() for p in self._entry_passages[faq_id]]
        return out

    def index_info(self) -> dict:
        """The ``index`` object of a search response."""
        return {"id": self.index.index_id, "model": self.index.manifest.model.name}

    def summary(self) -> dict:
        """Manifest summary for ``GET /health``."""
        m = self.index.manifest
        return {
            "id": m.index_id,
            "model": m.model.name,
            "dimension": m.model.dimension,
            "metric": m.metric,
            "entries": m.counts.entries,
            "passages": m.counts.passages,
            "built_at": m.built_at,
            "corpus": m.corpus.to_dict(),
            "faq": self.index.identity.to_dict(),
            # What a search may be filtered on (the page offers the tags): the fields, and the tags in use.
            "filters": {
                "fields": self.filters.names,
                "tags": sorted({t for tags in self.filters.tags for t in tags})[:200],
            },
            "format_version": m.format_version,
            "vectors": m.counts.vectors,
            "scoring": self.scoring.to_dict(),
            "cache": self.cache.stats(),
            "encoder": m.model.encoder.to_dict(),
            "vector_index": m.vector_index,
            # Not None when the current build did not load and this earlier one serves instead.
            "fallback": self.index.fallback,
        }

"""The configurations of the service that ``faq-search evaluate`` compares, and how each is run on a set."""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from ..corpus import FaqEntry, Passage, Row, entry_rows
from ..encoders.base import encoder_info
from ..indexing.build import RowMaker, build_index
from ..indexing.scoring import Scoring
from ..indexing.store import load_index
from ..search.engine import SearchEngine
from ..synonyms import SynonymMatcher, Synonyms, phrase_terms
from .datasets import EvalSet, entries_checksum, load_covid, user_questions, without_fifth, write_corpus
from .metrics import answer_stats, ranking_metrics


@dataclass(frozen=True)
class BaselineScoring(Scoring):
    """The service's scoring with two knobs only the baselines turn: ``combine="max"`` takes the better of the two
    cosines instead of weighing them, and ``dense_weight`` scales the dense part (0: BM25 alone)."""

    combine: str = "weighted"
    dense_weight: float = 1.0

    @classmethod
    def over(cls, scoring: Scoring, **values) -> BaselineScoring:
        """``scoring`` (an index's) with ``values`` replaced (None values keep it)."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown scoring settings: {sorted(unknown)}")
        base = {f.name: getattr(scoring, f.name) for f in fields(Scoring)}
        return cls(**{**base, **{k: v for k, v in values.items() if v is not None}})

    def check(self) -> BaselineScoring:
        if self.combine not in ("weighted", "max"):
            raise ValueError(f"combine must be 'weighted' or 'max', not {self.combine!r}")
        if isinstance(self.dense_weight, bool) or not isinstance(self.dense_weight, (int, float)):
            raise ValueError("dense_weight must be a number")
        super().check()
        return self

    def fuse(self, question, passage, lexical, alts=None) -> np.ndarray:
        if self.combine == "weighted" and self.dense_weight == 1.0:
            return super().fuse(question, passage, lexical, alts)  # the service's own fusion
        if self.combine == "max":
            dense = np.maximum(question, passage)
        else:
            dense = super().fuse(question, passage, np.zeros_like(np.asarray(lexical, dtype=np.float64)), alts)
        return self.dense_weight * dense + self.lexical_weight * np.asarray(lexical)

    def to_dict(self) -> dict:
        return asdict(self)


def baseline_rows(kinds: tuple[str, ...], passage_text: str) -> RowMaker:
    """Rows of the kinds ``kinds`` only (passages always), a passage embedding its heading and text alone when
    ``passage_text`` is ``"answer"``: the vectors of a baseline's index."""

    def rows(entries: list[FaqEntry], passages: list[Passage]) -> tuple[list[Row], list[str]]:
        by_id = {p.passage_id: p for p in passages}
        made, texts = entry_rows(entries, passages)
        kept: list[tuple[Row, str]] = []
        for row, text in zip(made, texts, strict=True):
            if row.kind == "passage" and passage_text == "answer":
                passage = by_id[row.ref]
                text = "\n".join(filter(None, [passage.section, passage.text]))
            if row.kind == "passage" or row.kind in kinds:
                kept.append((row, text))
        return [row for row, _ in kept], [text for _, text in kept]

    return rows


@dataclass(frozen=True)
class Method:
    """One configuration of the service to evaluate: what the index holds and how entries are scored."""

    name: str
    description: str
    kinds: tuple[str, ...] = ("question", "alt_question", "not_question", "passage")
    passage_text: str = "question_answer"
    scoring: dict = field(default_factory=dict)
    decision: dict = field(default_factory=dict)
    finetune: bool = False
    adapt: bool = False

    def rows(self) -> RowMaker:
        """The vectors this method's index holds (the service's own unless a baseline leaves some out)."""
        if set(self.kinds) == {"question", "alt_question", "not_question", "passage"} and self.passage_text != "answer":
            return entry_rows
        return baseline_rows(self.kinds, self.passage_text)

    @property
    def calibrated(self) -> bool:
        """Whether the index's calibration applies (it was fitted for the default fusion and base model only)."""
        return not self.scoring and not self.finetune and not self.adapt


#: The configurations ``faq-search evaluate --compare`` knows, from the naive design to the default.
METHODS = {
    m.name: m
    for m in (
        Method(
            "answer",
            "embed the answer text only",
            kinds=("passage",),
            passage_text="answer",
            scoring={"question_weight": 0.0, "lexical_weight": 0.0},
        ),
        Method(
            "bm25", "BM25 on question + answer (French analyser)", scoring={"dense_weight": 0.0, "lexical_weight": 1.0}
        ),
        Method(
            "qa", "embed question + answer", kinds=("passage",), scoring={"question_weight": 0.0, "lexical_weight": 0.0}
        ),
        Method(
            "max",
            "max of question (query prompt) and question + answer",
            scoring={"combine": "max", "lexical_weight": 0.0},
        ),
        Method("weighted", "weighted question and question + answer", scoring={"lexical_weight": 0.0}),
        Method(
            "threshold",
            "default ranking, answered on the score threshold alone (no answer check)",
            decision={"answerability": False},
        ),
        Method("default", "weighted dense + BM25, calibrated, with the answer check (the service's default)"),
        Method(
            "strict", "default, answered only with a 0.1 lead over the second entry", decision={"answer_margin": 0.1}
        ),
        Method("finetuned", "default, with the model fine-tuned on the corpus's own pairs", finetune=True),
        Method("adapted", "default, with the model adapted to covid_quebec_fr's user questions (held out)", adapt=True),
    )
}

#: Folds of covid_quebec_fr's answers for the ``adapted`` method on that set (cross-fitting, see below).
ADAPT_FOLDS = 2
ADAPT_SEED = 7


def adapt_folds(evalset: EvalSet, folds: int = ADAPT_FOLDS, seed: int = ADAPT_SEED) -> list[set[str]]:
    """The entries that have queries, split into ``folds`` disjoint sets by a seeded shuffle."""
    ids = sorted({r for q in evalset.queries for r in q.relevant})
    random.Random(seed).shuffle(ids)
    return [set(ids[k::folds]) for k in range(folds)]


def evaluate_adapted(
    evalset: EvalSet,
    base_model: str,
    data_dir: str | os.PathLike,
    workdir: str | os.PathLike,
    make_embedder,
    settings=None,
) -> dict:
    """Ranking figures of the default method with the model adapted to covid_quebec_fr's user questions.

    On covid_quebec_fr itself the figures are cross-fitted, so no query is ranked by a model that saw it: the
    answers are split in ``ADAPT_FOLDS`` folds, and each fold's queries are ranked by a model trained on the other
    folds' questions (and on every entry's own question). On any other set, one model trained on all of
    covid_quebec_fr's questions ranks every query.

    Args:
        evalset: what to rank.
        base_model: the model directory to adapt.
        data_dir: the public sets (covid_quebec_fr is read from there).
        workdir: where the trained models and indexes go.
        make_embedder: builds an embedder from a model directory.
        settings: ``FinetuneSettings`` (default: the module's defaults).
    """
    import time

    from ..encoders.finetune import FinetuneSettings, finetune_model

    settings = settings or FinetuneSettings()
    workdir = Path(workdir)
    covid = load_covid(data_dir, distractors=False, ood_sample=0)
    training, checksum = user_questions(covid), entries_checksum(covid.entries)
    if evalset.name == covid.name:
        plans = [
            (
                f"fold{k}",
                [(t, i) for t, i in training if i not in held_out],
                [n for n, q in enumerate(evalset.queries) if q.relevant <= held_out],
            )
            for k, held_out in enumerate(adapt_folds(covid))
        ]
    else:
        plans = [("all", training, list(range(len(evalset.queries))))]
    rankings: list[list[str]] = [[] for _ in evalset.queries]
    started = time.perf_counter()
    for name, questions, positions in plans:
        model = finetune_model(
            base_model,
            covid.entries,
            workdir / f"adapted-{name}",
            checksum,
            settings,
            questions=questions,
            tuned_on=f"covid_quebec_fr user questions ({name})",
        )
        embedder = make_embedder(str(model))
        engine = build_engine(evalset.entries, embedder, workdir / f"adapted-{name}-index", METHODS["default"])
        responses = run_queries(engine, [evalset.queries[n].text for n in positions], embedder)
        for n, response in zip(positions, responses, strict=True):
            rankings[n] = [r.faq_id for r in response.results]
    return {
        "method": "adapted",
        "description": METHODS["adapted"].description,
        "queries": len(evalset.queries),
        **ranking_metrics(evalset.queries, rankings),
        "models": len(plans),
        "train_s": round(time.perf_counter() - started, 1),
    }


class CachingEmbedder:
    """Wraps an embedder so that each (prompt, text) is embedded once per run, across the builds it serves."""

    def __init__(self, inner):
        self.inner = inner
        self.model_id, self.dimension, self.prompts = inner.model_id, inner.dimension, inner.prompts
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def prompt_for(self, kind: str) -> str:
        return self.inner.prompt_for(kind)

    def encoder_info(self) -> dict | None:
        return encoder_info(self.inner)

    def encode(self, texts, kind: str = "query", batch_size: int = 32, show_progress: bool = False):
        missing = sorted({t.strip() for t in texts if (kind, t.strip()) not in self._cache}, key=len)
        if missing:
            vectors = self.inner.encode(missing, kind=kind, batch_size=batch_size, show_progress=show_progress)
            self._cache.update({(kind, t): v for t, v in zip(missing, vectors, strict=True)})
        return np.stack([self._cache[(kind, t.strip())] for t in texts]).astype(np.float32)


class SynonymExpandingEmbedder:
    """An embedder that encodes each query with its synonyms appended ("mdp oublié (mot de passe)"): the dense leg's
    query expansion, measured by ``scripts/measure_synonyms.py`` (not the service's default: see docs/quality.md).

    Passages and questions are encoded as they are; only ``kind="query"`` texts are expanded.
    """

    def __init__(self, inner, synonyms: Synonyms):
        self.inner = inner
        self.model_id, self.dimension, self.prompts = inner.model_id, inner.dimension, inner.prompts
        self.matcher = SynonymMatcher(synonyms)

    def prompt_for(self, kind: str) -> str:
        return self.inner.prompt_for(kind)

    def encoder_info(self) -> dict | None:
        return encoder_info(self.inner)

    def expand(self, text: str) -> str:
        """``text`` followed by the other phrases of each synonym it holds, in parentheses (itself if none)."""
        terms = phrase_terms(text)
        extra = [
            phrase
            for i, j, token in self.matcher.query_spans(list(terms))
            if token is not None
            for phrase in self.matcher.phrases[token]
            if phrase_terms(phrase) != tuple(terms[i:j])
        ]
        return f"{text} ({', '.join(extra)})" if extra else text

    def encode(self, texts, kind: str = "query", batch_size: int = 32, show_progress: bool = False):
        if kind == "query":
            texts = [self.expand(t) for t in texts]
        return self.inner.encode(texts, kind=kind, batch_size=batch_size, show_progress=show_progress)


def build_engine(
    entries: list[FaqEntry],
    embedder,
    workdir: str | os.PathLike,
    method: Method,
    scoring_overrides: dict | None = None,
    synonyms: Synonyms | None = None,
):
    """Build an index of ``entries`` (and ``synonyms``) with the service's own builder and return its engine."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    corpus = write_corpus(entries, workdir / "corpus.jsonl", synonyms)
    build_index(corpus, workdir / "index", embedder, show_progress=False, rows=method.rows())
    index = load_index(workdir / "index")
    overrides = {**method.scoring, **method.decision, **(scoring_overrides or {})}
    scoring = BaselineScoring.over(index.manifest.scoring, **overrides)
    return SearchEngine(embedder, index, scoring=scoring, cache_size=0)


def run_queries(engine, texts: list[str], embedder, top_k: int = 10) -> list:
    """The engine's responses to ``texts``, embedded in one batch first (same vectors as one by one)."""
    vectors = embedder.encode(texts, kind="query") if texts else []
    return [engine.search_encoded(t, v, top_k=top_k) for t, v in zip(texts, vectors, strict=True)]


def evaluate_method(
    evalset: EvalSet,
    method: Method,
    embedder,
    workdir: str | os.PathLike,
    latency_sample: int = 30,
    no_answer: bool = True,
) -> dict:
    """Every figure of one method on one set: ranking metrics, answer decision, build time, query latency."""
    import statistics
    import time

    workdir = Path(workdir)
    t0 = time.perf_counter()
    engine = build_engine(evalset.entries, embedder, workdir / method.name, method, synonyms=evalset.synonyms)
    build_seconds = time.perf_counter() - t0
    responses = run_queries(engine, [q.text for q in evalset.queries], embedder)
    rankings = [[r.faq_id for r in resp.results] for resp in responses]
    out: dict = {
        "method": method.name,
        "description": method.description,
        "queries": len(evalset.queries),
        **ranking_metrics(evalset.queries, rankings),
    }
    if method.calibrated and no_answer:
        out.update(answer_stats(responses, evalset.queries))
        if evalset.ood_queries:
            ood = run_queries(engine, evalset.ood_queries, embedder, top_k=2)
            out["ood_unanswered"] = round(sum(not r.answered for r in ood) / len(ood), 4)
        smaller, orphans = without_fifth(evalset)
        if orphans:
            small_engine = build_engine(
                smaller.entries, embedder, workdir / f"{method.name}-minus-fifth", method, synonyms=smaller.synonyms
            )
            gone = run_queries(small_engine, [q.text for q in orphans], embedder, top_k=2)
            out["removed_unanswered"] = round(sum(not r.answered for r in gone) / len(gone), 4)
    # Latency of a fresh search (what SearchEngine.search does on a cache miss), with the real, uncached embedder.
    uncached = getattr(embedder, "inner", embedder)
    timings = []
    for q in evalset.queries[:latency_sample]:
        t = time.perf_counter()
        engine.search_encoded(q.text, uncached.encode([q.text], kind="query")[0], top_k=10)
        timings.append((time.perf_counter() - t) * 1000)
    out["build_s"] = round(build_seconds, 2)
    out["query_ms_p50"] = round(statistics.median(timings), 2) if timings else None
    return out

"""Evaluation sets and retrieval metrics: turns labelled data into corpora and queries, and scores rankings.

An evaluation set is a list of FAQ entries (what gets indexed), in-domain queries with the ids of the entries that
answer them, and optionally out-of-domain queries that no entry answers. Loaders cover the three public French sets
under ``shared/data`` and a generic format for a user's own FAQ (see the README, "Measure your own FAQ").
"""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .corpus import FaqEntry, load_corpus

#: Metrics printed by ``scripts/evaluate.py``, in ir_measures notation. ``Success@k`` is what the README calls
#: R@k: the share of queries with at least one relevant entry in the first k.
METRICS = ("Success@1", "Success@5", "Success@10", "RR", "nDCG@10")
METRIC_LABELS = {"Success@1": "R@1", "Success@5": "R@5", "Success@10": "R@10", "RR": "MRR", "nDCG@10": "nDCG@10"}


@dataclass(frozen=True)
class EvalQuery:
    """A question and the ids of the entries that answer it."""

    qid: str
    text: str
    relevant: frozenset[str]


@dataclass
class EvalSet:
    """What to index and what to ask."""

    name: str
    entries: list[FaqEntry]
    queries: list[EvalQuery]
    ood_queries: list[str] = field(default_factory=list)
    notes: str = ""


def _read_jsonl(path: str | os.PathLike) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise ValueError(f"{path}:{n}: not valid JSON ({exc})") from exc
    return rows


def _piaf_entry(p: dict) -> FaqEntry:
    # A Wikipedia paragraph has no question; its article title stands in for one.
    return FaqEntry(id=p["id"], question=p["title"], answer=p["text"])


def _piaf_split(data_dir: Path) -> tuple[list[dict], list[dict]]:
    """PIAF paragraphs of every other article (by sorted title), and the questions on the remaining articles."""
    paragraphs = _read_jsonl(data_dir / "piaf_v1.1" / "corpus.jsonl")
    titles = sorted({p["title"] for p in paragraphs})
    kept_titles = set(titles[0::2])
    kept = [p for p in paragraphs if p["title"] in kept_titles]
    left_out = {p["id"] for p in paragraphs if p["title"] not in kept_titles}
    questions = [q for q in _read_jsonl(data_dir / "piaf_v1.1" / "queries.jsonl") if q["pid"] in left_out]
    return kept, questions


def _sample(items: list, n: int | None, seed: int) -> list:
    if n is None or n >= len(items):
        return list(items)
    return random.Random(seed).sample(items, n)


def load_cnil(data_dir: str | os.PathLike, ood_sample: int = 1000, seed: int = 13) -> EvalSet:
    """cnil_faq: 523 entries, its 168 ``paraphrase`` queries, PIAF questions as out-of-domain queries.

    An entry with the same answer text as the labelled one counts as relevant (9 texts are duplicated).
    Report only: nothing may be fitted on this set.
    """
    data_dir = Path(data_dir)
    corpus = _read_jsonl(data_dir / "cnil_faq" / "corpus.jsonl")
    same_text: dict[str, set[str]] = defaultdict(set)
    for row in corpus:
        same_text[row["text"].strip()].add(row["id"])
    text_of = {row["id"]: row["text"].strip() for row in corpus}
    entries = [FaqEntry(id=row["id"], question=row["question"], answer=row["text"], tags=(row["theme"],))
               for row in corpus]
    queries = [EvalQuery(q["qid"], q["query"], frozenset(same_text[text_of[q["pid"]]]))
               for q in _read_jsonl(data_dir / "cnil_faq" / "queries.jsonl") if q["kind"] == "paraphrase"]
    ood = [q["query"] for q in _sample(_read_jsonl(data_dir / "piaf_v1.1" / "queries.jsonl"), ood_sample, seed)]
    return EvalSet("cnil_faq", entries, queries, ood, "report only")


def load_covid(data_dir: str | os.PathLike, distractors: bool = True, ood_sample: int = 1000,
               seed: int = 13) -> EvalSet:
    """covid_quebec_fr: the 50 answers indexed with their first question, queried with the other 662.

    With ``distractors``, PIAF paragraphs of half the articles join the index; questions about the other half
    are the out-of-domain queries, so no out-of-domain query has its paragraph in the index.
    """
    data_dir = Path(data_dir)
    faq = _read_jsonl(data_dir / "covid_quebec_fr" / "faq_fr.jsonl")
    entries = [FaqEntry(id=row["id"], question=row["questions"][0], answer=row["answer"]) for row in faq]
    queries = [EvalQuery(f"{row['id']}-q{i}", q, frozenset([row["id"]]))
               for row in faq for i, q in enumerate(row["questions"][1:], start=1)]
    if not distractors and not ood_sample:  # covid alone (training data): PIAF is not read
        return EvalSet("covid_quebec_fr", entries, queries, [], "development set: tune here")
    kept, ood_questions = _piaf_split(data_dir)
    if distractors:
        entries += [_piaf_entry(p) for p in kept]
    ood = [q["query"] for q in _sample(ood_questions, ood_sample, seed)]
    return EvalSet("covid_quebec_fr", entries, queries, ood, "development set: tune here")


def load_piaf(data_dir: str | os.PathLike, sample: int = 1000, seed: int = 13) -> EvalSet:
    """piaf_v1.1: 1,518 Wikipedia paragraphs (title as the question), a seeded sample of its questions."""
    data_dir = Path(data_dir)
    entries = [_piaf_entry(p) for p in _read_jsonl(data_dir / "piaf_v1.1" / "corpus.jsonl")]
    rows = _sample(_read_jsonl(data_dir / "piaf_v1.1" / "queries.jsonl"), sample, seed)
    queries = [EvalQuery(q["qid"], q["query"], frozenset([q["pid"]])) for q in rows]
    return EvalSet("piaf", entries, queries, [], "questions written while reading the paragraph")


def load_custom(corpus: str | os.PathLike, queries: str | os.PathLike,
                ood: str | os.PathLike | None = None) -> EvalSet:
    """A user's own FAQ: a corpus in the service's format and a JSONL of ``{"query", "faq_id"}``.

    ``faq_id`` may be a list when several entries answer. ``ood`` is an optional JSONL of ``{"query"}`` lines
    that no entry answers.
    """
    entries = load_corpus(corpus)
    ids = {e.id for e in entries}
    out: list[EvalQuery] = []
    for n, row in enumerate(_read_jsonl(queries), start=1):
        if not isinstance(row, dict) or "query" not in row or "faq_id" not in row:
            raise ValueError(f'{queries}:{n}: each line must be an object with "query" and "faq_id"')
        relevant = row["faq_id"] if isinstance(row["faq_id"], list) else [row["faq_id"]]
        unknown = [r for r in relevant if r not in ids]
        if unknown:
            raise ValueError(f"{queries}:{n}: faq_id {unknown} is not in the corpus")
        out.append(EvalQuery(str(row.get("qid", n)), row["query"], frozenset(relevant)))
    ood_queries = []
    for n, row in enumerate(_read_jsonl(ood) if ood else [], start=1):
        if not isinstance(row, dict) or "query" not in row:
            raise ValueError(f'{ood}:{n}: each line must be an object with "query"')
        ood_queries.append(row["query"])
    return EvalSet(Path(corpus).stem, entries, out, ood_queries)


def without_fifth(evalset: EvalSet, seed: int = 13) -> tuple[EvalSet, list[EvalQuery]]:
    """The hard no-answer case: drop a fifth of the entries that have queries, return the set and their queries.

    Returns:
        The set without those entries and without their queries, and the queries whose every relevant entry
        was removed (they have no answer in the smaller index).
    """
    answered_ids = sorted({r for q in evalset.queries for r in q.relevant})
    removed = set(random.Random(seed).sample(answered_ids, max(1, len(answered_ids) // 5)))
    orphans = [q for q in evalset.queries if q.relevant <= removed]
    kept_queries = [q for q in evalset.queries if not q.relevant <= removed]
    smaller = EvalSet(f"{evalset.name}-minus-fifth", [e for e in evalset.entries if e.id not in removed],
                      [EvalQuery(q.qid, q.text, q.relevant - removed) for q in kept_queries],
                      evalset.ood_queries, evalset.notes)
    return smaller, orphans


def ranking_metrics(queries: list[EvalQuery], rankings: list[list[str]]) -> dict[str, float]:
    """R@1/5/10, MRR and nDCG@10 (binary relevance) of ranked entry ids, one list per query, with ir_measures."""
    import ir_measures
    from ir_measures import Qrel, ScoredDoc

    qrels = [Qrel(q.qid, doc, 1) for q in queries for doc in q.relevant]
    run = [ScoredDoc(q.qid, doc, float(len(ranked) - i))
           for q, ranked in zip(queries, rankings) for i, doc in enumerate(ranked)]
    measures = [ir_measures.parse_measure(m) for m in METRICS]
    values = ir_measures.calc_aggregate(measures, qrels, run)  # averaged over every query of the qrels
    return {METRIC_LABELS[m]: round(float(values[ir_measures.parse_measure(m)]), 4) for m in METRICS}


@dataclass(frozen=True)
class Method:
    """One configuration of the service to evaluate: what the index holds and how entries are scored."""

    name: str
    description: str
    kinds: tuple[str, ...] = ("question", "alt_question", "passage")
    passage_text: str = "question_answer"
    scoring: dict = field(default_factory=dict)
    decision: dict = field(default_factory=dict)
    finetune: bool = False
    adapt: bool = False

    @property
    def calibrated(self) -> bool:
        """Whether the index's calibration applies (it was fitted for the default fusion and base model only)."""
        return not self.scoring and not self.finetune and not self.adapt


#: The configurations ``scripts/evaluate.py --compare`` knows, from the naive design to the default.
METHODS = {m.name: m for m in (
    Method("answer", "embed the answer text only", kinds=("passage",), passage_text="answer",
           scoring={"question_weight": 0.0, "lexical_weight": 0.0}),
    Method("bm25", "BM25 on question + answer (French analyser)",
           scoring={"dense_weight": 0.0, "lexical_weight": 1.0}),
    Method("qa", "embed question + answer", kinds=("passage",),
           scoring={"question_weight": 0.0, "lexical_weight": 0.0}),
    Method("max", "max of question (query prompt) and question + answer", scoring={"combine": "max",
                                                                                  "lexical_weight": 0.0}),
    Method("weighted", "weighted question and question + answer", scoring={"lexical_weight": 0.0}),
    Method("default", "weighted dense + BM25, calibrated (the service's default)"),
    Method("strict", "default, answered only with a 0.1 lead over the second entry",
           decision={"answer_margin": 0.1}),
    Method("finetuned", "default, with the model fine-tuned on the corpus's own pairs", finetune=True),
    Method("adapted", "default, with the model adapted to covid_quebec_fr's user questions (held out)", adapt=True),
)}

#: Folds of covid_quebec_fr's answers for the ``adapted`` method on that set (cross-fitting, see below).
ADAPT_FOLDS = 2
ADAPT_SEED = 7


def entries_checksum(entries: list[FaqEntry]) -> str:
    """The ``corpus_checksum`` of the file ``write_corpus(entries)`` would write, without writing it."""
    import hashlib

    return hashlib.sha256(_corpus_text(entries).encode("utf-8")).hexdigest()


def user_questions(evalset: EvalSet) -> list[tuple[str, str]]:
    """The set's labelled queries as ``(text, faq_id)`` training pairs (of several relevant entries, the least id)."""
    return [(q.text, min(q.relevant)) for q in evalset.queries]


def adapt_folds(evalset: EvalSet, folds: int = ADAPT_FOLDS, seed: int = ADAPT_SEED) -> list[set[str]]:
    """The entries that have queries, split into ``folds`` disjoint sets by a seeded shuffle."""
    ids = sorted({r for q in evalset.queries for r in q.relevant})
    random.Random(seed).shuffle(ids)
    return [set(ids[k::folds]) for k in range(folds)]


def evaluate_adapted(evalset: EvalSet, base_model: str, data_dir: str | os.PathLike, workdir: str | os.PathLike,
                     make_embedder, settings=None) -> dict:
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

    from .finetune import FinetuneSettings, finetune_model

    settings = settings or FinetuneSettings()
    workdir = Path(workdir)
    covid = load_covid(data_dir, distractors=False, ood_sample=0)
    training, checksum = user_questions(covid), entries_checksum(covid.entries)
    if evalset.name == covid.name:
        plans = [(f"fold{k}", [(t, i) for t, i in training if i not in held_out],
                  [n for n, q in enumerate(evalset.queries) if q.relevant <= held_out])
                 for k, held_out in enumerate(adapt_folds(covid))]
    else:
        plans = [("all", training, list(range(len(evalset.queries))))]
    rankings: list[list[str]] = [[] for _ in evalset.queries]
    started = time.perf_counter()
    for name, questions, positions in plans:
        model = finetune_model(base_model, covid.entries, workdir / f"adapted-{name}", checksum, settings,
                               questions=questions, tuned_on=f"covid_quebec_fr user questions ({name})")
        embedder = make_embedder(str(model))
        engine = build_engine(evalset.entries, embedder, workdir / f"adapted-{name}-index", METHODS["default"])
        responses = run_queries(engine, [evalset.queries[n].text for n in positions], embedder)
        for n, response in zip(positions, responses):
            rankings[n] = [r.faq_id for r in response.results]
    return {"method": "adapted", "description": METHODS["adapted"].description, "queries": len(evalset.queries),
            **ranking_metrics(evalset.queries, rankings), "models": len(plans),
            "train_s": round(time.perf_counter() - started, 1)}


class CachingEmbedder:
    """Wraps an embedder so that each (prompt, text) is embedded once per run, across the builds it serves."""

    def __init__(self, inner):
        self.inner = inner
        self.model_id, self.dimension, self.prompts = inner.model_id, inner.dimension, inner.prompts
        self._cache: dict[tuple[str, str], "np.ndarray"] = {}

    def prompt_for(self, kind: str) -> str:
        return self.inner.prompt_for(kind)

    def encoder_info(self) -> dict | None:
        from .embedder import encoder_info

        return encoder_info(self.inner)

    def encode(self, texts, kind: str = "query", batch_size: int = 32, show_progress: bool = False):
        import numpy as np

        missing = sorted({t.strip() for t in texts if (kind, t.strip()) not in self._cache}, key=len)
        if missing:
            vectors = self.inner.encode(missing, kind=kind, batch_size=batch_size, show_progress=show_progress)
            self._cache.update({(kind, t): v for t, v in zip(missing, vectors)})
        return np.stack([self._cache[(kind, t.strip())] for t in texts]).astype(np.float32)


def _corpus_text(entries: list[FaqEntry]) -> str:
    return "".join(json.dumps(entry.to_dict(), ensure_ascii=False) + "\n" for entry in entries)


def write_corpus(entries: list[FaqEntry], path: str | os.PathLike) -> Path:
    """Write entries as a corpus file in the service's format."""
    path = Path(path)
    path.write_text(_corpus_text(entries), encoding="utf-8")
    return path


def build_engine(entries: list[FaqEntry], embedder, workdir: str | os.PathLike, method: Method,
                 scoring_overrides: dict | None = None):
    """Build an index of ``entries`` with the service's own builder and return the service's engine over it."""
    from .build import build_index
    from .engine import SearchEngine
    from .index_store import load_index

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    corpus = write_corpus(entries, workdir / "corpus.jsonl")
    build_index(corpus, workdir / "index", embedder, show_progress=False, kinds=method.kinds,
                passage_text=method.passage_text)
    return SearchEngine(embedder, load_index(workdir / "index"),
                        scoring={**method.scoring, **method.decision, **(scoring_overrides or {})}, cache_size=0)


def run_queries(engine, texts: list[str], embedder, top_k: int = 10) -> list:
    """The engine's responses to ``texts``, embedded in one batch first (same vectors as one by one)."""
    vectors = embedder.encode(texts, kind="query") if texts else []
    return [engine.search_encoded(t, v, top_k=top_k) for t, v in zip(texts, vectors)]


def answer_stats(responses: list, queries: list[EvalQuery]) -> dict[str, float]:
    """Shares of in-domain queries answered, split by whether the first result is right."""
    right = [r.answered for r, q in zip(responses, queries) if r.results and r.results[0].faq_id in q.relevant]
    wrong = [r.answered for r, q in zip(responses, queries) if not (r.results and r.results[0].faq_id in q.relevant)]
    return {"answered_when_right": round(sum(right) / len(right), 4) if right else None,
            "answered_when_wrong": round(sum(wrong) / len(wrong), 4) if wrong else None}


def evaluate_method(evalset: EvalSet, method: Method, embedder, workdir: str | os.PathLike,
                    latency_sample: int = 30, no_answer: bool = True) -> dict:
    """Every figure of one method on one set: ranking metrics, answer decision, build time, query latency."""
    import statistics
    import time

    workdir = Path(workdir)
    t0 = time.perf_counter()
    engine = build_engine(evalset.entries, embedder, workdir / method.name, method)
    build_seconds = time.perf_counter() - t0
    responses = run_queries(engine, [q.text for q in evalset.queries], embedder)
    rankings = [[r.faq_id for r in resp.results] for resp in responses]
    out: dict = {"method": method.name, "description": method.description, "queries": len(evalset.queries),
                 **ranking_metrics(evalset.queries, rankings)}
    if method.calibrated and no_answer:
        out.update(answer_stats(responses, evalset.queries))
        if evalset.ood_queries:
            ood = run_queries(engine, evalset.ood_queries, embedder, top_k=2)
            out["ood_unanswered"] = round(sum(not r.answered for r in ood) / len(ood), 4)
        smaller, orphans = without_fifth(evalset)
        if orphans:
            small_engine = build_engine(smaller.entries, embedder, workdir / f"{method.name}-minus-fifth", method)
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


def fit_scoring(evalset: EvalSet, embedder, workdir: str | os.PathLike,
                question_weights=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0),
                lexical_weights=(0.0, 0.025, 0.05, 0.1, 0.15, 0.2),
                margins=(0.0, 0.02, 0.05, 0.1)) -> dict:
    """Fit the default scoring on a development set (covid_quebec_fr; never on a report-only set).

    1. Fusion weights: the grid point with the best MRR (R@1 breaks ties).
    2. Calibration: logistic regression of "the first entry is right" on its fused score, over the in-domain and
       the out-of-domain queries.
    3. Answer decision: the threshold (and margin) with the best balanced accuracy between "right first entries
       answered" and "out-of-domain queries not answered".

    Returns:
        ``{"scoring": Scoring fields, "grid": [...], "operating_point": {...}}``.
    """
    import numpy as np

    from .scoring import Scoring, fit_calibration

    if evalset.name == "cnil_faq":
        raise ValueError("cnil_faq is for reporting only: fit on covid_quebec_fr")
    base = Method("default", "fit")
    engine = build_engine(evalset.entries, embedder, Path(workdir) / "fit", base)
    texts = [q.text for q in evalset.queries]
    grid = []
    for qw in question_weights:
        for lw in lexical_weights:
            engine.scoring = Scoring(question_weight=qw, lexical_weight=lw)
            responses = run_queries(engine, texts, embedder)
            metrics = ranking_metrics(evalset.queries, [[r.faq_id for r in resp.results] for resp in responses])
            grid.append({"question_weight": qw, "lexical_weight": lw, **metrics})
    best = max(grid, key=lambda g: (g["MRR"], g["R@1"]))
    scoring = Scoring(question_weight=best["question_weight"], lexical_weight=best["lexical_weight"])
    engine.scoring = scoring

    def top_two(responses):
        fused = []
        for resp in responses:
            pair = [scoring.fuse(r.match["question_similarity"], r.match["passage_similarity"],
                                 r.match["lexical_score"]) for r in resp.results[:2]]
            fused.append(pair + [float("-inf")] * (2 - len(pair)))
        return np.array(fused)

    inside = run_queries(engine, texts, embedder, top_k=2)
    outside = run_queries(engine, evalset.ood_queries, embedder, top_k=2)
    right = np.array([bool(r.results) and r.results[0].faq_id in q.relevant for r, q in zip(inside, evalset.queries)])
    fused_in, fused_out = top_two(inside), top_two(outside)
    slope, intercept = fit_calibration(np.concatenate([fused_in[:, 0], fused_out[:, 0]]),
                                       np.concatenate([right, np.zeros(len(fused_out), bool)]).astype(int))
    scoring = Scoring(question_weight=scoring.question_weight, lexical_weight=scoring.lexical_weight,
                      slope=round(slope, 3), intercept=round(intercept, 3))
    p_in, p_out = scoring.calibrate(fused_in), scoring.calibrate(fused_out)
    best_point = None
    for margin in margins:
        for threshold in np.round(np.arange(0.05, 0.96, 0.01), 2):
            answered_in = (p_in[:, 0] >= threshold) & (p_in[:, 0] - p_in[:, 1] >= margin)
            answered_out = (p_out[:, 0] >= threshold) & (p_out[:, 0] - p_out[:, 1] >= margin)
            kept = float(answered_in[right].mean())
            refused = float(1 - answered_out.mean())
            point = {"answer_threshold": float(threshold), "answer_margin": margin,
                     "answered_when_right": round(kept, 4), "ood_unanswered": round(refused, 4),
                     "balanced_accuracy": round((kept + refused) / 2, 4)}
            if best_point is None or point["balanced_accuracy"] > best_point["balanced_accuracy"]:
                best_point = point
    scoring = scoring.with_overrides(answer_threshold=best_point["answer_threshold"],
                                     answer_margin=best_point["answer_margin"],
                                     fitted_on=f"{evalset.name} ({len(evalset.queries)} queries, "
                                               f"{len(evalset.ood_queries)} out-of-domain)")
    return {"scoring": scoring.to_dict(), "grid": grid, "operating_point": best_point}

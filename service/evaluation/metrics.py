"""Retrieval and answer-decision metrics over ranked entry ids."""

from __future__ import annotations

from .datasets import EvalQuery

#: Metrics printed by ``faq-search evaluate``, in ir_measures notation. ``Success@k`` is what docs/quality.md calls
#: R@k: the share of queries with at least one relevant entry in the first k.
METRICS = ("Success@1", "Success@5", "Success@10", "RR", "nDCG@10")
METRIC_LABELS = {"Success@1": "R@1", "Success@5": "R@5", "Success@10": "R@10", "RR": "MRR", "nDCG@10": "nDCG@10"}


def ranking_metrics(queries: list[EvalQuery], rankings: list[list[str]]) -> dict[str, float]:
    """R@1/5/10, MRR and nDCG@10 (binary relevance) of ranked entry ids, one list per query, with ir_measures."""
    import ir_measures
    from ir_measures import Qrel, ScoredDoc

    qrels = [Qrel(q.qid, doc, 1) for q in queries for doc in q.relevant]
    run = [
        ScoredDoc(q.qid, doc, float(len(ranked) - i))
        for q, ranked in zip(queries, rankings, strict=True)
        for i, doc in enumerate(ranked)
    ]
    measures = [ir_measures.parse_measure(m) for m in METRICS]
    values = ir_measures.calc_aggregate(measures, qrels, run)  # averaged over every query of the qrels
    return {METRIC_LABELS[m]: round(float(values[ir_measures.parse_measure(m)]), 4) for m in METRICS}


def answer_stats(responses: list, queries: list[EvalQuery]) -> dict[str, float]:
    """Shares of in-domain queries answered, split by whether the first result is right."""
    right = [
        r.answered for r, q in zip(responses, queries, strict=True) if r.results and r.results[0].faq_id in q.relevant
    ]
    wrong = [
        r.answered
        for r, q in zip(responses, queries, strict=True)
        if not (r.results and r.results[0].faq_id in q.relevant)
    ]
    return {
        "answered_when_right": round(sum(right) / len(right), 4) if right else None,
        "answered_when_wrong": round(sum(wrong) / len(wrong), 4) if wrong else None,
    }

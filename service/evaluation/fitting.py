"""Fitting the default scoring (fusion weights, calibration, answer decision) on a development set."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..indexing.scoring import Scoring
from .datasets import EvalSet
from .methods import Method, build_engine, run_queries
from .metrics import ranking_metrics


def fit_scoring(
    evalset: EvalSet,
    embedder,
    workdir: str | os.PathLike,
    question_weights=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0),
    lexical_weights=(0.0, 0.025, 0.05, 0.1, 0.15, 0.2),
    margins=(0.0, 0.02, 0.05, 0.1),
) -> dict:
    """Fit the default scoring on a development set (covid_quebec_fr; never on a report-only set).

    1. Fusion weights: the grid point with the best MRR (R@1 breaks ties).
    2. Calibration: logistic regression of "the first entry is right" on its fused score, over the in-domain and
       the out-of-domain queries.
    3. Answer decision: the threshold (and margin) with the best balanced accuracy between "right first entries
       answered" and "out-of-domain queries not answered".

    Returns:
        ``{"scoring": Scoring fields, "grid": [...], "operating_point": {...}}``.
    """
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
            pair = [
                scoring.fuse(r.match["question_similarity"], r.match["passage_similarity"], r.match["lexical_score"])
                for r in resp.results[:2]
            ]
            fused.append(pair + [float("-inf")] * (2 - len(pair)))
        return np.array(fused)

    inside = run_queries(engine, texts, embedder, top_k=2)
    outside = run_queries(engine, evalset.ood_queries, embedder, top_k=2)
    right = np.array(
        [bool(r.results) and r.results[0].faq_id in q.relevant for r, q in zip(inside, evalset.queries, strict=True)]
    )
    fused_in, fused_out = top_two(inside), top_two(outside)
    slope, intercept = fit_calibration(
        np.concatenate([fused_in[:, 0], fused_out[:, 0]]),
        np.concatenate([right, np.zeros(len(fused_out), bool)]).astype(int),
    )
    scoring = Scoring(
        question_weight=scoring.question_weight,
        lexical_weight=scoring.lexical_weight,
        slope=round(slope, 3),
        intercept=round(intercept, 3),
    )
    p_in, p_out = scoring.calibrate(fused_in), scoring.calibrate(fused_out)
    best_point = None
    for margin in margins:
        for threshold in np.round(np.arange(0.05, 0.96, 0.01), 2):
            answered_in = (p_in[:, 0] >= threshold) & (p_in[:, 0] - p_in[:, 1] >= margin)
            answered_out = (p_out[:, 0] >= threshold) & (p_out[:, 0] - p_out[:, 1] >= margin)
            kept = float(answered_in[right].mean())
            refused = float(1 - answered_out.mean())
            point = {
                "answer_threshold": float(threshold),
                "answer_margin": margin,
                "answered_when_right": round(kept, 4),
                "ood_unanswered": round(refused, 4),
                "balanced_accuracy": round((kept + refused) / 2, 4),
            }
            if best_point is None or point["balanced_accuracy"] > best_point["balanced_accuracy"]:
                best_point = point
    scoring = scoring.with_overrides(
        answer_threshold=best_point["answer_threshold"],
        answer_margin=best_point["answer_margin"],
        fitted_on=f"{evalset.name} ({len(evalset.queries)} queries, {len(evalset.ood_queries)} out-of-domain)",
    )
    return {"scoring": scoring.to_dict(), "grid": grid, "operating_point": best_point}


def fit_calibration(fused_top: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of a logistic regression of "the first entry is right" on its fused score.

    Args:
        fused_top: fused score of each query's first entry (in-domain and out-of-domain queries).
        correct: 1 where that entry answers the query, else 0.
    """
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e4, max_iter=10_000).fit(np.asarray(fused_top)[:, None], np.asarray(correct))
    return float(model.coef_[0][0]), float(model.intercept_[0])

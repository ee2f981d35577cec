"""What the review queue is worth, simulated on covid_quebec_fr (``scripts/simulate_review.py``).

Two decisions of the FAQ owner, each as approvals accumulate (k users' questions per answer):

* ``alt_questions_curve``: k of each answer's real user questions approved as its alternative questions; ranking
  (R@1, MRR) measured on questions that were never approved (cross-fitted): the held-out ones (the same at every k:
  an answer's questions from the ninth on, so only answers with nine or more count) and, the issue's own reading,
  every question not approved at that k (``remaining_*``, a different set per k).
* ``non_answers_curve``: a fifth of the answers removed (leave-entry-out, five folds); k questions of each removed
  answer that the service answered anyway marked as not answered by the entry it gave (``not_questions``); the
  removed answers' held-out questions refused (gone-unans) and the right answers still given, at each k.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

from ..corpus import FaqEntry
from ..learning.grouping import group_by_meaning
from ..reviewed_file import merge_actions, new_action
from .datasets import EvalQuery, load_covid, questions_by_answer
from .methods import Method, build_engine, run_queries
from .metrics import ranking_metrics

#: Approvals per answer measured (0: the FAQ as written).
KS = (0, 1, 2, 4, 8)
#: Questions of an answer at these shuffled positions and after are held out for the test (never approved).
HELD_OUT_FROM = max(KS)
SEEDS = (0, 1, 2)
#: Off-topic questions asked at each k (PIAF questions whose paragraphs are not indexed).
OOD_SAMPLE = 300


def alt_questions_curve(
    data_dir: str | os.PathLike, embedder, workdir: str | os.PathLike, ks=KS, seeds=SEEDS
) -> list[dict]:
    """R@1, MRR and right-and-answered on held-out questions after approving k questions per answer as alternatives.

    Also at each k: a fifth of the answers removed (the others keep their approved questions), their held-out
    questions refused (``gone_refused``); and off-topic questions refused (``ood_refused``).

    Returns:
        One row per k: ``{"k", "queries", "answers", "r@1", "mrr", "answered_right", "gone_refused",
        "ood_refused"}`` (means over the seeds).
    """
    covid = load_covid(data_dir)
    by_answer = questions_by_answer(covid.queries)
    rows: dict[int, list[dict]] = {k: [] for k in ks}
    ood = covid.ood_queries[:OOD_SAMPLE]
    for seed in seeds:
        rng = random.Random(seed)
        order = {a: rng.sample(texts, len(texts)) for a, texts in sorted(by_answer.items())}
        removed = set(rng.sample(sorted(by_answer), len(by_answer) // 5))
        test = [
            EvalQuery(f"{a}-{i}", t, frozenset([a]))
            for a, texts in order.items()
            for i, t in enumerate(texts[HELD_OUT_FROM:])
        ]
        for k in ks:
            entries = _approved(covid.entries, "attach", {a: order[a][:k] for a in order} if k else {})
            engine = build_engine(entries, embedder, Path(workdir) / f"alt-s{seed}-k{k}", Method(f"k{k}", ""))
            responses = run_queries(engine, [q.text for q in test], embedder)
            metrics = ranking_metrics(test, [[r.faq_id for r in resp.results] for resp in responses])
            right = [r.answered and r.results[0].faq_id in q.relevant for r, q in zip(responses, test, strict=True)]
            # The issue's own reading: every question not approved (positions k and after), a different set per k.
            remaining = [
                EvalQuery(f"{a}-r{i}", t, frozenset([a])) for a, texts in order.items() for i, t in enumerate(texts[k:])
            ]
            rest = run_queries(engine, [q.text for q in remaining], embedder)
            rest_metrics = ranking_metrics(remaining, [[r.faq_id for r in resp.results] for resp in rest])
            # Questions about answers the FAQ lacks (a fifth removed, the rest keeping their approved questions),
            # and off-topic ones: approvals must not make the service answer them.
            smaller = build_engine(
                [e for e in entries if e.id not in removed], embedder, Path(workdir) / f"alt-s{seed}-k{k}-gone",
                Method(f"k{k}-gone", ""),
            )  # fmt: skip
            gone = run_queries(smaller, [q.text for q in test if q.relevant & removed], embedder, top_k=2)
            off_topic = run_queries(engine, ood, embedder, top_k=2)
            rows[k].append(
                {"queries": len(test), "answers": len({min(q.relevant) for q in test}), "r@1": metrics["R@1"],
                 "mrr": metrics["MRR"], "answered_right": float(np.mean(right)),
                 "gone_refused": float(np.mean([not r.answered for r in gone])),
                 "ood_refused": float(np.mean([not r.answered for r in off_topic])),
                 "remaining_queries": len(remaining), "remaining_r@1": rest_metrics["R@1"],
                 "remaining_mrr": rest_metrics["MRR"]}
            )  # fmt: skip
    return [{"k": k, **{key: round(float(np.mean([r[key] for r in rows[k]])), 4) for key in rows[k][0]}} for k in ks]


def non_answers_curve(data_dir: str | os.PathLike, embedder, workdir: str | os.PathLike, ks=KS) -> list[dict]:
    """Refused-when-gone (leave-entry-out, five folds) after marking k questions per removed answer.

    Returns:
        One row per k: ``{"k", "marked", "gone_refused", "answered_right", "gone_queries"}`` (means over folds).
    """
    covid = load_covid(data_dir)
    by_answer = questions_by_answer(covid.queries)
    answers = sorted(by_answer)
    rng = random.Random(13)
    shuffled = rng.sample(answers, len(answers))
    rows: dict[int, list[dict]] = {k: [] for k in ks}
    for fold in range(5):
        removed = set(shuffled[fold::5])
        kept = [e for e in covid.entries if e.id not in removed]
        order = {a: rng.sample(by_answer[a], len(by_answer[a])) for a in sorted(removed)}
        gone_test = [t for a in sorted(removed) for t in order[a][HELD_OUT_FROM:]]
        inside = [q for q in covid.queries if not q.relevant & removed]
        before = build_engine(kept, embedder, Path(workdir) / f"gone-f{fold}-k0", Method("k0", ""))
        candidates = {a: run_queries(before, order[a][:HELD_OUT_FROM], embedder, top_k=1) for a in sorted(removed)}
        for k in ks:
            marked: dict[str, list[str]] = {}
            for a in sorted(removed):
                for response in candidates[a][:k]:
                    if response.answered:  # the owner sees it answered wrongly, and marks it
                        marked.setdefault(response.results[0].faq_id, []).append(response.query)
            entries = _approved(kept, "not_answered", marked)
            engine = before if not marked else build_engine(
                entries, embedder, Path(workdir) / f"gone-f{fold}-k{k}", Method(f"k{k}", "")
            )  # fmt: skip
            gone = run_queries(engine, gone_test, embedder, top_k=1)
            answers_inside = run_queries(engine, [q.text for q in inside], embedder, top_k=1)
            right = [
                r.answered for r, q in zip(answers_inside, inside, strict=True) if r.results[0].faq_id in q.relevant
            ]
            rows[k].append(
                {"marked": float(sum(len(v) for v in marked.values())), "gone_queries": float(len(gone_test)),
                 "gone_refused": float(np.mean([not r.answered for r in gone])),
                 "answered_right": float(np.mean(right))}
            )  # fmt: skip
    return [{"k": k, **{key: round(float(np.mean([r[key] for r in rows[k]])), 4) for key in rows[k][0]}} for k in ks]


def _approved(entries: list[FaqEntry], action: str, questions: dict[str, list[str]]) -> list[FaqEntry]:
    """The entries after the FAQ owner's decisions, merged as a build merges the reviewed file (``merge_actions``)."""
    actions = [new_action(action, "simulation", faq_id=faq_id, questions=tuple(qs)) for faq_id, qs in questions.items()]
    return merge_actions(entries, actions)[0]


#: Average-linkage cuts compared by ``grouping_table``.
GROUPING_CUTS = (0.06, 0.07, 0.08, 0.09, 0.10, 0.12, 0.14)


def grouping_table(data_dir: str | os.PathLike, embedder, draws: int = 5, cuts=GROUPING_CUTS) -> list[dict]:
    """How well ``grouping.group_by_meaning`` finds needs at each cut: simulated logs of 300 covid_quebec_fr
    questions drawn from 25 answers (one answer, one need); homogeneity (a group holds one need), completeness (a
    need is one group) and the adjusted Rand index, means over ``draws`` logs."""
    from sklearn.metrics import adjusted_rand_score, completeness_score, homogeneity_score

    covid = load_covid(data_dir, distractors=False, ood_sample=0)
    texts = [q.text for q in covid.queries]
    labels = np.array([min(q.relevant) for q in covid.queries])
    vectors = embedder.encode(texts, kind="query")
    answers = sorted(set(labels.tolist()))
    table = []
    for cut in cuts:
        rng = np.random.default_rng(0)
        scores = []
        for _ in range(draws):
            needs = rng.choice(answers, 25, replace=False)
            pool = np.flatnonzero(np.isin(labels, needs))
            picked = rng.choice(pool, min(300, len(pool)), replace=False)
            predicted = np.empty(len(picked), dtype=int)
            for g, members in enumerate(group_by_meaning(vectors[picked], cut)):
                predicted[members] = g
            truth = labels[picked]
            scores.append(
                (homogeneity_score(truth, predicted), completeness_score(truth, predicted),
                 adjusted_rand_score(truth, predicted), predicted.max() + 1)
            )  # fmt: skip
        h, c, ari, groups = np.mean(scores, axis=0)
        table.append({"cut": cut, "homogeneity": round(h, 4), "completeness": round(c, 4), "ari": round(ari, 4),
                      "groups": round(groups, 1)})  # fmt: skip
    return table

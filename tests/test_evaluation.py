"""Evaluation: metrics against hand-computed values, the public-set loaders, and a method run end to end."""

from __future__ import annotations

import json

import pytest
from conftest import MINI_CORPUS, shared

from service.corpus import load_corpus
from service.evaluation.datasets import EvalQuery, EvalSet, load_cnil, load_covid, load_custom, load_piaf, without_fifth
from service.evaluation.methods import METHODS, evaluate_method
from service.evaluation.metrics import ranking_metrics


def test_ranking_metrics_match_hand_computed_values():
    queries = [
        EvalQuery("a", "q1", frozenset({"x"})),
        EvalQuery("b", "q2", frozenset({"y", "z"})),
        EvalQuery("c", "q3", frozenset({"w"})),
        EvalQuery("d", "q4", frozenset({"v"})),
    ]
    rankings = [["x", "y"], ["k", "z", "y"], ["a", "b", "c", "d", "e", "w"], []]
    m = ranking_metrics(queries, rankings)
    # ranks of the first relevant entry: 1, 2, 6, none
    assert m["R@1"] == 0.25 and m["R@5"] == 0.5 and m["R@10"] == 0.75
    assert m["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 6) / 4, abs=1e-4)
    import math

    ndcg_b = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["nDCG@10"] == pytest.approx((1 + ndcg_b + 1 / math.log2(7)) / 4, abs=1e-4)


def test_without_fifth_removes_a_fifth_and_returns_their_queries():
    entries = load_corpus(MINI_CORPUS)
    queries = [EvalQuery(str(i), f"q{i}", frozenset({e.id})) for i, e in enumerate(entries)]
    evalset = EvalSet("mini", entries, queries)
    smaller, orphans = without_fifth(evalset)
    assert len(smaller.entries) == len(entries) - 1  # a fifth, at least one
    removed = {e.id for e in entries} - {e.id for e in smaller.entries}
    assert {q.text for q in orphans} == {q.text for q in queries if q.relevant <= removed}
    assert all(q.relevant and not q.relevant & removed for q in smaller.queries)


def test_public_loaders_read_the_shared_sets():
    data = shared("data")
    cnil = load_cnil(data, ood_sample=50)
    assert len(cnil.entries) == 523 and len(cnil.queries) == 168 and len(cnil.ood_queries) == 50
    assert any(len(q.relevant) > 1 for q in cnil.queries), "duplicated answer texts count as relevant"
    covid = load_covid(data, ood_sample=100)
    ids = {e.id for e in covid.entries}
    assert len(covid.queries) == 662 and all(q.relevant <= ids for q in covid.queries)
    assert len(ids) > 50, "PIAF distractors are indexed"
    piaf_paragraphs = {e.answer for e in covid.entries[50:]}
    piaf = load_piaf(data, sample=100)
    assert len(piaf.entries) == 1518 and len(piaf.queries) == 100
    # No out-of-domain question of the covid set is about a paragraph in its index.
    lines = (data / "piaf_v1.1" / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    piaf_queries = {json.loads(line)["query"]: json.loads(line)["pid"] for line in lines}
    text_of = {e.id: e.answer for e in piaf.entries}
    assert not any(text_of[piaf_queries[q]] in piaf_paragraphs for q in covid.ood_queries)
    alone = load_covid(data, distractors=False, ood_sample=0)  # the training data of `adapted`
    assert len(alone.entries) == 50 and alone.queries == covid.queries and alone.ood_queries == []


def test_custom_set_refuses_unknown_ids(tmp_path):
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"query": "x", "faq_id": "nope"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="nope"):
        load_custom(MINI_CORPUS, queries)


def test_a_method_runs_end_to_end_with_the_service_engine(tmp_path, fake_embedder):
    queries = tmp_path / "q.jsonl"
    rows = [
        ("créer mon compte SIRET", "compte"),
        ("lien d'activation mail", "activation"),
        ("transférer rôle gestionnaire", "gestionnaire"),
        ("facture sous-traitant", "factures"),
        ("gestionnaire a quitté la structure", "gestionnaire"),
    ]
    queries.write_text(
        "".join(json.dumps({"query": q, "faq_id": i}, ensure_ascii=False) + "\n" for q, i in rows), encoding="utf-8"
    )
    ood = tmp_path / "ood.jsonl"
    ood.write_text(json.dumps({"query": "recette de la tarte aux pommes"}) + "\n", encoding="utf-8")
    evalset = load_custom(MINI_CORPUS, queries, ood)
    out = evaluate_method(evalset, METHODS["default"], fake_embedder, tmp_path / "work", latency_sample=2)
    assert out["R@1"] == 1.0 and out["queries"] == 5
    for key in ("answered_when_right", "ood_unanswered", "removed_unanswered"):
        assert 0 <= out[key] <= 1
    baseline = evaluate_method(evalset, METHODS["bm25"], fake_embedder, tmp_path / "work", latency_sample=2)
    assert "ood_unanswered" not in baseline, "the calibration does not apply to another fusion"


def test_training_pairs_pair_labelled_questions_with_their_entry_passages():
    from service.corpus import split_passages
    from service.encoders.finetune import training_pairs

    entries = load_corpus(MINI_CORPUS)
    by_entry = {e.id: [p.embed_text for p in split_passages([e])] for e in entries}
    anchors, positives = training_pairs(entries, [("mon admin est parti", "gestionnaire")])
    own, _ = training_pairs(entries)
    assert len(anchors) == len(own) + len(by_entry["gestionnaire"])
    assert [p for a, p in zip(anchors, positives, strict=True) if a == "mon admin est parti"] == by_entry[
        "gestionnaire"
    ]
    with pytest.raises(ValueError, match="'nope'"):
        training_pairs(entries, [("q ?", "nope")])


def test_adapt_folds_split_the_answered_entries_and_user_questions_label_them():
    from service.evaluation.datasets import user_questions
    from service.evaluation.methods import adapt_folds

    entries = load_corpus(MINI_CORPUS)
    queries = [EvalQuery(f"{e.id}-{i}", f"{e.id} q{i}", frozenset({e.id})) for e in entries for i in range(2)]
    evalset = EvalSet("mini", entries, queries)
    folds = adapt_folds(evalset, folds=2, seed=1)
    assert len(folds) == 2 and not folds[0] & folds[1] and folds[0] | folds[1] == {e.id for e in entries}
    assert adapt_folds(evalset, folds=2, seed=1) == folds, "seeded"
    assert user_questions(evalset) == [(q.text, next(iter(q.relevant))) for q in queries]


def test_entries_checksum_is_the_checksum_of_the_written_corpus(tmp_path):
    from service.corpus import corpus_checksum
    from service.evaluation.datasets import entries_checksum, write_corpus

    entries = load_corpus(MINI_CORPUS)
    assert entries_checksum(entries) == corpus_checksum(write_corpus(entries, tmp_path / "c.jsonl"))
    assert entries_checksum(entries[1:]) != entries_checksum(entries)

"""Entry scoring: the engine's ranking equals a brute-force fusion over every vector, and the answer decision's
closeness rule (``search/decision/rules.py``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.corpus import lexical_text
from service.evaluation.fitting import fit_calibration
from service.evaluation.methods import BaselineScoring
from service.indexing.scoring import Scoring
from service.indexing.store import load_index
from service.search.decision.rules import closeness
from service.search.engine import SearchEngine

WORDS = [
    "compte",
    "facture",
    "mandat",
    "siret",
    "mail",
    "activation",
    "gestionnaire",
    "structure",
    "portail",
    "fournisseur",
    "paiement",
    "rejet",
    "statut",
    "avoir",
    "devis",
    "marché",
    "sous-traitant",
    "service",
    "exécutant",
    "engagement",
    "juridique",
]


@pytest.fixture
def large_corpus(tmp_path):
    """300 entries of random words (some with alternative questions): enough that candidate search must prune."""
    rng = np.random.default_rng(7)
    path = tmp_path / "large.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(300):
            entry = {
                "id": f"e{i}",
                "question": " ".join(rng.choice(WORDS, 4)),
                "answer": "\n\n".join(" ".join(rng.choice(WORDS, 12)) for _ in range(rng.integers(1, 4))),
            }
            if i % 3 == 0:
                entry["alt_questions"] = [" ".join(rng.choice(WORDS, 3))]
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
    return path


def brute_force(engine: SearchEngine, query: str, vector: np.ndarray) -> tuple[dict, dict]:
    """Every entry's ranking score and calibrated score from all of its vectors, without the candidate search.

    Ranking: best question (own or alternative) with the question weight raised by its alternative questions;
    score: the entry's own question, or an alternative one less the discount, at the fitted weight.
    """
    matrix = engine.index.vectors.reconstruct(np.arange(len(engine.index.vectors)))
    cos = matrix @ vector
    lexical = engine.lexical.scores(query).scores
    ranking, scores = {}, {}
    for i, (faq_id, entry) in enumerate(engine.index.entries.items()):
        rows = [r for r, row in enumerate(engine.index.rows) if row.faq_id == faq_id]
        kinds = {r: engine.index.rows[r].kind for r in rows}
        q = max(cos[r] for r in rows if kinds[r] in ("question", "alt_question"))
        own = max(cos[r] for r in rows if kinds[r] == "question")
        p = max(cos[r] for r in rows if kinds[r] == "passage")
        alts = np.array(len(entry.alt_questions), dtype=float)
        ranking[faq_id] = float(engine.scoring.fuse(q, p, lexical[i], alts))
        decided = max(own, q - engine.scoring.alt_question_discount)
        scores[faq_id] = float(engine.scoring.calibrate(engine.scoring.fuse(decided, p, lexical[i])))
    return ranking, scores


@pytest.mark.parametrize("scoring", [{}, {"question_weight": 0.8, "lexical_weight": 0.3}, {"combine": "max"}])
def test_engine_ranking_equals_brute_force(make_index, fake_embedder, large_corpus, scoring):
    index = load_index(make_index(large_corpus))
    # "max" is an evaluation baseline's fusion: that scoring replaces the index's whole.
    chosen = BaselineScoring.over(index.manifest.scoring, **scoring) if "combine" in scoring else scoring
    engine = SearchEngine(fake_embedder, index, scoring=chosen)
    assert len(engine.index.rows) > 3 * 100  # more vectors than the first pass looks at
    for query in (
        "mandat siret",
        "paiement rejet fournisseur",
        "statut du devis",
        "engagement juridique service",
        "rien à voir",
    ):
        vector = fake_embedder.encode([query])[0]
        ranking, scores = brute_force(engine, query, vector)
        expected = sorted(ranking, key=lambda k: -ranking[k])[:10]
        outcome = engine.search(query, top_k=10)
        got = outcome.results
        assert [r.faq_id for r in got][:3] == expected[:3]
        np.testing.assert_allclose([r.score for r in got], [scores[r.faq_id] for r in got], atol=1e-5)
        # The decision: the first-ranked entry's score against the threshold and against every other entry's.
        first = expected[0]
        best_other = max(v for k, v in scores.items() if k != first)
        close = closeness([scores[first], best_other], engine.scoring.answer_threshold, engine.scoring.answer_margin)
        if close is not None:
            assert not outcome.answered and outcome.reason["code"] == close


def test_alternative_question_match_is_explained(engine):
    best = engine.search("facture sous-traitant", top_k=3).results[0]
    assert best.faq_id == "factures"
    assert best.match["by"] == "alt_question" and best.match["matched_question"] == "facture sous-traitant"
    assert best.match["question_similarity"] == pytest.approx(1.0, abs=1e-4)
    assert set(best.match["terms"]) == {"facture", "traitant"}  # "sous" is a stopword


def test_a_passage_match_is_explained(engine):
    best = engine.search("le gestionnaire a quitté la structure", top_k=1).results[0]
    assert best.faq_id == "gestionnaire" and best.match["by"] == "passage"
    assert best.section == "Si le gestionnaire a quitté la structure"


def test_lexical_text_holds_every_question_and_the_answer(engine):
    text = lexical_text(engine.index.entries["factures"])
    assert text.startswith("Comment déposer une facture de sous-traitance ?\nfacture sous-traitant\n")


def test_calibrated_scores_are_monotone_probabilities():
    s = Scoring()
    fused = np.linspace(-1, 2, 50)
    p = s.calibrate(fused)
    assert ((p >= 0) & (p <= 1)).all() and (np.diff(p) >= 0).all()


def test_answer_decision_uses_threshold_and_margin():
    def answered(scores, threshold=0.6):
        return closeness(scores, threshold, margin=0.1) is None

    assert answered([0.9, 0.5])
    assert closeness([0.9, 0.85], 0.6, 0.1) == "ambiguous", "too close to the second entry"
    assert closeness([0.55, 0.1], 0.6, 0.1) == "no_close_entry", "below the threshold"
    assert answered([0.55, 0.1], threshold=0.5), "a request may lower the threshold"
    assert answered([0.7]) and not answered([])


def test_scoring_round_trips_and_ignores_unknown_keys():
    s = Scoring(question_weight=0.4, slope=12.0)
    assert Scoring.from_dict({**s.to_dict(), "future_field": 1}) == s
    assert Scoring.from_dict(None) == Scoring()
    assert s.with_overrides(answer_threshold=None, lexical_weight=0.5) == Scoring(
        question_weight=0.4, slope=12.0, lexical_weight=0.5
    )


def test_fit_calibration_recovers_a_known_logistic():
    rng = np.random.default_rng(3)
    x = rng.uniform(0.6, 1.0, 20_000)
    p = 1 / (1 + np.exp(-(30 * x - 24)))
    y = (rng.uniform(size=x.size) < p).astype(int)
    slope, intercept = fit_calibration(x, y)
    assert slope == pytest.approx(30, rel=0.1) and intercept == pytest.approx(-24, rel=0.1)


def test_an_index_built_before_the_alt_question_settings_decides_as_it_was_built_and_a_rebuild_takes_today_s():
    old = {"question_weight": 0.2, "answer_threshold": 0.16}
    served = Scoring.from_dict(old)
    assert (served.question_weight_per_alt, served.alt_question_discount, served.answerability) == (0.0, 0.0, False)
    rebuilt = Scoring.carried_over(old)
    assert rebuilt.question_weight_per_alt == Scoring.question_weight_per_alt > 0
    assert rebuilt.alt_question_discount == Scoring.alt_question_discount > 0
    assert rebuilt.answerability == Scoring().answerability, "a setting the old build lacked takes today's default"
    assert Scoring.carried_over({**old, "answer_threshold": 0.3, "answerability": None}).answer_threshold == 0.3
    with pytest.raises(ValueError):
        Scoring.carried_over({"alt_question_discount": -1})


def test_alternative_questions_rank_an_entry_but_its_score_and_the_decision_discount_them():
    """Entry A has four alternative questions, its best one nearer the query than B's own question; on the
    decision's scale B is ahead. A ranks first, the scores show both as calibrated, and the call is a close one."""
    scoring = Scoring()
    question = np.array([0.97, 0.92])  # best question: A's is an alternative one
    own = np.array([0.90, 0.92])
    passage = np.array([0.89, 0.915])
    lexical = np.zeros(2)
    ranking = scoring.fuse(question, passage, lexical, np.array([4.0, 0.0]))
    assert ranking[0] > ranking[1], "A ranks first on its users' wordings"
    decided = scoring.calibrate(
        scoring.fuse(np.maximum(own, question - scoring.alt_question_discount), passage, lexical)
    )
    assert decided[0] < decided[1]
    assert closeness([float(decided[0]), float(decided[1])], scoring.answer_threshold, scoring.answer_margin) == (
        "ambiguous"
    )


def test_the_decision_rules_in_order_each_give_their_reason():
    """``decide`` applies closeness, known non-answers, vagueness, then the check: the first that refuses names the
    reason, and an entry that passes them all (no check) is an answer."""
    from service.search.decision import Evidence, decide, features
    from service.search.decision.rules import known_non_answer, too_vague

    found = features((0.9, 0.9, 0.9, 0.5), 0.5, (0.2, 0.2), True, 0.5, {"facture": "facture"},
                     frozenset({"facture"}), {"facture": 1.0}, 5)  # fmt: skip
    scoring = Scoring(answer_threshold=0.5, answer_margin=0.1, non_answer_margin=0.05)

    def evidence(**changes):
        base = {"score": 0.9, "other_score": 0.2, "question": 0.9, "marked": float("-inf"), "marked_text": None,
                "term_entries": (1,), "features": found}  # fmt: skip
        return Evidence(**{**base, **changes})

    assert decide(evidence(), scoring, None) is None
    assert decide(evidence(score=0.4), scoring, None)["code"] == "no_close_entry"
    assert decide(evidence(score=0.4), scoring, None, threshold=0.3) is None, "a request may lower the threshold"
    assert decide(evidence(other_score=0.85), scoring, None)["code"] == "ambiguous"
    marked = decide(evidence(marked=0.96, marked_text="Comment supprimer ?"), scoring, None)
    assert marked["code"] == "known_non_answer" and "Comment supprimer ?" in marked["message"]
    assert decide(evidence(marked=0.94), scoring, None) is None, "within the margin of its own question"
    assert known_non_answer(0.99, 0.985, 0.05), "a near copy of the mark, nearer it than the question"
    assert decide(evidence(term_entries=(5,)), scoring, None)["code"] == "too_vague"
    assert decide(evidence(term_entries=(5,), question=0.99), scoring, None) is None, "a near copy of a question"
    assert not too_vague((2, 2), 2), "two entries: every word in both is not vague"
    assert not too_vague((), 5), "no content word: not vague (the other rules decide)"

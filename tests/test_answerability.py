"""The answer check: does the first entry answer *this* question? Its model file, its features, the ``reason`` of
a refusal, and (slow tier, real model) the team's Chorus Pro dev sets: uncovered questions refused, paraphrases
answered, an entry removed and its questions refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CHORUS_CORPUS, PARAPHRASES

from service.corpus import load_corpus
from service.evaluation.datasets import CHORUS_GAPS, chorus_gaps, write_corpus
from service.indexing.build import build_index
from service.indexing.scoring import FEATURES, default_answer_model
from service.indexing.store import load_index
from service.search.decision import AnswerCheck, features
from service.search.engine import SearchEngine

GAPS = chorus_gaps()


def _check(weights: dict | None = None, thresholds=((5, 0.5), (500, 0.2)), bias: float = 0.0) -> dict:
    """A check in its JSON form: zero weights (probability sigmoid(bias)) unless given."""
    return {
        "weights": {f: (weights or {}).get(f, 0.0) for f in FEATURES},
        "mean": dict.fromkeys(FEATURES, 0.0),
        "scale": dict.fromkeys(FEATURES, 1.0),
        "bias": bias,
        "thresholds": [list(t) for t in thresholds],
    }


def test_the_shipped_check_loads_and_covers_every_feature():
    check = default_answer_model()
    assert check is not None, "service/indexing/answerability.json is missing: faq-search fit-answerability"
    assert set(check.weights) == set(FEATURES)
    sizes = [n for n, _ in check.thresholds]
    assert sizes == sorted(sizes) and all(0 <= t <= 1 for _, t in check.thresholds)
    assert "covid_quebec_fr" in check.fitted_on


@pytest.mark.parametrize(
    "damage",
    ["not_a_dict", "missing_feature", "unknown_feature", "nan_weight", "zero_scale", "unsorted", "above_one", "empty"],
)
def test_a_damaged_check_is_refused(damage):
    data = _check()
    if damage == "not_a_dict":
        data = [data]
    elif damage == "missing_feature":
        del data["weights"]["coverage"]
    elif damage == "unknown_feature":
        data["mean"]["nonsense"] = 1.0
    elif damage == "nan_weight":
        data["weights"]["margin"] = float("nan")
    elif damage == "zero_scale":
        data["scale"]["fused"] = 0.0
    elif damage == "unsorted":
        data["thresholds"] = [[500, 0.2], [5, 0.5]]
    elif damage == "above_one":
        data["thresholds"] = [[5, 1.5]]
    elif damage == "empty":
        data["thresholds"] = []
    with pytest.raises(ValueError):
        AnswerCheck.from_dict(data)


def test_the_threshold_follows_the_faq_size_in_log_scale_and_is_clamped():
    check = AnswerCheck.from_dict(_check(thresholds=((5, 0.5), (500, 0.2))))
    assert check.threshold(5) == pytest.approx(0.5) and check.threshold(500) == pytest.approx(0.2)
    assert check.threshold(50) == pytest.approx(0.35)  # halfway in log(size)
    assert check.threshold(1) == pytest.approx(0.5) and check.threshold(10**6) == pytest.approx(0.2)


def test_features_measure_how_much_of_the_query_the_entry_covers():
    found = features(
        top=(0.9, 0.92, 0.88, 0.4),
        second_fused=None,
        leg_margins=(0.05, 0.02),
        agree=True,
        centroid_cosine=0.85,
        query_terms={"navig": "navigateur", "chorus": "chorus", "utilis": "utiliser"},
        entry_terms=frozenset({"chorus", "compt"}),
        idf={"chorus": 0.1, "compt": 0.9, "utilis": 1.2},
        entries=5,
    )
    v = found.values
    assert found.uncovered == ("navigateur", "utiliser") and found.entries == 5
    assert v["coverage"] == pytest.approx(1 / 3) and v["unknown"] == pytest.approx(1 / 3)
    # "chorus" is in every entry (low idf): covering it is worth little.
    assert v["idf_coverage"] < v["coverage"]
    assert v["margin"] == 0.0, "one entry: no lead to measure"
    assert v["specificity"] == pytest.approx(0.92 - 0.85)
    assert v["agree"] == 1.0 and v["terms"] == pytest.approx(3 / 8)
    assert set(v) == set(FEATURES)


def _found(uncovered=("navigateur",)):
    """Features of a query with the word "chorus" (covered) and ``uncovered`` words, in a five-entry FAQ."""
    return features(
        top=(0.0, 0.0, 0.0, 0.0),
        second_fused=0.0,
        leg_margins=(0.0, 0.0),
        agree=False,
        centroid_cosine=0.0,
        query_terms={w: w for w in ("chorus", *uncovered)},
        entry_terms=frozenset({"chorus"}),
        idf={"chorus": 1.0},
        entries=5,
    )


def test_a_refusal_names_the_words_the_entry_lacks_else_the_strongest_pull():
    lenient = AnswerCheck.from_dict(_check({"coverage": 4.0}, thresholds=((1, 0.5),)))
    assert lenient.refusal(_found()) is None  # coverage 0.5, mean 0: logit +2, p 0.88
    data = _check({"coverage": 4.0}, thresholds=((1, 0.5),))
    data["mean"]["coverage"] = 1.0  # half the words missing now pulls the logit to -2
    why = AnswerCheck.from_dict(data).refusal(_found())
    assert why["code"] == "not_covered" and why["terms"] == ["navigateur"] and "navigateur" in why["message"]
    assert why["confidence"] == pytest.approx(1 / (1 + 2.718281828**2), abs=1e-3)
    # Every word covered: the group that pulled the probability down most names the reason.
    data = _check({"margin": 2.0, "fused": 1.0}, thresholds=((1, 0.99),))
    data["mean"]["margin"] = 1.0  # margin 0 is far below: a pull of -2
    assert AnswerCheck.from_dict(data).refusal(_found(uncovered=()))["code"] == "ambiguous"
    data["mean"].update(margin=0.0, fused=3.0)  # now the score is what is far below
    found = _found(uncovered=())
    assert AnswerCheck.from_dict(data).refusal(found)["code"] == "no_close_entry"


def test_every_refusal_of_the_engine_carries_a_reason_and_an_answer_none(make_index, fake_embedder):
    index = load_index(make_index())
    accepting = SearchEngine(fake_embedder, index, scoring={"answerability": _check(bias=10.0)})
    answered = accepting.search("transférer le rôle de gestionnaire principal", min_score=0.0)
    assert answered.answered is True and answered.reason is None
    assert answered.to_dict()["reason"] is None
    far = accepting.search("transférer le rôle de gestionnaire principal", min_score=1.0)
    assert far.answered is False and far.reason["code"] == "no_close_entry" and far.reason["confidence"] is None
    tied = SearchEngine(fake_embedder, index, scoring={"answer_margin": 1.0})
    assert tied.search("gestionnaire principal", min_score=0.0).reason["code"] == "ambiguous"
    # A check that wants every word covered: the query's word found in no entry is named.
    wants_all = _check({"coverage": 4.0}, thresholds=((1, 0.5),))
    wants_all["mean"]["coverage"] = 1.0
    strict = SearchEngine(fake_embedder, index, scoring={"answerability": wants_all, "answer_threshold": 0.0})
    why = strict.search("gestionnaire principal navigateur").reason
    assert why["code"] == "not_covered" and why["terms"] == ["navigateur"]
    assert why["message"] == "the best entry does not cover the question's key words: navigateur"
    assert 0 < why["confidence"] < 0.5


def test_the_build_can_leave_the_check_out(make_index, fake_embedder, tmp_path):
    """``build_index.py --no-answer-check`` writes ``answerability: false``: the threshold and margin alone decide."""
    from service.indexing.scoring import Scoring

    out = tmp_path / "no-check"
    scoring = Scoring().with_overrides(answerability=False)
    build_index(CHORUS_CORPUS, out, fake_embedder, show_progress=False, scoring=scoring)
    index = load_index(out)
    assert index.manifest.scoring_settings["answerability"] is False
    assert SearchEngine(fake_embedder, index).answer_check is None
    assert SearchEngine(fake_embedder, load_index(make_index())).answer_check is not None


# ---- slow tier: the real model on the Chorus Pro FAQ ----

#: Questions no entry answers that the service still answers today (strict xfails: the day one is refused, the
#: suite says so and it leaves this list). Measured with scripts/fit_answerability.py (docs/quality.md).
GAPS_ANSWERED = {
    "j'ai oublié mon mot de passe chorus pro",
    "mon compte est bloqué apres 3 essais de connexion",
    "comment changer l'adresse mail de mon compte",
    "supprimer mon compte chorus pro definitivement",
    "comment faire un avoir sur chorus pro",
    "ma facture a été rejetée, pourquoi ?",
    "facture rejetee motif code service manquant que faire",
    "j'ai envoyé une facture en double, comment l'annuler",
    "ma facture est au statut suspendue c'est quoi",
    "suivre le traitement de mes factures envoyees",
    "ou trouver le siret de l'administration a facturer",
    "quels formats de facture sont acceptes (pdf, xml, factur-x) ?",
    "comment envoyer mes factures par EDI",
    "raccordement api chorus pro via piste",
    "ou trouver la documentation des api chorus",
    "mon logiciel de facturation peut il envoyer direct a chorus",
    "facture avec autoliquidation de la tva",
    "retenue de garantie sur facture de travaux",
    "comment suivre ma sollicitation au support",
    "la plateforme est en panne ? impossible d'acceder au site",
    "changer la raison sociale de mon entreprise sur chorus",
    "fusion de deux societes que deviennent les factures",
    "modifier les coordonnées bancaires rib de la structure",
    "je suis un particulier, puis je utiliser chorus pro ?",
    "arreter de recevoir les mails de chorus pro",
    "comment recycler une facture rejetee",
    "numerotation des factures, peut on reutiliser un numero",
    "je suis une collectivite comment je recois les factures",
    "valider une facture en tant que service facturier",
    "comment creer un bon de commande dans chorus",
    "chorus pro marche pas sur mon telephone portable",
    "combien coute chorus pro, c'est payant ?",
}
#: Paraphrases not answered with their entry first today (the ranking misses of test_retrieval.py among them).
PARAPHRASES_MISSED = {
    "inscription chorus pro premiere fois",
    "je vois pas l'espace factures émises, comment l'avoir ?",
    "notre admin est parti sans passer la main",
    "mon administrateur est parti à la retraite et personne n'a les droits",
    "passer les droits d'administrateur à quelqu'un d'autre",
}


def test_the_dev_sets_are_large_enough_and_apart():
    assert len(GAPS) >= 60 and len(PARAPHRASES) >= 50
    assert len(set(GAPS)) == len(GAPS)
    issue_examples = {
        "Quel navigateur faut-il utiliser pour Chorus Pro ?",
        "Comment ajouter un nouvel utilisateur à ma structure ?",
        "Comment créer une facture de situation ?",
    }
    assert not issue_examples & set(GAPS), "the issue's examples are not part of the dev set"
    assert set(GAPS) >= GAPS_ANSWERED and {q for q, _ in PARAPHRASES} >= PARAPHRASES_MISSED


def _xfail_if(listed: bool, why: str):
    return [pytest.mark.xfail(strict=True, reason=why)] if listed else []


@pytest.mark.slow
@pytest.mark.parametrize(
    "query", [pytest.param(q, marks=_xfail_if(q in GAPS_ANSWERED, "answered today"), id=q) for q in GAPS]
)
def test_a_question_no_entry_answers_is_refused(real_engine, query):
    response = real_engine.search(query)
    assert response.answered is False, response.results[0].faq_id
    assert response.reason["code"] in ("no_close_entry", "ambiguous", "not_covered", "too_vague")
    assert response.results, "suggestions are still returned"


@pytest.mark.slow
@pytest.mark.parametrize(
    "query,faq_id",
    [
        pytest.param(q, f, marks=_xfail_if(q in PARAPHRASES_MISSED, "not answered with its entry today"), id=q)
        for q, f in PARAPHRASES
    ],
)
def test_a_paraphrase_is_answered_with_its_entry(real_engine, query, faq_id):
    response = real_engine.search(query)
    assert response.answered is True, response.reason
    assert response.results[0].faq_id == faq_id and response.reason is None


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue target missed: 36 of 68 refused (53 %), target 90 %")
def test_the_target_share_of_uncovered_questions_is_refused(real_engine):
    refused = sum(not real_engine.search(q).answered for q in GAPS)
    assert refused / len(GAPS) >= 0.90


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue target missed: 45 of 50 answered with their entry (90 %), target 95 %")
def test_the_target_share_of_paraphrases_is_answered_with_their_entry(real_engine):
    right = 0
    for query, faq_id in PARAPHRASES:
        response = real_engine.search(query)
        right += response.answered and response.results[0].faq_id == faq_id
    assert right / len(PARAPHRASES) >= 0.95


@pytest.mark.slow
def test_leave_entry_out_the_questions_of_a_removed_entry_are_mostly_refused(real_embedder, tmp_path):
    """Each Chorus entry removed in turn, its paraphrases asked of the other four (measured: 34 of 50 refused)."""
    entries = load_corpus(CHORUS_CORPUS)
    refused = 0
    for gone in entries:
        corpus = write_corpus([e for e in entries if e.id != gone.id], tmp_path / f"minus-{gone.id}.jsonl")
        out = build_index(corpus, tmp_path / f"index-{gone.id}", real_embedder, show_progress=False)
        assert out.counts.entries == 4
        engine = SearchEngine(real_embedder, load_index(tmp_path / f"index-{gone.id}"))
        for query, faq_id in PARAPHRASES:
            if faq_id == gone.id:
                response = engine.search(query)
                refused += not response.answered
    assert refused >= 34, f"{refused} of {len(PARAPHRASES)} refused"


@pytest.mark.slow
@pytest.mark.parametrize(
    "query,code,word",
    [
        ("recette de la tarte aux pommes", "no_close_entry", "recette"),
        ("je narrive plus a me connecter a chorus", "not_covered", "connecter"),
    ],
)
def test_each_kind_of_refusal_says_why(real_engine, query, code, word):
    reason = real_engine.search(query).reason
    assert reason is not None and reason["code"] == code
    assert word in reason["terms"]
    assert (word in reason["message"]) == (code == "not_covered")


@pytest.mark.slow
def test_two_entries_too_close_are_ambiguous_at_the_strict_operating_point(real_embedder, real_index_dir):
    """With ``--answer-margin 0.1`` (docs/quality.md), a question between sign-up and activation is not decided."""
    strict = SearchEngine(real_embedder, load_index(real_index_dir), scoring={"answer_margin": 0.1})
    response = strict.search("inscription chorus pro premiere fois")
    assert response.answered is False and response.reason["code"] == "ambiguous"
    assert {r.faq_id for r in response.results[:2]} == {"chorus-pro-1", "chorus-pro-2"}


def test_the_dev_set_file_is_valid_jsonl():
    lines = CHORUS_GAPS.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    assert all(set(r) == {"query", "topic"} and r["query"].strip() for r in rows)
    assert [r["query"] for r in rows] == GAPS


@pytest.mark.slow
def test_the_fit_reports_cross_fitted_figures_and_refuses_more_than_the_threshold(tmp_path):
    """scripts/fit_answerability.py on covid_quebec_fr (../shared), without writing the model: the cross-fitted
    check refuses more in-domain questions without an answer than the score threshold alone, at every size."""
    from conftest import shared

    from service.cli.fit_answerability import main

    data = shared("data")
    before = (Path(__file__).resolve().parents[1] / "service" / "indexing" / "answerability.json").read_bytes()
    report = tmp_path / "report.json"
    assert main(["--data-dir", str(data), "--dry-run", "--json", str(report), "--workdir", str(tmp_path)]) == 0
    figures = json.loads(report.read_text())
    alone, checked = figures["covid_quebec_fr"]["threshold only"], figures["covid_quebec_fr"]["with the check"]
    assert checked["gone/refused-gone"] > alone["gone/refused-gone"] + 0.1
    for size in (5, 10, 25):
        assert checked[f"small-{size}/refused-gap"] > alone[f"small-{size}/refused-gap"]
    assert checked["full/refused-ood"] >= 0.97 and checked["full/answered-right"] >= 0.85
    assert set(figures["check"]["weights"]) == set(FEATURES)
    after = (Path(__file__).resolve().parents[1] / "service" / "indexing" / "answerability.json").read_bytes()
    assert after == before, "--dry-run writes no model"


# ---- known non-answers: an entry's not_questions ----


def _with_not_questions(tmp_path, not_questions: list[str]) -> object:
    lines = [json.loads(line) for line in CHORUS_CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    lines[1]["not_questions"] = not_questions  # chorus-pro-1 (line 0 is the "faq" header)
    corpus = tmp_path / "with-not-questions.jsonl"
    corpus.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return corpus


def test_known_non_answers_are_vectors_of_their_own_never_a_match(tmp_path, fake_embedder):
    from service.search.lexical import FrenchAnalyzer

    corpus = _with_not_questions(tmp_path, ["mot de passe oublié navigateur"])
    manifest = build_index(corpus, tmp_path / "index", fake_embedder, show_progress=False)
    assert manifest.counts.vectors_by_kind["not_question"] == 1
    engine = SearchEngine(fake_embedder, load_index(tmp_path / "index"), cache_size=0)
    assert engine.entry("chorus-pro-1")["not_questions"] == ["mot de passe oublié navigateur"]
    # Not in the lexical leg: "navigateur" is in no entry's text.
    terms = FrenchAnalyzer().terms("navigateur")
    assert not any(t in engine.lexical.idf for t in terms)
    # The same words as the known non-answer: refused, and the message quotes it.
    response = engine.search("mot de passe oublié navigateur", min_score=0.0)
    assert response.answered is False and response.results[0].faq_id == "chorus-pro-1"
    assert response.reason["code"] == "known_non_answer"
    assert "'mot de passe oublié navigateur'" in response.reason["message"]
    assert all(r.match["matched_question"] != "mot de passe oublié navigateur" for r in response.results)
    # The entry's own question still answers (the check accepting all, so only the known non-answer can refuse).
    accepting = SearchEngine(
        fake_embedder, load_index(tmp_path / "index"), scoring={"answerability": _check(bias=10.0)}, cache_size=0
    )
    own = accepting.search("Comment créer mon compte Chorus Pro ?", min_score=0.0)
    assert own.answered is True and own.results[0].faq_id == "chorus-pro-1"
    assert accepting.search("mot de passe oublié navigateur", min_score=0.0).reason["code"] == "known_non_answer"


@pytest.mark.slow
def test_a_known_non_answer_refuses_its_rewordings_not_the_entry_s_paraphrases(tmp_path, real_embedder):
    """The real model: "forgotten password" marked on the sign-up entry. Near rewordings of it (typos, words
    dropped) are refused; the sign-up paraphrases are still answered. A looser rewording ("mot de passe oublié
    chorus pro", 0.951 to the mark against 0.897 to the question) is not: the margin is 0.07."""
    corpus = _with_not_questions(tmp_path, ["j'ai oublié mon mot de passe chorus pro"])
    build_index(corpus, tmp_path / "index", real_embedder, show_progress=False)
    engine = SearchEngine(real_embedder, load_index(tmp_path / "index"), cache_size=0)
    for query in ("jai oublie mon mot de passe chorus pro", "oublié mon mot de passe chorus pro"):
        response = engine.search(query)
        assert response.answered is False and response.reason["code"] == "known_non_answer", query
    for query, faq_id in PARAPHRASES:
        if faq_id == "chorus-pro-1" and query not in PARAPHRASES_MISSED:
            response = engine.search(query)
            assert response.answered and response.results[0].faq_id == faq_id, query


def test_answered_does_not_depend_on_top_k(make_index, fake_embedder):
    """The margin compares the two best candidates even when one result is asked for."""
    engine = SearchEngine(fake_embedder, load_index(make_index()), scoring={"answer_margin": 0.5}, cache_size=0)
    for query in ("gestionnaire principal", "facture sous-traitant", "lien d'activation"):
        one, five = engine.search(query, top_k=1, min_score=0.0), engine.search(query, top_k=5, min_score=0.0)
        assert (one.answered, one.reason) == (five.answered, five.reason), query


def test_a_question_naming_only_what_every_entry_shares_is_too_vague(fake_embedder, tmp_path):
    build_index(CHORUS_CORPUS, tmp_path / "index", fake_embedder, show_progress=False)
    engine = SearchEngine(fake_embedder, load_index(tmp_path / "index"), scoring={"answerability": _check(bias=9.0)})
    vague = engine.search("Chorus Pro ?", min_score=0.0)
    assert vague.answered is False and vague.reason["code"] == "too_vague" and vague.reason["terms"] == []
    assert "no word that tells the entries apart" in vague.reason["message"]
    assert engine.search("compte chorus pro", min_score=0.0).answered, "'compte' is in three entries of five"


def test_in_a_two_entry_faq_an_entry_s_own_question_is_not_too_vague(fake_embedder, tmp_path):
    """Two entries share every word of one's question: the rule is for FAQs of three or more."""
    corpus = tmp_path / "two.jsonl"
    corpus.write_text(
        '{"id": "a", "question": "Comment créer un compte ?", "answer": "Remplissez le formulaire."}\n'
        '{"id": "b", "question": "Comment supprimer un compte ?", "answer": "Un compte créé se supprime ici."}\n',
        encoding="utf-8",
    )
    build_index(corpus, tmp_path / "index", fake_embedder, show_progress=False)
    engine = SearchEngine(fake_embedder, load_index(tmp_path / "index"), scoring={"answerability": _check(bias=9.0)})
    response = engine.search("Comment créer un compte ?", min_score=0.0)
    assert response.answered is True and response.results[0].faq_id == "a"


def test_a_one_entry_faq_can_still_refuse(fake_embedder, tmp_path):
    """With no second entry there is no lead to measure: the check decides on the other features, and a query
    sharing no word with the entry is refused (it used to count the whole score as a lead)."""
    corpus = tmp_path / "one.jsonl"
    corpus.write_text('{"id": "a", "question": "Comment créer un compte ?", "answer": "Le formulaire."}\n')
    build_index(corpus, tmp_path / "index", fake_embedder, show_progress=False)
    engine = SearchEngine(fake_embedder, load_index(tmp_path / "index"), cache_size=0)
    assert engine.search("recette de la tarte aux pommes", min_score=0.0).answered is False
    found = engine.search("Comment créer un compte ?", min_score=0.0).features
    assert found.values["margin"] == 0.0 and found.values["question_margin"] == 0.0


def test_known_non_answers_leave_the_centroid_alone_and_are_quoted_briefly(tmp_path, fake_embedder):
    from service.search.decision.reasons import MAX_QUOTED, reason

    plain = SearchEngine(fake_embedder, load_index(build_index_dir(tmp_path / "a", CHORUS_CORPUS, fake_embedder)))
    marked_corpus = _with_not_questions(tmp_path, [f"question hors sujet numéro {n}" for n in range(200)])
    marked = SearchEngine(fake_embedder, load_index(build_index_dir(tmp_path / "b", marked_corpus, fake_embedder)))
    assert np.allclose(plain._centroid, marked._centroid, atol=1e-6)
    long = reason("known_non_answer", marked="x" * 10_000)
    assert len(long["message"]) < len(reason("known_non_answer")["message"]) + MAX_QUOTED + 10
    assert long["message"].endswith("…'")


def build_index_dir(out, corpus, embedder):
    build_index(corpus, out, embedder, show_progress=False)
    return out


@pytest.mark.slow
def test_a_copy_of_a_known_non_answer_is_refused_even_near_the_entry_s_question(tmp_path, real_embedder):
    """ "Comment supprimer mon compte Chorus Pro ?" is within the margin of "Comment créer mon compte Chorus Pro ?"
    (0.96): marked on that entry, the same question (or a near copy) is refused all the same."""
    corpus = _with_not_questions(tmp_path, ["Comment supprimer mon compte Chorus Pro ?"])
    build_index(corpus, tmp_path / "index", real_embedder, show_progress=False)
    engine = SearchEngine(real_embedder, load_index(tmp_path / "index"), cache_size=0)
    for query in ("Comment supprimer mon compte Chorus Pro ?", "comment supprimer mon compte chorus pro"):
        response = engine.search(query)
        assert response.reason is not None and response.reason["code"] == "known_non_answer", query
    assert engine.search("Comment créer mon compte Chorus Pro ?").answered is True


@pytest.mark.slow
def test_the_product_name_alone_is_not_an_answer(real_engine):
    for query in ("chorus pro", "Chorus Pro ?"):
        response = real_engine.search(query)
        assert response.answered is False and response.reason["code"] == "too_vague", query


def test_every_reason_code_is_in_the_schema_the_page_and_the_mcp_description():
    import typing

    from service.core.models import Reason
    from service.integrations.mcp import SEARCH_DESCRIPTION
    from service.search.decision import REASONS

    codes = set(REASONS)
    assert set(typing.get_args(Reason.model_fields["code"].annotation)) == codes
    page = (Path(__file__).resolve().parents[1] / "service" / "http" / "static" / "app.js").read_text(encoding="utf-8")
    for code in codes:
        assert code in page and code in SEARCH_DESCRIPTION, code

"""What the review queue is worth, on covid_quebec_fr (``service/evaluation/review_simulation.py``, docs/learning.md):
approved alternative questions raise ranking without making the service answer questions about missing answers,
and known non-answers raise refusals without losing right answers. The issue's R@1 target stays a strict xfail."""

from __future__ import annotations

import pytest
from conftest import shared

from service.evaluation.methods import CachingEmbedder
from service.evaluation.review_simulation import alt_questions_curve, non_answers_curve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedder(real_embedder):
    return CachingEmbedder(real_embedder)


@pytest.fixture(scope="module")
def alt_curve(embedder, tmp_path_factory):
    """The published protocol (three seeds), at k = 0 and 4."""
    return {
        row["k"]: row
        for row in alt_questions_curve(shared("data"), embedder, tmp_path_factory.mktemp("alt"), ks=(0, 4))
    }


def test_approved_questions_raise_ranking_and_keep_refusals(alt_curve):
    before, after = alt_curve[0], alt_curve[4]
    assert after["r@1"] >= before["r@1"] + 0.08 and after["mrr"] > before["mrr"]
    assert after["remaining_r@1"] > before["remaining_r@1"]
    assert after["answered_right"] >= before["answered_right"] + 0.05
    # The approvals must not make the service answer questions whose answer is missing, nor off-topic ones.
    assert after["gone_refused"] >= before["gone_refused"] - 0.03
    assert after["ood_refused"] >= 0.96


@pytest.mark.xfail(strict=True, reason="issue 15's target, R@1 >= 0.85 at k = 4: 0.814 measured (docs/learning.md)")
def test_four_approved_questions_per_answer_reach_the_target(alt_curve):
    assert alt_curve[4]["r@1"] >= 0.85


def test_known_non_answers_raise_refusals_as_approvals_accumulate(embedder, tmp_path):
    rows = {row["k"]: row for row in non_answers_curve(shared("data"), embedder, tmp_path, ks=(0, 4))}
    assert rows[4]["marked"] > 0
    assert rows[4]["gone_refused"] >= rows[0]["gone_refused"] + 0.08
    assert rows[4]["answered_right"] >= rows[0]["answered_right"] - 0.01

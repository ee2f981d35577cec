"""Fitting the answer check (``search/decision/answer_check.py``) on covid_quebec_fr, by leave-entry-out.

Every labelled question is asked in several FAQs built from covid_quebec_fr's 50 answers, with the service's own
builder and engine, and each time the engine's answer-check features are recorded with a label: 1 when the first
entry answers the question, 0 when it does not (a wrong first entry, an entry removed, an out-of-domain question):

- ``full``: the 50 answers with 676 PIAF paragraphs as distractors (the evaluation set as ``evaluate.py`` builds
  it), every question, plus out-of-domain PIAF questions;
- ``gone``: the same FAQ with a fifth of the answers removed, five times (each answer removed once), the removed
  answers' questions asked (the hard case: on topic, no answer);
- ``small``: FAQs of 5, 10 and 25 answers drawn at random, no distractors (an organisation's own small FAQ), their
  questions and a sample of the other answers' questions (on topic, not covered) and of out-of-domain questions.

The figures are cross-fitted: the answers are split in two folds, and each question's decision comes from a model
fitted on the other fold's questions. The model written to ``answerability.json`` is then fitted on all of them.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..corpus import FaqEntry, load_corpus
from ..indexing.scoring import FEATURES, AnswerCheckModel, Scoring
from ..search.decision import AnswerCheck
from ..search.engine import SearchEngine
from .datasets import EvalQuery, EvalSet, load_covid, questions_by_answer
from .methods import Method, build_engine, run_queries

#: Folds of covid_quebec_fr's answers for the cross-fitted figures.
FOLDS = 2
SEED = 11
#: Sizes of the small FAQs drawn from covid_quebec_fr's answers, and how many of each.
SMALL_SIZES = (5, 10, 25)
SMALL_DRAWS = 16
#: Questions of answers left out of a small FAQ, and out-of-domain questions, asked of each small FAQ.
SMALL_GAPS = 60
SMALL_OOD = 30
#: At each FAQ size, the check's threshold is the highest that keeps this share of right first entries answered
#: (the threshold and margin's refusals included).
KEEP_RIGHT = 0.92
#: Regularisation of the logistic regression (sklearn's C, on standardised features).
REGULARISATION = 1.0
#: Margins tried for known non-answers (``Scoring.non_answer_margin``) in the review-queue simulation.
NON_ANSWER_MARGINS = (0.0, 0.03, 0.05, 0.07, 0.1)
#: The calibrated score the first entry must reach before the check (the default index's ``answer_threshold``).
SCORE_THRESHOLD = Scoring.answer_threshold

NO_CHECK = {"answerability": False}


@dataclass(frozen=True)
class Example:
    """One question asked of one FAQ: its features, whether the first entry answers it, and where it comes from."""

    values: tuple[float, ...]
    label: int
    group: int  # the fold of the question's answer (out-of-domain questions: a fold by position)
    scenario: str  # full, gone, small-5, …
    kind: str  # right, wrong, gone, gap, ood
    score: float  # the first entry's calibrated score (the score threshold's input)
    entries: int  # the FAQ's size

    def close(self, score_threshold: float) -> bool:
        """Whether the score threshold lets it through to the check."""
        return self.score >= score_threshold


def _folds(ids: list[str], folds: int = FOLDS, seed: int = SEED) -> dict[str, int]:
    shuffled = sorted(ids)
    random.Random(seed).shuffle(shuffled)
    return {faq_id: k % folds for k, faq_id in enumerate(shuffled)}


def _ask(engine, embedder, queries: list[str]) -> list:
    return run_queries(engine, queries, embedder, top_k=2)


def _examples(responses, labels, groups, scenario, kinds) -> list[Example]:
    out = []
    for response, label, group, kind in zip(responses, labels, groups, kinds, strict=True):
        values = tuple(response.features.values[f] for f in FEATURES)
        score, entries = response.results[0].score, response.features.entries
        out.append(Example(values, int(label), group, scenario, kind, score, entries))
    return out


def _in_domain(evalset: EvalSet, queries: list[EvalQuery], engine, embedder, scenario, fold_of) -> list[Example]:
    responses = _ask(engine, embedder, [q.text for q in queries])
    right = [bool(r.results) and r.results[0].faq_id in q.relevant for r, q in zip(responses, queries, strict=True)]
    groups = [fold_of[min(q.relevant)] for q in queries]
    return _examples(responses, right, groups, scenario, ["right" if x else "wrong" for x in right])


def _negatives(texts: list[str], groups: list[int], engine, embedder, scenario, kind) -> list[Example]:
    responses = _ask(engine, embedder, texts)
    return _examples(responses, [0] * len(texts), groups, scenario, [kind] * len(texts))


def collect_examples(data_dir: str | os.PathLike, embedder, workdir: str | os.PathLike) -> list[Example]:
    """Every scenario's examples on covid_quebec_fr (see the module's docstring)."""
    workdir = Path(workdir)
    covid = load_covid(data_dir)
    answers = sorted({r for q in covid.queries for r in q.relevant})
    fold_of = _folds(answers)
    ood_groups = [k % FOLDS for k in range(len(covid.ood_queries))]
    rng = random.Random(SEED)
    examples: list[Example] = []

    full = build_engine(covid.entries, embedder, workdir / "full", Method("full", ""), NO_CHECK)
    examples += _in_domain(covid, covid.queries, full, embedder, "full", fold_of)
    examples += _negatives(covid.ood_queries, ood_groups, full, embedder, "full", "ood")

    shuffled = list(answers)
    rng.shuffle(shuffled)
    for k in range(5):
        removed = set(shuffled[k::5])
        kept = [e for e in covid.entries if e.id not in removed]
        engine = build_engine(kept, embedder, workdir / f"gone{k}", Method("gone", ""), NO_CHECK)
        orphans = [q for q in covid.queries if q.relevant <= removed]
        examples += _negatives(
            [q.text for q in orphans], [fold_of[min(q.relevant)] for q in orphans], engine, embedder, "gone", "gone"
        )

    by_id = {e.id: e for e in covid.entries}
    for size in SMALL_SIZES:
        for draw in range(SMALL_DRAWS):
            chosen = set(rng.sample(answers, size))
            engine = build_engine(
                [by_id[i] for i in sorted(chosen)], embedder, workdir / f"small{size}-{draw}", Method("s", ""), NO_CHECK
            )
            inside = [q for q in covid.queries if q.relevant <= chosen]
            outside = rng.sample([q for q in covid.queries if not q.relevant & chosen], SMALL_GAPS)
            ood = rng.sample(range(len(covid.ood_queries)), SMALL_OOD)
            scenario = f"small-{size}"
            examples += _in_domain(covid, inside, engine, embedder, scenario, fold_of)
            groups = [fold_of[min(q.relevant)] for q in outside]
            examples += _negatives([q.text for q in outside], groups, engine, embedder, scenario, "gap")
            examples += _negatives(
                [covid.ood_queries[i] for i in ood], [ood_groups[i] for i in ood], engine, embedder, scenario, "ood"
            )
    return examples


def fit_check(examples: list[Example], keep_right: float = KEEP_RIGHT, fitted_on: str = "") -> AnswerCheck:
    """The logistic answer check, fitted on the examples the score threshold lets through (classes balanced).

    Each FAQ size of the examples gets the highest check threshold that still answers ``keep_right`` of its right
    first entries, the score threshold's refusals counted (where those alone exceed the budget, it is 0).
    """
    from sklearn.linear_model import LogisticRegression

    seen = [e for e in examples if e.close(SCORE_THRESHOLD)]
    x = np.array([e.values for e in seen], dtype=np.float64)
    y = np.array([e.label for e in seen])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=REGULARISATION, class_weight="balanced", max_iter=10_000).fit((x - mean) / scale, y)
    model = AnswerCheckModel(
        weights={f: round(float(w), 6) for f, w in zip(FEATURES, model.coef_[0], strict=True)},
        mean={f: round(float(m), 6) for f, m in zip(FEATURES, mean, strict=True)},
        scale={f: round(float(s), 6) for f, s in zip(FEATURES, scale, strict=True)},
        bias=round(float(model.intercept_[0]), 6),
        thresholds=((1, 0.5),),
        fitted_on=fitted_on,
    )
    check = AnswerCheck(model)
    thresholds = []
    for size in sorted({e.entries for e in examples if e.kind == "right"}):
        right = [e for e in examples if e.kind == "right" and e.entries == size]
        passed = np.sort(check.probabilities(np.array([e.values for e in right if e.close(SCORE_THRESHOLD)])))
        # The refusals left to the check once the score threshold's are counted.
        allowed = int(np.floor((1 - keep_right) * len(right))) - (len(right) - len(passed))
        threshold = float(passed[allowed]) - 1e-6 if allowed >= 0 and len(passed) else 0.0
        thresholds.append((size, round(max(0.0, min(1.0, threshold)), 6)))
    return AnswerCheck(replace(model, thresholds=tuple(thresholds)))


def decisions(check: AnswerCheck | None, examples: list[Example]) -> np.ndarray:
    """Whether each example is answered: the score threshold, then the check (None: no check)."""
    close = np.array([e.close(SCORE_THRESHOLD) for e in examples])
    if check is None:
        return close
    p = check.probabilities(np.array([e.values for e in examples], dtype=np.float64))
    return close & (p >= np.array([check.threshold(e.entries) for e in examples]))


def summary(examples: list[Example], answered: np.ndarray) -> dict[str, float]:
    """Shares per scenario: in-domain questions answered with the right entry first; right first entries answered;
    wrong, gone, gap and out-of-domain ones refused."""
    out: dict[str, float] = {}
    for scenario in sorted({e.scenario for e in examples}):
        asked = [(e, a) for e, a in zip(examples, answered, strict=True) if e.scenario == scenario]
        in_domain = [e.kind == "right" and a for e, a in asked if e.kind in ("right", "wrong")]
        if in_domain:  # the paraphrase target: answered, and with the right entry first
            out[f"{scenario}/answered-with-right-first"] = round(float(np.mean(in_domain)), 4)
        for kind in ("right", "wrong", "gone", "gap", "ood"):
            picked = [a for e, a in asked if e.kind == kind]
            if picked:
                share = float(np.mean(picked)) if kind == "right" else 1.0 - float(np.mean(picked))
                out[f"{scenario}/{'answered' if kind == 'right' else 'refused'}-{kind}"] = round(share, 4)
    return out


def cross_fitted(examples: list[Example], folds: int = FOLDS, keep_right: float = KEEP_RIGHT) -> np.ndarray:
    """Each example's decision by a check fitted on the other folds' examples."""
    answered = np.zeros(len(examples), dtype=bool)
    for k in range(folds):
        check = fit_check([e for e in examples if e.group != k], keep_right)
        held = [i for i, e in enumerate(examples) if e.group == k]
        answered[held] = decisions(check, [examples[i] for i in held])
    return answered


def chorus_examples(corpus: str | os.PathLike, paraphrases, gaps: list[str], embedder, workdir) -> list[Example]:
    """The team's Chorus Pro questions on the Chorus Pro FAQ: paraphrases (right or wrong) and uncovered questions."""
    entries: list[FaqEntry] = load_corpus(corpus)
    engine = build_engine(entries, embedder, Path(workdir) / "chorus", Method("chorus", ""), NO_CHECK)
    queries = [EvalQuery(str(n), text, frozenset([faq_id])) for n, (text, faq_id) in enumerate(paraphrases)]
    evalset = EvalSet("chorus", entries, queries)
    examples = _in_domain(evalset, queries, engine, embedder, "chorus", {e.id: 0 for e in entries})
    return examples + _negatives(gaps, [0] * len(gaps), engine, embedder, "chorus", "gap")


def _with_not_questions(entries: list[FaqEntry], marked: dict[str, list[str]]) -> list[FaqEntry]:
    return [replace(e, not_questions=(*e.not_questions, *marked[e.id])) if e.id in marked else e for e in entries]


def _review(entries, seen, unseen, inside, embedder, workdir: Path, margins) -> dict[str, float]:
    """Ask the ``seen`` questions (no entry answers them); each one answered is marked by the FAQ owner as not
    answered by its first entry (``not_questions``); then ask the ``unseen`` ones and the ``inside`` ones (labelled
    questions an entry answers) before, and after at each ``non_answer_margin`` of ``margins``."""
    before = build_engine(entries, embedder, workdir / "before", Method("before", ""))
    marked: dict[str, list[str]] = {}
    for response in run_queries(before, seen, embedder, top_k=1):
        if response.answered:
            marked.setdefault(response.results[0].faq_id, []).append(response.query)
    after = build_engine(_with_not_questions(entries, marked), embedder, workdir / "after", Method("after", ""))
    out = {"marked": float(sum(len(v) for v in marked.values()))}
    engines = [("before", before)] + [
        (f"after, margin {m}", SearchEngine(embedder, after.index, scoring={"non_answer_margin": m}, cache_size=0))
        for m in margins
    ]
    for name, engine in engines:
        gaps = run_queries(engine, unseen, embedder, top_k=1)
        answers = run_queries(engine, [q.text for q in inside], embedder, top_k=1)
        right = [r.answered for r, q in zip(answers, inside, strict=True) if r.results[0].faq_id in q.relevant]
        out[f"{name}/refused-unseen"] = float(np.mean([not r.answered for r in gaps])) if gaps else float("nan")
        out[f"{name}/answered-right"] = float(np.mean(right)) if right else float("nan")
    return out


def known_non_answers(
    data_dir: str | os.PathLike, embedder, workdir: str | os.PathLike, margins=NON_ANSWER_MARGINS
) -> dict[str, float]:
    """The review queue simulated on covid_quebec_fr: how much marking wrong answers as known non-answers helps.

    Questions no entry answers are split by answer, every other question "seen" (asked, and marked by the FAQ
    owner as not answered by the entry the service answered with) and the rest "unseen" (new wordings, asked
    after): ``gone``, the 50 answers with distractors and a fifth removed (five times); ``small-5``, FAQs of 5
    answers (the other answers' questions). Returns the shares refused and right first entries answered, before
    and after, averaged over the FAQs.
    """
    workdir = Path(workdir)
    covid = load_covid(data_dir)
    answers = sorted({r for q in covid.queries for r in q.relevant})
    by_answer = questions_by_answer(covid.queries)
    rng = random.Random(SEED)
    shuffled = list(answers)
    rng.shuffle(shuffled)
    runs: dict[str, list[dict]] = {"gone": [], "small-5": []}
    by_id = {e.id: e for e in covid.entries}
    for k in range(5):
        removed = set(shuffled[k::5])
        kept = [e for e in covid.entries if e.id not in removed]
        seen = [t for a in sorted(removed) for t in by_answer[a][0::2]]
        unseen = [t for a in sorted(removed) for t in by_answer[a][1::2]]
        inside = [q for q in covid.queries if not q.relevant & removed]
        runs["gone"].append(_review(kept, seen, unseen, inside, embedder, workdir / f"review-gone{k}", margins))
    for draw in range(SMALL_DRAWS // 2):
        chosen = set(rng.sample(answers, 5))
        outside = [a for a in answers if a not in chosen]
        seen = [t for a in outside for t in by_answer[a][0::2]]
        unseen = [t for a in outside for t in by_answer[a][1::2]]
        inside = [q for q in covid.queries if q.relevant <= chosen]
        entries = [by_id[i] for i in sorted(chosen)]
        review = _review(entries, seen, unseen, inside, embedder, workdir / f"review-small{draw}", margins)
        runs["small-5"].append(review)
    return {
        f"{scenario}/{key}": round(float(np.mean([r[key] for r in results])), 4)
        for scenario, results in runs.items()
        for key in results[0]
    }


def chorus_review(corpus, paraphrases, seen: list[str], unseen: list[str], embedder, workdir) -> dict[str, float]:
    """The review queue on the Chorus Pro FAQ: the ``seen`` questions (the team's second set, never the dev set)
    marked as known non-answers where the service answered them, then the dev set's questions asked."""
    entries = load_corpus(corpus)
    inside = [EvalQuery(str(n), text, frozenset([faq_id])) for n, (text, faq_id) in enumerate(paraphrases)]
    margin = Scoring.non_answer_margin
    return _review(entries, seen, unseen, inside, embedder, Path(workdir) / "chorus-review", (margin,))

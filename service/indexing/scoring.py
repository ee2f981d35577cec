"""How an FAQ entry is scored against a query, and when the best entry counts as an answer.

An entry has several vectors: its question and alternative questions (embedded with the *query* prompt, so a
user's question is compared with a question) and its answer passages (question + section + text, embedded with
the *passage* prompt). Its fused score is::

    fused = question_weight * best question cosine + (1 - question_weight) * best passage cosine
            + lexical_weight * normalised BM25 of the whole entry

and the score the API returns is ``sigmoid(slope * fused + intercept)``: an estimate, fitted on the development
set, of the probability that this entry answers the query. It is comparable across queries and thresholdable.
The best entry is an answer when its score reaches ``answer_threshold``, leads the second by ``answer_margin``,
and passes the answer check (``answerability.py``: does this entry cover *this* question?). All of these live in
the index manifest; ``scripts/evaluate.py --fit`` refits the weights and calibration on covid_quebec_fr, and
``scripts/fit_answerability.py`` the answer check.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from .answerability import Answerability, default_answerability


def _default_check() -> dict | None:
    check = default_answerability()
    return None if check is None else check.to_dict()


@dataclass(frozen=True)
class Scoring:
    """Fusion weights, calibration and answer decision of an index."""

    # Fitted on covid_quebec_fr by `scripts/evaluate.py --dataset covid_quebec_fr --fit` (docs/quality.md).
    question_weight: float = 0.2
    #: Each alternative question an entry has (users' own wordings, approved in the review queue) adds this to the
    #: weight of its question leg, up to ``question_weight_max``: the more real wordings an entry has, the more its
    #: best question match says (``scripts/simulate_review.py``, docs/learning.md).
    question_weight_per_alt: float = 0.1
    question_weight_max: float = 0.5
    #: The answer decision (the calibrated score, the margin, the answer check) stays on the scale it was fitted on,
    #: an entry's own question: an alternative question counts there only by how much it beats the own question
    #: beyond this discount. The best of many questions is nearer any query by chance; counted in full, approved
    #: questions made the service answer questions about missing answers (docs/learning.md).
    alt_question_discount: float = 0.04
    lexical_weight: float = 0.025
    combine: str = "weighted"
    dense_weight: float = 1.0
    slope: float = 74.151
    intercept: float = -65.698
    answer_threshold: float = 0.16
    answer_margin: float = 0.0
    #: How much nearer one of the first entry's known non-answers (``not_questions``) than its own questions a query
    #: must be for the entry to be refused (``known_non_answer``). Chosen by the review-queue simulation on
    #: covid_quebec_fr (``scripts/fit_answerability.py``): the largest gain costing at most 0.01 of right answers.
    non_answer_margin: float = 0.07
    fitted_on: str = "covid_quebec_fr (662 queries, 1000 out-of-domain)"
    #: The answer check after the threshold (``answerability.py``); None or False: no check (the threshold, the
    #: margin and known non-answers decide).
    answerability: dict | None = field(default_factory=_default_check)

    @classmethod
    def from_dict(cls, data: dict | None) -> Scoring:
        """Scoring from a manifest's ``scoring`` object; missing keys take the defaults, unknown ones are ignored,
        except the settings added since: an index built before the answer check, known non-answers or the weighing of
        alternative questions keeps deciding as it was built."""
        if data is not None and not isinstance(data, dict):
            raise TypeError(f"scoring settings must be an object, not {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in (data or {}).items() if k in known}
        if data is not None:  # an index built before a setting existed keeps deciding as it was built
            values.setdefault("answerability", False)
            values.setdefault("non_answer_margin", 0.0)
            values.setdefault("question_weight_per_alt", 0.0)
            values.setdefault("alt_question_discount", 0.0)
        return cls(**values)

    @classmethod
    def carried_over(cls, data: dict | None) -> Scoring:
        """A new build's scoring from the current build's: what that manifest sets is kept, and a setting it lacks
        takes today's default (not the "as it was built" value ``from_dict`` gives an old index it serves)."""
        if data is not None and not isinstance(data, dict):
            raise TypeError(f"scoring settings must be an object, not {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known}).check()

    def check(self) -> Scoring:
        """This, if every setting has its type and range; else ValueError or TypeError saying which does not."""
        numbers = (
            "question_weight",
            "question_weight_per_alt",
            "question_weight_max",
            "alt_question_discount",
            "lexical_weight",
            "dense_weight",
            "slope",
            "intercept",
            "answer_threshold",
            "answer_margin",
            "non_answer_margin",
        )
        for name in numbers:
            value = getattr(self, name)
            try:
                finite = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            except OverflowError:  # an integer too large for a float (a 400-digit JSON number)
                finite = False
            if not finite:
                raise ValueError(f"{name} must be a finite number, not {str(value)[:40]!r}")
        if self.combine not in ("weighted", "max"):
            raise ValueError(f"combine must be 'weighted' or 'max', not {self.combine!r}")
        if not 0.0 <= self.answer_threshold <= 1.0 or self.answer_margin < 0:
            raise ValueError("answer_threshold must be within 0..1 and answer_margin not negative")
        if not (0 <= self.question_weight_per_alt <= 1 and 0 <= self.question_weight_max <= 1):
            raise ValueError("question_weight_per_alt and question_weight_max must be within 0..1")
        if not 0 <= self.alt_question_discount <= 2:
            raise ValueError("alt_question_discount must be within 0..2 (a difference of cosines)")
        if not 0 <= self.non_answer_margin <= 2:
            raise ValueError("non_answer_margin must be within 0..2 (a difference of cosines)")
        if self.answerability is not None and self.answerability is not False:
            self.answer_check()  # raises ValueError if it is not a fitted check
        return self

    def answer_check(self) -> Answerability | None:
        """The answer check of these settings (None: none); ValueError if it is not a fitted check."""
        if self.answerability is None or self.answerability is False:
            return None
        return Answerability.from_dict(self.answerability)  # {}, [] or 0 are refused, not taken for "off"

    def to_dict(self) -> dict:
        """JSON-ready dict for the manifest."""
        return asdict(self)

    def with_overrides(self, **values) -> Scoring:
        """A copy with the given non-None fields replaced."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def fuse(
        self, question: np.ndarray, passage: np.ndarray, lexical: np.ndarray, alts: np.ndarray | None = None
    ) -> np.ndarray:
        """Fused scores from best question cosine, best passage cosine and normalised BM25 (arrays alike).

        ``alts``: how many alternative questions each entry has (raises its question weight, see
        ``question_weight_per_alt``). ``combine="max"`` takes the better of the two cosines (a baseline).
        """
        if self.combine == "max":
            dense = np.maximum(question, passage)
        else:
            weight = self.question_weight
            if alts is not None and self.question_weight_per_alt:
                top = max(self.question_weight_max, self.question_weight)
                weight = np.minimum(self.question_weight + self.question_weight_per_alt * np.asarray(alts), top)
            dense = weight * question + (1.0 - weight) * passage
        return self.dense_weight * dense + self.lexical_weight * lexical

    def calibrate(self, fused: np.ndarray | float) -> np.ndarray:
        """Probability-like score in [0, 1] from fused scores."""
        z = np.clip(self.slope * np.asarray(fused, dtype=np.float64) + self.intercept, -50, 50)
        return 1.0 / (1.0 + np.exp(-z))

    def answered(self, scores: list[float], threshold: float | None = None) -> bool:
        """Whether the first of the ranked calibrated ``scores`` passes the threshold and the margin."""
        return self.closeness_refusal(scores, threshold) is None

    def closeness_refusal(self, scores: list[float], threshold: float | None = None) -> str | None:
        """None when the first of the ranked calibrated ``scores`` reaches the threshold and leads by the margin;
        else the reason code: ``no_close_entry`` or ``ambiguous``."""
        if not scores:
            return "no_close_entry"
        threshold = self.answer_threshold if threshold is None else threshold
        second = scores[1] if len(scores) > 1 else 0.0
        if scores[0] < threshold:
            return "no_close_entry"
        return None if scores[0] - second >= self.answer_margin else "ambiguous"


def fit_calibration(fused_top: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of a logistic regression of "the first entry is right" on its fused score.

    Args:
        fused_top: fused score of each query's first entry (in-domain and out-of-domain queries).
        correct: 1 where that entry answers the query, else 0.
    """
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e4, max_iter=10_000).fit(np.asarray(fused_top)[:, None], np.asarray(correct))
    return float(model.coef_[0][0]), float(model.intercept_[0])

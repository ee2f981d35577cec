"""The scoring parameters of an index: how an entry is scored against a query, and the numbers the answer decision
reads. Parameters only, stored in the manifest's ``scoring`` object; the decision that uses them is
``search/decision/``.

An entry has several vectors: its question and alternative questions (embedded with the *query* prompt, so a
user's question is compared with a question) and its answer passages (question + section + text, embedded with
the *passage* prompt). Its fused score is::

    fused = question_weight * best question cosine + (1 - question_weight) * best passage cosine
            + lexical_weight * normalised BM25 of the whole entry

and the score the API returns is ``sigmoid(slope * fused + intercept)``: an estimate, fitted on the development
set, of the probability that this entry answers the query. It is comparable across queries and thresholdable.
The best entry is an answer when its score reaches ``answer_threshold``, leads the second by ``answer_margin``,
and passes the answer check (``AnswerCheckModel``, the fitted numbers of ``search/decision/answer_check.py``).
``faq-search evaluate --fit`` refits the weights and calibration on covid_quebec_fr, and
``faq-search fit-answerability`` the answer check.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

#: The answer check's features, in its model's order (``search/decision/answer_check.py`` computes them).
FEATURES = (
    "fused",
    "question",
    "passage",
    "lexical",
    "margin",
    "question_margin",
    "passage_margin",
    "agree",
    "specificity",
    "coverage",
    "unknown",
    "idf_coverage",
    "terms",
)

#: The answer check fitted for the default model and scoring (``faq-search fit-answerability`` writes it).
MODEL_FILE = Path(__file__).with_name("answerability.json")


@dataclass(frozen=True)
class AnswerCheckModel:
    """The fitted numbers of the logistic answer check: standardised features' weights, means and scales, a bias,
    and the probability to reach by FAQ size (``thresholds``: ``[entries, probability]`` pairs, by increasing size).
    """

    weights: dict[str, float]
    mean: dict[str, float]
    scale: dict[str, float]
    bias: float
    thresholds: tuple[tuple[int, float], ...]
    fitted_on: str = ""

    @classmethod
    def from_dict(cls, data: dict) -> AnswerCheckModel:
        """The model from its JSON form (``answerability.json``, a manifest's ``scoring.answerability``).

        Raises:
            ValueError: a feature is missing or unknown, or a number is not finite, or the threshold is not in 0..1.
        """
        if not isinstance(data, dict):
            raise ValueError(f"answerability must be an object, not {type(data).__name__}")

        def number(value) -> float:  # a JSON number, finite and within float's range; no bool, no string
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{str(value)[:20]!r} is not a number")
            try:
                value = float(value)
            except OverflowError:
                raise ValueError("a number is out of range") from None
            if not math.isfinite(value):
                raise ValueError("a number is not finite")
            return value

        def size(value) -> int:
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10**12:
                raise ValueError(f"{str(value)[:20]!r} is not a number of entries")
            return value

        try:
            model = cls(
                weights={k: number(v) for k, v in data["weights"].items()},
                mean={k: number(v) for k, v in data["mean"].items()},
                scale={k: number(v) for k, v in data["scale"].items()},
                bias=number(data["bias"]),
                thresholds=tuple((size(n), number(t)) for n, t in data["thresholds"]),
                fitted_on=str(data.get("fitted_on", "")),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"answerability is not a fitted check ({exc})") from None
        for table in (model.weights, model.mean, model.scale):
            if set(table) != set(FEATURES):
                raise ValueError(f"answerability must give every feature of {FEATURES}, and only those")
        if any(s <= 0 for s in model.scale.values()):
            raise ValueError("answerability's scales must be positive")
        sizes = [n for n, _ in model.thresholds]
        if not sizes or sizes != sorted(set(sizes)):
            raise ValueError("answerability's thresholds must be [entries, probability] pairs by increasing size")
        if not all(0.0 <= t <= 1.0 for _, t in model.thresholds):
            raise ValueError("answerability's thresholds must be within 0..1")
        return model

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "weights": self.weights,
            "mean": self.mean,
            "scale": self.scale,
            "bias": self.bias,
            "thresholds": [list(pair) for pair in self.thresholds],
            "fitted_on": self.fitted_on,
        }


def default_answer_model() -> AnswerCheckModel | None:
    """The check fitted for the default model and scoring (None if the file is absent: the threshold alone decides)."""
    if not MODEL_FILE.exists():
        return None
    return AnswerCheckModel.from_dict(json.loads(MODEL_FILE.read_text(encoding="utf-8")))


def _default_check() -> dict | None:
    model = default_answer_model()
    return None if model is None else model.to_dict()


@dataclass(frozen=True)
class Scoring:
    """Fusion weights, calibration and answer decision of an index."""

    # Fitted on covid_quebec_fr by `faq-search evaluate --dataset covid_quebec_fr --fit` (docs/quality.md).
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
    slope: float = 74.151
    intercept: float = -65.698
    answer_threshold: float = 0.16
    answer_margin: float = 0.0
    #: How much nearer one of the first entry's known non-answers (``not_questions``) than its own questions a query
    #: must be for the entry to be refused (``known_non_answer``). Chosen by the review-queue simulation on
    #: covid_quebec_fr (``faq-search fit-answerability``): the largest gain costing at most 0.01 of right answers.
    non_answer_margin: float = 0.07
    fitted_on: str = "covid_quebec_fr (662 queries, 1000 out-of-domain)"
    #: The answer check's fitted model (``AnswerCheckModel.to_dict()``) applied after the threshold; None or
    #: False: no check (the threshold, the margin and known non-answers decide).
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
        if not 0.0 <= self.answer_threshold <= 1.0 or self.answer_margin < 0:
            raise ValueError("answer_threshold must be within 0..1 and answer_margin not negative")
        if not (0 <= self.question_weight_per_alt <= 1 and 0 <= self.question_weight_max <= 1):
            raise ValueError("question_weight_per_alt and question_weight_max must be within 0..1")
        if not 0 <= self.alt_question_discount <= 2:
            raise ValueError("alt_question_discount must be within 0..2 (a difference of cosines)")
        if not 0 <= self.non_answer_margin <= 2:
            raise ValueError("non_answer_margin must be within 0..2 (a difference of cosines)")
        if self.answerability is not None and self.answerability is not False:
            self.answer_model()  # raises ValueError if it is not a fitted check
        return self

    def answer_model(self) -> AnswerCheckModel | None:
        """The answer check's fitted model of these settings (None: no check); ValueError if it is not one."""
        if self.answerability is None or self.answerability is False:
            return None
        return AnswerCheckModel.from_dict(self.answerability)  # {}, [] or 0 are refused, not taken for "off"

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
        ``question_weight_per_alt``).
        """
        weight = self.question_weight
        if alts is not None and self.question_weight_per_alt:
            top = max(self.question_weight_max, self.question_weight)
            weight = np.minimum(self.question_weight + self.question_weight_per_alt * np.asarray(alts), top)
        return weight * question + (1.0 - weight) * passage + self.lexical_weight * lexical

    def calibrate(self, fused: np.ndarray | float) -> np.ndarray:
        """Probability-like score in [0, 1] from fused scores."""
        z = np.clip(self.slope * np.asarray(fused, dtype=np.float64) + self.intercept, -50, 50)
        return 1.0 / (1.0 + np.exp(-z))

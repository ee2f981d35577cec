"""The answer decision: whether the best-ranked entry answers the query, and if not, why.

The engine (``search/engine.py``) ranks the entries and gathers the ``Evidence`` about the first one; ``decide``
(``rules.py``) applies the rules in order, the first that refuses giving the reason:

1. the calibrated score reaches the threshold and leads the best other entry by the margin (``closeness``),
2. the query is not nearer one of the entry's known non-answers than its questions (``known_non_answer``),
3. the query has a word that tells the entries apart (``too_vague``),
4. the fitted answer check accepts the entry (``answer_check.py``: does this entry cover *this* question?).

The numbers these rules read (threshold, margins, the check's fitted model) are the index's scoring parameters
(``indexing/scoring.py``, stored in the manifest); the rules and the reasons they give live here only.
"""

from .answer_check import AnswerCheck, Features, features
from .reasons import REASONS, reason
from .rules import NEAR_COPY, Evidence, decide

__all__ = ["NEAR_COPY", "REASONS", "AnswerCheck", "Evidence", "Features", "decide", "features", "reason"]

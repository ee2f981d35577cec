"""Grouping queries by meaning: agglomerative clustering of their embeddings (average linkage, cosine distance).

Two wordings of the same need ("ou est passee ma facture", "facture introuvable") land in one group when their
average cosine distance to the group stays under ``GROUP_DISTANCE``; the FAQ owner then decides once for the group.
The distance was chosen on covid_quebec_fr, where the questions of one answer are one need
(``scripts/fit_grouping.py`` prints the table; docs/learning.md).
"""

from __future__ import annotations

import numpy as np

#: Average cosine distance (1 - cosine) under which queries share a group (fitted on covid_quebec_fr).
GROUP_DISTANCE = 0.08


def group_by_meaning(vectors: np.ndarray, distance: float = GROUP_DISTANCE) -> list[list[int]]:
    """Indices of ``vectors`` (n, d), L2-normalised, grouped; groups in order of their first member.

    Args:
        vectors: one row per query.
        distance: the average-linkage cut (0: only identical vectors share a group).
    Returns:
        Lists of row indices, every row in exactly one.
    """
    n = len(vectors)
    if n == 0:
        return []
    if n == 1:
        return [[0]]
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    gaps = np.clip(pdist(np.asarray(vectors, dtype=np.float64), metric="cosine"), 0.0, 2.0)
    labels = fcluster(linkage(gaps, method="average"), t=distance, criterion="distance")
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels.tolist()):
        groups.setdefault(label, []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])

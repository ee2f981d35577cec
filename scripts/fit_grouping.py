"""Choose the review queue's grouping distance on covid_quebec_fr: the questions of one answer are one need.

Simulates logs of 300 questions drawn from 25 answers and prints, per average-linkage cut, how pure the groups are
(homogeneity: a group holds one need), how whole (completeness: a need is one group) and the adjusted Rand index;
writes the table to --out (JSON). A group that mixes two needs misleads the FAQ owner more than a need split in
two, so the cut favours homogeneity. Usage: ``python scripts/fit_grouping.py [--data ../shared/data]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score, completeness_score, homogeneity_score

from service.config import REPO_ROOT
from service.encoders.loading import load_embedder
from service.learning.grouping import group_by_meaning


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data"), help="evaluation data directory")
    parser.add_argument("--out", default="grouping.json", help="JSON file for the table (default grouping.json)")
    parser.add_argument("--draws", type=int, default=5, help="simulated logs per cut (default 5)")
    args = parser.parse_args(argv)
    path = Path(args.data) / "covid_quebec_fr" / "faq_fr.jsonl"
    if not path.exists():
        print(f"error: no {path}", file=sys.stderr)
        return 1
    answers = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [q for a in answers for q in a["questions"]]
    labels = np.array([a["id"] for a in answers for _ in a["questions"]])
    vectors = load_embedder(None, "auto").encode(texts, kind="query")
    table = []
    print(f"{'cut':>5} {'homog.':>7} {'compl.':>7} {'ARI':>6} {'groups':>7}  (25 needs per log)")
    for cut in (0.06, 0.07, 0.08, 0.09, 0.10, 0.12, 0.14):
        rng = np.random.default_rng(0)
        scores = []
        for _ in range(args.draws):
            needs = set(rng.choice([a["id"] for a in answers], 25, replace=False).tolist())
            pool = np.flatnonzero(np.isin(labels, list(needs)))
            picked = rng.choice(pool, min(300, len(pool)), replace=False)
            predicted = np.empty(len(picked), dtype=int)
            for g, members in enumerate(group_by_meaning(vectors[picked], cut)):
                predicted[members] = g
            truth = labels[picked]
            scores.append(
                (
                    homogeneity_score(truth, predicted),
                    completeness_score(truth, predicted),
                    adjusted_rand_score(truth, predicted),
                    predicted.max() + 1,
                )
            )
        h, c, ari, groups = np.mean(scores, axis=0)
        table.append({"cut": cut, "homogeneity": h, "completeness": c, "ari": ari, "groups": groups})
        print(f"{cut:5.2f} {h:7.3f} {c:7.3f} {ari:6.3f} {groups:7.1f}")
    Path(args.out).write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Synonyms, before and after: the team's Chorus Pro dev sets and covid_quebec_fr, without the FAQ's synonyms, with
them (the lexical leg and the answer check's coverage: the service's behaviour), and with them also expanding the
query for the dense leg (measured, not the default). Prints a table and writes a JSON file.

covid_quebec_fr's list (tests/data/covid_quebec_fr_synonyms.json) was written reading its ``train`` questions only
(each answer's 1st, 3rd… question); its ``heldout`` half is the fair figure. The Chorus list is the corpus header's
(corpus/chorus_pro_faq.jsonl), written reading the team's Chorus dev sets (tests/data/chorus_paraphrases.jsonl and
chorus_gaps.jsonl), which are those measured: its figures are the dev sets', not a held-out estimate.

    python scripts/measure_synonyms.py [--json synonyms.json] [--sets chorus,covid-heldout,covid-train]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from service.cli.evaluate import table
from service.encoders.base import default_backend, default_model
from service.encoders.loading import load_embedder
from service.evaluation.datasets import CHORUS_GAPS, CHORUS_QUESTIONS, load_covid, load_custom
from service.evaluation.methods import METHODS, CachingEmbedder, SynonymExpandingEmbedder, evaluate_method
from service.settings import REPO_ROOT, Settings
from service.synonyms import Synonyms

COVID_SYNONYMS = REPO_ROOT / "tests" / "data" / "covid_quebec_fr_synonyms.json"
CHORUS_CORPUS = REPO_ROOT / "corpus" / "chorus_pro_faq.jsonl"


def load(name: str, data_dir: Path):
    """The evaluation set ``name`` with its synonym list."""
    if name == "chorus":
        return load_custom(CHORUS_CORPUS, CHORUS_QUESTIONS, CHORUS_GAPS)
    evalset = load_covid(data_dir, questions=name.split("-")[1])
    evalset.synonyms = Synonyms.parse(json.loads(COVID_SYNONYMS.read_text(encoding="utf-8")))
    return evalset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="chorus,covid-heldout,covid-train", help="which sets, comma-separated")
    parser.add_argument("--json", default="synonyms.json", help="where to write the figures (default synonyms.json)")
    args = parser.parse_args(argv)
    data_dir = Settings.from_env().eval_data
    base = CachingEmbedder(load_embedder(default_model(), default_backend()))
    report = {}
    for name in args.sets.split(","):
        evalset = load(name, data_dir)
        synonyms = evalset.synonyms
        rows = []
        for variant in ("none", "synonyms", "synonyms+dense"):
            evalset.synonyms = None if variant == "none" else synonyms
            embedder = SynonymExpandingEmbedder(base, synonyms) if variant == "synonyms+dense" else base
            with tempfile.TemporaryDirectory(prefix="faq-synonyms-") as work:
                row = evaluate_method(evalset, METHODS["default"], embedder, work)
            row["method"] = variant
            rows.append(row)
        print(f"\n{name}: {len(evalset.entries)} entries, {len(evalset.queries)} questions, "
              f"{len(evalset.ood_queries)} out-of-domain")  # fmt: skip
        print(table(rows))
        report[name] = rows
    Path(args.json).write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""What the retrieval-quality design costs: index build time and query latency, side by side in one run.

Compares methods of ``service/evaluation/methods.py`` (default: ``qa``, the foundation's one-vector-per-passage design,
against ``default``) on one evaluation set, alternating them (A B A B …) so that a noisy machine affects both
alike; prints a table of medians and ratios and writes it as JSON. The model is not cached between builds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from service.encoders.base import default_model
from service.encoders.torch_encoder import SentenceTransformerEmbedder
from service.evaluation.datasets import load_cnil, load_covid, load_piaf
from service.evaluation.methods import METHODS, build_engine

ROOT = Path(__file__).resolve().parent.parent
LOADERS = {"cnil_faq": load_cnil, "covid_quebec_fr": load_covid, "piaf": load_piaf}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--dataset", choices=sorted(LOADERS), default="cnil_faq", help="set to index (default cnil_faq)"
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("FAQ_EVAL_DATA", str(ROOT.parent / "shared" / "data")),
        help="folder of the public sets (env FAQ_EVAL_DATA, default ../shared/data)",
    )
    parser.add_argument("--methods", default="qa,default", help="two or more methods (default qa,default)")
    parser.add_argument("--rounds", type=int, default=3, help="builds per method, alternating (default 3)")
    parser.add_argument("--queries", type=int, default=100, help="timed queries per method (default 100)")
    parser.add_argument("--model", default=default_model(), help="model directory or name (env FAQ_MODEL)")
    parser.add_argument("--json", default="bench_retrieval.json", help="JSON output (default bench_retrieval.json)")
    args = parser.parse_args(argv)

    evalset = LOADERS[args.dataset](args.data_dir)
    methods = [METHODS[m] for m in args.methods.split(",")]
    embedder = SentenceTransformerEmbedder(args.model)
    embedder.encode(["échauffement"], kind="query")
    work = Path(tempfile.mkdtemp(prefix="faq-bench-"))
    builds: dict[str, list[float]] = {m.name: [] for m in methods}
    engines = {}
    for round_ in range(args.rounds):
        for method in methods:
            t = time.perf_counter()
            engines[method.name] = build_engine(evalset.entries, embedder, work / f"{method.name}-{round_}", method)
            builds[method.name].append(time.perf_counter() - t)
    latency: dict[str, list[float]] = {m.name: [] for m in methods}
    queries = [q.text for q in evalset.queries][: args.queries]
    for query in queries[:5]:
        for method in methods:
            engines[method.name].search(query)
    for query in queries:
        for method in methods:
            t = time.perf_counter()
            engines[method.name].search(query, top_k=10)
            latency[method.name].append((time.perf_counter() - t) * 1000)

    base = methods[0].name
    rows = []
    for method in methods:
        name = method.name
        rows.append(
            {
                "method": name,
                "vectors": len(engines[name].index.rows),
                "build_s_median": round(statistics.median(builds[name]), 2),
                "query_ms_p50": round(statistics.median(latency[name]), 2),
                "query_ms_p95": round(float(np.percentile(latency[name], 95)), 2),
                "build_ratio": round(statistics.median(builds[name]) / statistics.median(builds[base]), 3),
                "query_ratio": round(statistics.median(latency[name]) / statistics.median(latency[base]), 3),
            }
        )
    header = (
        f"{'method':10} {'vectors':>8} {'build s':>8} {'query p50':>10} {'query p95':>10} {'build x':>8} {'query x':>8}"
    )
    print(
        f"{args.dataset}: {len(evalset.entries)} entries, {args.rounds} builds and {len(queries)} queries per "
        f"method, alternating"
    )
    print(header)
    for r in rows:
        print(
            f"{r['method']:10} {r['vectors']:>8} {r['build_s_median']:>8.2f} {r['query_ms_p50']:>10.2f} "
            f"{r['query_ms_p95']:>10.2f} {r['build_ratio']:>8.3f} {r['query_ratio']:>8.3f}"
        )
    Path(args.json).write_text(
        json.dumps(
            {
                "dataset": args.dataset,
                "entries": len(evalset.entries),
                "rounds": args.rounds,
                "queries": len(queries),
                "results": rows,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

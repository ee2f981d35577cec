#!/usr/bin/env python
"""Benchmark harness: runs named scenarios, alternating the compared variants (A B A B …) in one run, and prints
a table plus a JSON file of medians, percentiles and ratios.

Scenarios so far:
    cache   a repeated question (served from the response cache) against a fresh one, in-process, real model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.build import build_index  # noqa: E402
from service.embedder import SentenceTransformerEmbedder, default_model  # noqa: E402
from service.engine import SearchEngine  # noqa: E402
from service.index_store import load_index  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def summary(samples_ms: list[float]) -> dict:
    """Median and tail of a list of timings in milliseconds."""
    return {"n": len(samples_ms), "p50_ms": round(statistics.median(samples_ms), 4),
            "p95_ms": round(float(np.percentile(samples_ms, 95)), 4),
            "p99_ms": round(float(np.percentile(samples_ms, 99)), 4)}


def scenario_cache(args) -> dict:
    """Fresh question (cache miss: encode + search) against the same question again (cache hit), alternating."""
    sys.path.insert(0, str(ROOT / "tests"))
    from paraphrases import PARAPHRASES

    embedder = SentenceTransformerEmbedder(args.model)
    out = Path(tempfile.mkdtemp(prefix="faq-bench-"))
    build_index(args.corpus, out, embedder, show_progress=False)
    engine = SearchEngine(embedder, load_index(out), cache_size=args.cache_size)
    engine.search("échauffement")
    fresh, repeated = [], []
    queries = [q for q, _ in PARAPHRASES]
    for round_ in range(args.rounds):
        for query in queries:
            q = f"{query} {round_}"  # a new question each round: a miss, then a hit
            t = time.perf_counter()
            engine.search(q)
            fresh.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            engine.search(q)
            repeated.append((time.perf_counter() - t) * 1000)
    a, b = summary(fresh), summary(repeated)
    return {"variants": {"fresh": a, "repeated": b}, "ratio_p50": round(b["p50_ms"] / a["p50_ms"], 5),
            "cache": engine.cache.stats()}


SCENARIOS = {"cache": scenario_cache}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS), help=f"among {', '.join(SCENARIOS)}")
    parser.add_argument("--model", default=default_model(), help="model directory or name (env FAQ_MODEL)")
    parser.add_argument("--corpus", default=str(ROOT / "corpus" / "chorus_pro_faq.jsonl"), help="corpus to index")
    parser.add_argument("--rounds", type=int, default=5, help="passes over the query set (default 5)")
    parser.add_argument("--cache-size", type=int, default=1024, help="response cache size (default 1024)")
    parser.add_argument("--json", default="bench.json", help="JSON output (default bench.json)")
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    report = {}
    print(f"{'scenario':10} {'variant':10} {'n':>6} {'p50 ms':>10} {'p95 ms':>10} {'p99 ms':>10}")
    for name in args.scenarios:
        result = SCENARIOS[name](args)
        report[name] = result
        for variant, s in result["variants"].items():
            print(f"{name:10} {variant:10} {s['n']:>6} {s['p50_ms']:>10.3f} {s['p95_ms']:>10.3f} {s['p99_ms']:>10.3f}")
        print(f"{name:10} ratio of medians (second / first): {result['ratio_p50']}")
    Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

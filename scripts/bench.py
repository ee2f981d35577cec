#!/usr/bin/env python
"""Benchmark harness: runs named scenarios, alternating the compared variants (A B A B …) in one run, and prints
a table plus a JSON file of medians, percentiles and ratios.

Scenarios so far:
    cache       a repeated question (served from the response cache) against a fresh one, in-process.
    http        POST /search to gunicorn at concurrency 1 against the same search in-process, alternating.
    startup     seconds from starting gunicorn to the first answered search, and memory per worker.
    build       build_index() against raw model.encode of the same texts (cnil_faq corpus), alternating.
    throughput  the production server (gunicorn, the settings of service/gunicorn_conf.py) under wrk at
                concurrency 1, 4, 16 and 64, against the machine's limit: cores / in-process CPU seconds per query.
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


def model_and_index(args) -> tuple[SentenceTransformerEmbedder, Path]:
    """The model, and an index of ``args.corpus`` built with it in a temporary directory."""
    embedder = SentenceTransformerEmbedder(args.model)
    out = Path(tempfile.mkdtemp(prefix="faq-bench-"))
    build_index(args.corpus, out, embedder, show_progress=False)
    return embedder, out


def scenario_cache(args) -> dict:
    """Fresh question (cache miss: encode + search) against the same question again (cache hit), alternating."""
    sys.path.insert(0, str(ROOT / "tests"))
    from paraphrases import PARAPHRASES

    embedder, out = model_and_index(args)
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


def _wrk(url: str, concurrency: int, seconds: int, script: Path) -> dict:
    """Run wrk against ``url`` and parse its summary (requests/s, latency percentiles, errors)."""
    import re
    import shutil
    import subprocess

    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: `make bench` installs it (apt-get install wrk)")
    threads = min(2, concurrency)
    done = subprocess.run(["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--latency", "-s",
                           str(script), url], capture_output=True, text=True, timeout=seconds + 60)
    out = done.stdout

    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    latency = {f"p{p}_ms": round(ms(m), 2) for p, m in re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M)}
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"concurrency": concurrency, "qps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": requests, **latency, "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
            "socket_errors": sum(map(int, errors.groups())) if errors else 0}


def start_gunicorn(index_dir: Path, model: str, port: int = 8799, extra_env: dict | None = None):
    """Start gunicorn with the service's settings on 127.0.0.1 (cache off) and wait until it answers.

    Returns:
        ``(process, base_url)``; the caller terminates the process.
    """
    import os
    import subprocess
    import urllib.request

    env = {**os.environ, "FAQ_INDEX": str(index_dir), "FAQ_MODEL": model, "FAQ_PORT": str(port),
           "FAQ_CACHE_SIZE": "0", "FAQ_LOG_LEVEL": "warning", **(extra_env or {})}
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "service" / "gunicorn_conf.py"),
                               "service.wsgi:app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            return server, url
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit("gunicorn did not start")
            time.sleep(0.2)


def scenario_throughput(args) -> dict:
    """QPS and latency of gunicorn at several concurrencies, against cores / CPU seconds per query in-process."""
    import os

    import torch

    query = "je ne trouve pas le lien pour activer mon compte"
    embedder, out = model_and_index(args)
    # The limit: one core's CPU time per query, measured in-process as a worker runs it (torch on one thread).
    torch.set_num_threads(1)
    engine = SearchEngine(embedder, load_index(out), cache_size=0)
    for _ in range(5):
        engine.search(query)
    cpu = time.process_time()
    for _ in range(50):
        engine.search(query)
    cpu_s = (time.process_time() - cpu) / 50
    cores = os.cpu_count() or 1
    limit = cores / cpu_s
    script = out / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = '{json.dumps({'query': query, 'top_k': 5}, ensure_ascii=False)}'\n",
                      encoding="utf-8")
    server, url = start_gunicorn(out, args.model)
    try:
        _wrk(url + "/search", 4, 3, script)  # warm every worker
        rows = [_wrk(url + "/search", c, args.seconds, script) for c in (1, 4, 16, 64)]
    finally:
        server.terminate()
        server.wait(timeout=60)
    for row in rows:
        row["share_of_limit"] = round(row["qps"] / limit, 3)
    return {"cores": cores, "cpu_ms_per_query": round(cpu_s * 1000, 2), "limit_qps": round(limit, 1),
            "server": {"workers": os.environ.get("FAQ_WORKERS", cores), "threads": os.environ.get("FAQ_THREADS", 2)},
            "rows": rows}


def scenario_http(args) -> dict:
    """POST /search to gunicorn at concurrency 1 against the same search in-process, query by query alternating."""
    import http.client

    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from paraphrases import PARAPHRASES

    embedder, out = model_and_index(args)
    torch.set_num_threads(1)  # as in a gunicorn worker
    engine = SearchEngine(embedder, load_index(out), cache_size=0)
    server, url = start_gunicorn(out, args.model, extra_env={"FAQ_WORKERS": "1"})
    in_process, over_http = [], []
    try:
        conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=30)
        queries = [q for q, _ in PARAPHRASES]
        for round_ in range(args.rounds + 1):
            for query in queries:
                body = json.dumps({"query": query, "top_k": 5}).encode()
                t = time.perf_counter()
                engine.search(query)
                local = (time.perf_counter() - t) * 1000
                t = time.perf_counter()
                conn.request("POST", "/search", body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                remote = (time.perf_counter() - t) * 1000
                if response.status != 200:
                    raise SystemExit(f"POST /search answered {response.status}")
                if round_:  # the first pass warms both sides
                    in_process.append(local)
                    over_http.append(remote)
        conn.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
    a, b = summary(in_process), summary(over_http)
    return {"variants": {"in-process": a, "http": b}, "ratio_p50": round(b["p50_ms"] / a["p50_ms"], 4)}


def scenario_startup(args) -> dict:
    """Seconds from starting gunicorn to the first answered POST /search, and memory per worker."""
    import urllib.request

    import psutil

    _, out = model_and_index(args)
    runs = []
    for _ in range(args.startups):
        t = time.perf_counter()
        server, url = start_gunicorn(out, args.model)
        request = urllib.request.Request(url + "/search", data=json.dumps({"query": "facture"}).encode(),
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=60).read()
        first = time.perf_counter() - t
        time.sleep(3)  # let every worker finish loading before measuring them
        workers = psutil.Process(server.pid).children()
        memory = [w.memory_full_info() for w in workers]
        runs.append({"first_answer_s": round(first, 2), "workers": len(workers),
                     "rss_mb": [round(m.rss / 2**20) for m in memory], "uss_mb": [round(m.uss / 2**20) for m in memory]})
        server.terminate()
        server.wait(timeout=60)
    return {"runs": runs, "first_answer_s_median": statistics.median(r["first_answer_s"] for r in runs)}


def scenario_build(args) -> dict:
    """Seconds for build_index() of the cnil_faq corpus against raw ``model.encode`` of the same texts."""
    from service.corpus import ROW_KINDS, entry_rows, split_passages
    from service.evaluation import load_cnil, write_corpus

    entries = load_cnil(ROOT.parent / "shared" / "data", ood_sample=0).entries
    work = Path(tempfile.mkdtemp(prefix="faq-bench-"))
    corpus = write_corpus(entries, work / "corpus.jsonl")
    rows, texts = entry_rows(entries, split_passages(entries))
    by_prompt = {p: [t for r, t in zip(rows, texts) if ROW_KINDS[r.kind] == p] for p in ("query", "passage")}
    embedder = SentenceTransformerEmbedder(args.model)
    embedder.encode(["échauffement"], kind="passage")
    raw, built = [], []
    for round_ in range(args.build_rounds):
        t = time.perf_counter()
        for prompt, batch in by_prompt.items():
            embedder.model.encode(batch, prompt_name=prompt, batch_size=32, normalize_embeddings=True)
        raw.append(time.perf_counter() - t)
        t = time.perf_counter()
        build_index(corpus, work / f"index-{round_}", embedder, show_progress=False)
        built.append(time.perf_counter() - t)
    a = {"n": len(raw), "median_s": round(statistics.median(raw), 2),
         "per_s": round(len(texts) / statistics.median(raw), 1)}
    b = {"n": len(built), "median_s": round(statistics.median(built), 2),
         "per_s": round(len(texts) / statistics.median(built), 1)}
    return {"texts": len(texts), "variants": {"raw encode": a, "build_index": b},
            "ratio": round(b["median_s"] / a["median_s"], 3)}


SCENARIOS = {"cache": scenario_cache, "http": scenario_http, "throughput": scenario_throughput,
             "startup": scenario_startup, "build": scenario_build}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS), help=f"among {', '.join(SCENARIOS)}")
    parser.add_argument("--model", default=default_model(), help="model directory or name (env FAQ_MODEL)")
    parser.add_argument("--corpus", default=str(ROOT / "corpus" / "chorus_pro_faq.jsonl"), help="corpus to index")
    parser.add_argument("--rounds", type=int, default=5, help="passes over the query set (default 5)")
    parser.add_argument("--cache-size", type=int, default=1024, help="response cache size (default 1024)")
    parser.add_argument("--build-rounds", type=int, default=2, help="build: builds per variant (default 2)")
    parser.add_argument("--startups", type=int, default=3, help="startup: server starts to time (default 3)")
    parser.add_argument("--seconds", type=int, default=15, help="throughput: seconds per concurrency (default 15)")
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
        if name == "build":
            for variant, v in result["variants"].items():
                print(f"build: {variant:12} {v['median_s']:>8.2f} s  {v['per_s']:>7.1f} texts/s  (median of {v['n']})")
            print(f"build: {result['texts']} texts, build_index / raw encode = {result['ratio']}")
            continue
        if name == "startup":
            print(f"startup: first answer after {result['first_answer_s_median']} s (median of "
                  f"{len(result['runs'])}); per worker RSS {result['runs'][-1]['rss_mb']} MB, "
                  f"USS {result['runs'][-1]['uss_mb']} MB")
            continue
        if name == "throughput":
            print(f"throughput: {result['cores']} cores, {result['cpu_ms_per_query']} ms CPU per query in-process, "
                  f"limit {result['limit_qps']} QPS")
            print(f"{'concurrency':>11} {'QPS':>8} {'share':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'errors':>7}")
            for r in result["rows"]:
                print(f"{r['concurrency']:>11} {r['qps']:>8.1f} {r['share_of_limit']:>6.2f} {r['p50_ms']:>8.1f} "
                      f"{r['p90_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['non_2xx'] + r['socket_errors']:>7}")
            continue
        for variant, s in result["variants"].items():
            print(f"{name:10} {variant:10} {s['n']:>6} {s['p50_ms']:>10.3f} {s['p95_ms']:>10.3f} {s['p99_ms']:>10.3f}")
        print(f"{name:10} ratio of medians (second / first): {result['ratio_p50']}")
    Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

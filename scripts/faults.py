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

The learning loop's faults (docs/learning.md), on a second server with the query log, the admin token and its
corpus in a directory of its own (a 256 KB tmpfs when run as root):
    review-unreadable-queries   searches of an invisible-only query, a NUL and a character NFKC makes 18 of, then
                                decisions on all of them and one by " ": the reviewed file stays readable
    review-disk-full            a decision while the corpus's filesystem is full, then again once there is room
    review-corpus-rewritten     an editor rewrites the corpus in place, slowly, while a decision's build reads it
    review-worker-killed        the worker whose child runs the review build is killed with SIGKILL
    review-build-failed         a decision's build fails (the corpus broken), the corpus is fixed: retried alone
"""

from __future__ import annotations

import argparse
import contextlib
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

from service.encoders.base import default_model
from service.encoders.loading import load_embedder
from service.evaluation.serving import start_gunicorn, wrk, wrk_post_script
from service.indexing.build import build_index
from service.indexing.store import VECTORS, resolve
from service.settings import GUNICORN_ARGS
from service.settings import REPO_ROOT as ROOT

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


# ---- the learning loop ----


def _admin(url: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(url + path, data=data, method=method, headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _flagged_group(url: str, question: str) -> tuple[dict, str]:
    """Ask ``question`` (and say the answer did not help, if it got one), then the review queue's group holding it
    and the index id."""
    _, body = _post(url + "/search", json.dumps({"query": question}).encode())
    if body.get("answered"):
        feedback = {"request_id": body["request_id"], "faq_id": body["results"][0]["faq_id"], "helpful": False}
        _post(url + "/feedback", json.dumps(feedback).encode())
    for _ in range(40):
        time.sleep(0.5)
        status, queue = _admin(url, "GET", "/admin/review")
        group = next((g for g in queue.get("groups", []) if any(w["text"] == question for w in g["wordings"])), None)
        if group is not None:
            return group, queue["index_id"]
    raise RuntimeError(f"{question!r} never reached the review queue ({status})")


def _entries(url: str) -> int:
    return _health(url)["index"]["entries"]


def _wait_applied(url: str, seconds: float) -> dict:
    """Until the rebuild is done and every decision is in the served build (bounded); the last state seen."""
    deadline = time.monotonic() + seconds
    state: dict = {}
    while time.monotonic() < deadline:
        state = _admin(url, "GET", "/admin/review")[1].get("rebuild") or {}
        if state.get("state") == "done" and state.get("pending") is False:
            ids = {_health(url)["index"]["id"] for _ in range(6)}
            if ids == {state.get("index_id")}:
                return state
        time.sleep(1)
    return state


def fault_review_unreadable_queries(ctx) -> dict:
    url = ctx["review_url"]
    for query in ("\u200b", "facture\u0000refusee", "\ufdfa" * 1000):
        _post(url + "/search", json.dumps({"query": query}).encode())
    time.sleep(1.5)
    status, queue = _admin(url, "GET", "/admin/review")
    decided = []
    for group in queue.get("groups", []):
        decided.append(_admin(url, "POST", "/admin/review/actions", {
            "action": "dismiss", "query_keys": group["query_keys"], "index_id": queue["index_id"]})[0])  # fmt: skip
    nobody = _admin(url, "POST", "/admin/review/actions", {"action": "dismiss", "query_keys": ["q0123456789abcde"],
                                                          "index_id": queue["index_id"], "by": " "})  # fmt: skip
    after = [_admin(url, "GET", path)[0] for path in ("/admin/review", "/admin/gaps", "/admin/review/actions")]
    built = subprocess.run(
        [sys.executable, "-m", "service.cli.build", "--corpus", ctx["review_corpus"], "--out",
         str(Path(tempfile.mkdtemp(prefix="faq-check-")) / "index"), "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return {
        "what_happened": f"listing {status}; {len(decided)} decisions answered {sorted(set(decided))}; a decision by "
        f"' ' answered {nobody[0]} {nobody[1].get('error', {}).get('code')}; then the queue, the gaps and the "
        f"history answered {after}; `faq-search build --check` exited {built.returncode}",
        "nothing_lost": status == 200
        and set(decided) <= {201}
        and nobody[0] == 400
        and after == [200, 200, 200]
        and built.returncode == 0,
    }


def fault_review_disk_full(ctx) -> dict:
    url, mount = ctx["review_url"], ctx["review_mount"]
    if mount is None:
        return {"what_happened": "not run: mounting a tmpfs needs root", "nothing_lost": None}
    group, index_id = _flagged_group(url, "combien de licornes faut-il pour deposer une facture")
    reviewed = Path(ctx["review_corpus"]).with_name(Path(ctx["review_corpus"]).stem + ".reviewed.jsonl")
    with open(reviewed, "ab") as fh:  # blank lines (the reader skips them) up to a page: the next line needs a new one
        fh.write(b"\n" * (-fh.tell() % 4096))
    before = reviewed.read_bytes()
    filler = Path(mount) / "filler"
    with open(filler, "wb", buffering=0) as fh:  # fill what is left, then leave 40 bytes: less than a line
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    body = {"action": "dismiss", "query_keys": group["query_keys"], "index_id": index_id, "by": "faults"}
    full = _admin(url, "POST", "/admin/review/actions", body)
    unchanged = reviewed.read_bytes() == before
    filler.unlink()
    again = _admin(url, "POST", "/admin/review/actions", body)
    readable = _admin(url, "GET", "/admin/review/actions")
    return {
        "what_happened": f"on a full filesystem the decision answered {full[0]} {full[1].get('error', {}).get('code')}"
        f" and the reviewed file was {'unchanged' if unchanged else 'CHANGED'}; with room again it answered "
        f"{again[0]}, and the history {readable[0]} with {len(readable[1].get('actions', []))} decisions",
        "nothing_lost": full[0] == 500 and unchanged and again[0] == 201 and readable[0] == 200,
    }


def fault_review_corpus_rewritten(ctx) -> dict:
    url, corpus = ctx["review_url"], Path(ctx["review_corpus"])
    group, index_id = _flagged_group(url, "ma licorne refuse de valider la facture de mon sous-traitant")
    whole = corpus.read_bytes()
    entries = _entries(url)
    lines = whole.splitlines(keepends=True)
    seen: list[int] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            with contextlib.suppress(Exception):
                seen.append(_entries(url))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with open(corpus, "r+b") as fh:  # an editor saving in place: truncate, the first lines, a pause, the rest
        fh.truncate(0)
        fh.write(b"".join(lines[:2]))
        fh.flush()
        decided = _admin(
            url,
            "POST",
            "/admin/review/actions",
            {"action": "attach", "faq_id": "chorus-pro-4", "query_keys": group["query_keys"], "index_id": index_id},
        )
        time.sleep(4)
        fh.write(b"".join(lines[2:]))
    state = _wait_applied(url, 120)
    stop.set()
    watcher.join()
    outcome = "was retried and applied the decision" if state.get("state") == "done" else f"ended {state.get('state')}"
    served = _entries(url)
    return {
        "what_happened": f"decision {decided[0]}; entries served while the corpus was half-written: min {min(seen)}, "
        f"max {max(seen)} (of {entries}); the build {outcome} (attempt {state.get('attempt')}), {served} entries "
        "served after",
        "nothing_lost": decided[0] == 201
        and min(seen) == entries
        and state.get("state") == "done"
        and served == entries,
    }


def fault_review_worker_killed(ctx) -> dict:

    url = ctx["review_url"]
    group, index_id = _flagged_group(url, "les licornes ont perdu mon mot de passe chorus")
    decided = _admin(
        url,
        "POST",
        "/admin/review/actions",
        {"action": "attach", "faq_id": "chorus-pro-3", "query_keys": group["query_keys"], "index_id": index_id},
    )
    child = None
    deadline = time.monotonic() + 30
    while child is None and time.monotonic() < deadline:  # this server's build only, never another one's
        child = _build_child(ctx["review_server"].pid)
    if child is None:
        return {"what_happened": "the build ended before its worker could be killed", "nothing_lost": None}
    worker = child.ppid()
    os.kill(worker, signal.SIGKILL)
    state = _wait_applied(url, 120)
    return {
        "what_happened": f"decision {decided[0]}; worker {worker} killed while its child built; the build says "
        f"{state.get('state')} ({state.get('index_id')}), decisions pending: {state.get('pending')}; every worker "
        "asked serves it"
        if state
        else "no state",
        "nothing_lost": state.get("state") == "done" and state.get("pending") is False,
    }


def _build_child(server_pid: int):
    """The review build's child process among the server's descendants (never another server's), or None."""
    import psutil

    for process in psutil.Process(server_pid).children(recursive=True):
        try:
            if "service.learning.rebuild_child" in " ".join(process.cmdline()):
                return process
        except psutil.Error:  # ended meanwhile
            continue
    return None


def fault_review_build_failed(ctx) -> dict:
    url, corpus = ctx["review_url"], Path(ctx["review_corpus"])
    group, index_id = _flagged_group(url, "une licorne peut-elle etre gestionnaire principal")
    whole = corpus.read_bytes()
    corpus.write_bytes(whole + b"{not json\n")
    decided = _admin(
        url,
        "POST",
        "/admin/review/actions",
        {"action": "attach", "faq_id": "chorus-pro-4", "query_keys": group["query_keys"], "index_id": index_id},
    )
    failed: dict = {}
    for _ in range(60):
        failed = _admin(url, "GET", "/admin/review")[1].get("rebuild") or {}
        if failed.get("state") == "failed":
            break
        time.sleep(0.5)
    corpus.write_bytes(whole)
    started = time.monotonic()
    state = _wait_applied(url, 120)
    return {
        "what_happened": f"decision {decided[0]}; the build failed ({str(failed.get('error'))[:80]}…), next attempt "
        f"planned; the corpus fixed, attempt {state.get('attempt')} applied it {time.monotonic() - started:.0f} s "
        f"later with no one asking ({state.get('state')}, pending {state.get('pending')})",
        "nothing_lost": failed.get("state") == "failed"
        and state.get("state") == "done"
        and state.get("pending") is False,
    }


def start_review_server(args, embedder) -> dict:
    """The second server: 2 workers, the query log, its own corpus (on a 256 KB tmpfs when root) and index."""
    work = Path(tempfile.mkdtemp(prefix="faq-faults-review-"))
    corpus_dir = work / "corpus"
    corpus_dir.mkdir()
    mount = None
    if os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs",
                                             str(corpus_dir)]).returncode == 0:  # fmt: skip
        mount = str(corpus_dir)
    corpus = corpus_dir / "faq.jsonl"
    shutil.copy(args.corpus, corpus)
    os.utime(corpus, (time.time() - 10, time.time() - 10))
    index = work / "index"
    build_index(corpus, index, embedder, show_progress=False)
    server, url = start_gunicorn(index, args.model, port=8796, extra_env={
        "FAQ_ADMIN_TOKEN": TOKEN, "FAQ_QUERY_LOG": str(work / "queries.db"), "FAQ_CORPUS": str(corpus)})  # fmt: skip
    return {"review_server": server, "review_url": url, "review_corpus": str(corpus), "review_mount": mount}


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
    "review-unreadable-queries": fault_review_unreadable_queries,
    "review-disk-full": fault_review_disk_full,
    "review-corpus-rewritten": fault_review_corpus_rewritten,
    "review-worker-killed": fault_review_worker_killed,
    "review-build-failed": fault_review_build_failed,
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
    if any(name.startswith("review-") for name in args.faults):
        ctx.update(start_review_server(args, embedder))
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
        if ctx.get("review_server") is not None:
            ctx["review_server"].terminate()
            ctx["review_server"].wait(timeout=60)
        if ctx.get("review_mount"):
            subprocess.run(["umount", ctx["review_mount"]])
    Path(args.json).write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    return 0 if all(r["nothing_lost"] is not False for r in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Faults tried on purpose against the production server (gunicorn on 127.0.0.1, real model, wrk as the load),
each with what happened and whether anything was lost. Prints a table and writes JSON (docs/reliability.md).

    index-corrupted    the served build's vectors.faiss overwritten while serving, then a forced reload
    index-deleted      the served build's directory deleted while serving, then a forced reload
    worker-killed      one worker killed with SIGKILL under load
    model-missing      gunicorn started with a model directory that does not exist
    disk-full          a build into an index directory on a full filesystem (a 64 KB tmpfs; needs root to mount)
    bad-bodies         non-UTF-8 and 1 MB bodies sent while wrk loads the server
    slow-clients       16 connections that send their headers one byte a second while wrk loads the server
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


def _search_ok(url: str) -> bool:
    return _post(url + "/search", json.dumps(QUERY).encode())[0] == 200


def _health(url: str) -> dict:
    with urllib.request.urlopen(url + "/health", timeout=30) as response:
        return json.loads(response.read())


def _under_load(url: str, script: Path, seconds: int, action, at: float = 3.0) -> tuple[dict, object]:
    """Run wrk for ``seconds`` and ``action()`` ``at`` seconds in; returns wrk's figures and the action's result."""
    result: dict = {}
    load = threading.Thread(target=lambda: result.update(wrk(url + "/search", 4, seconds, script)))
    load.start()
    time.sleep(at)
    outcome = action()
    load.join(seconds + 60)
    return result, outcome


def _reload(url: str) -> tuple[int, dict]:
    return _post(url + "/admin/reload", b'{"force": true}', {"Authorization": f"Bearer {TOKEN}"})


def fault_index_damaged(ctx, kind: str) -> dict:
    url, out = ctx["url"], ctx["out"]
    build_index(ctx["corpus"], out, ctx["embedder"], show_progress=False)  # a fresh build to damage
    _reload(url)
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
    nothing_lost = load["non_2xx"] + load["socket_errors"] == 0 and _search_ok(url) and health["index"]["id"] == served
    build_index(ctx["corpus"], out, ctx["embedder"], show_progress=False)  # repair for the next fault
    _reload(url)
    return {
        "what_happened": f"searches went on; forced reload answered {status} "
        f"{body.get('error', {}).get('code')}; /health reload.last.error = "
        f"{(health['reload']['last'] or {}).get('error', {}).get('code')}; still serving {served}",
        "load": load,
        "nothing_lost": nothing_lost,
    }


def fault_worker_killed(ctx) -> dict:
    import psutil

    url = ctx["url"]
    workers = psutil.Process(ctx["server"].pid).children()

    def kill():
        os.kill(workers[0].pid, signal.SIGKILL)
        return workers[0].pid

    load, pid = _under_load(url, ctx["script"], 10, kill)
    time.sleep(5)
    now = psutil.Process(ctx["server"].pid).children()
    errors = load["non_2xx"] + load["socket_errors"]
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
        [sys.executable, "-m", "gunicorn", "-c", "python:service.http.gunicorn_conf", "service.http.wsgi:app"],
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
        "nothing_lost": set(codes) <= {400, 413} and load["non_2xx"] + load["socket_errors"] == 0,
    }


def fault_slow_clients(ctx) -> dict:
    port = int(ctx["url"].rsplit(":", 1)[1])
    sockets = []

    def slowloris():
        for _ in range(16):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.send(b"POST /search HTTP/1.1\r\nHost: x\r\n")
            sockets.append(s)
        for _ in range(8):  # one byte a second per connection, never finishing the headers
            for s in sockets:
                try:
                    s.send(b"X")
                except OSError:
                    pass
            time.sleep(1)
        return len(sockets)

    load, n = _under_load(ctx["url"], ctx["script"], 12, slowloris, at=1.0)
    for s in sockets:
        s.close()
    errors = load["non_2xx"] + load["socket_errors"]
    return {
        "what_happened": f"{n} slow connections held open; wrk: {load['qps']:.0f} QPS, p99 {load['p99_ms']} ms, "
        f"{errors} errors of {load['requests']}",
        "load": load,
        "nothing_lost": errors == 0 and _search_ok(ctx["url"]),
    }


FAULTS = {
    "index-corrupted": lambda ctx: fault_index_damaged(ctx, "corrupted"),
    "index-deleted": lambda ctx: fault_index_damaged(ctx, "deleted"),
    "worker-killed": fault_worker_killed,
    "model-missing": fault_model_missing,
    "disk-full": fault_disk_full,
    "bad-bodies": fault_bad_bodies,
    "slow-clients": fault_slow_clients,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("faults", nargs="*", default=list(FAULTS), help=f"among {', '.join(FAULTS)}")
    parser.add_argument("--model", default=default_model(), help="model directory (env FAQ_MODEL)")
    parser.add_argument("--corpus", default=str(ROOT / "corpus" / "chorus_pro_faq.jsonl"), help="corpus to index")
    parser.add_argument("--json", default="faults.json", help="JSON output (default faults.json)")
    args = parser.parse_args(argv)
    embedder = load_embedder(args.model)
    out = Path(tempfile.mkdtemp(prefix="faq-faults-")) / "index"
    build_index(args.corpus, out, embedder, show_progress=False)
    script = wrk_post_script(out.parent / "post.lua", QUERY)
    server, url = start_gunicorn(out, args.model, extra_env={"FAQ_ADMIN_TOKEN": TOKEN})  # cache off
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

"""Proof under load: gunicorn (2 workers, real model) keeps answering 200 while the index is rebuilt and reloaded
several times, by the admin endpoint and by the watcher, and afterwards every worker serves the last build."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from conftest import CHORUS_CORPUS, ROOT, corpus_with, free_port
from test_cli_and_server import ENV, _wait_http

from service.indexing.build import build_index

pytestmark = pytest.mark.slow

TOKEN = "load-test-admin-token"


def _request(port: int, method: str, path: str, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            method,
            path,
            body=json.dumps(body) if body is not None else None,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_rebuilds_under_load_fail_no_request_and_every_worker_switches(tmp_path, real_embedder):
    out = tmp_path / "index"
    build_index(CHORUS_CORPUS, out, real_embedder, show_progress=False)
    port = free_port()
    env = {
        **ENV,
        "FAQ_INDEX": str(out),
        "FAQ_PORT": str(port),
        "FAQ_WORKERS": "2",
        "FAQ_ADMIN_TOKEN": TOKEN,
        "FAQ_WATCH_SECONDS": "0.5",
        "FAQ_CACHE_SIZE": "0",
        "FAQ_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:service.http.gunicorn_conf", "service.http.wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    statuses: Counter = Counter()
    errors: list[str] = []
    stop = threading.Event()

    def load() -> None:  # a closed-loop client: one request after another on a kept-alive connection
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = json.dumps({"query": "je n'ai pas reçu le mail d'activation"})
        while not stop.is_set():
            try:
                conn.request("POST", "/search", body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                statuses[response.status] += 1
            except (OSError, http.client.HTTPException) as exc:
                errors.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.close()

    try:
        _wait_http(f"http://127.0.0.1:{port}/health", proc)
        time.sleep(3)  # both workers up
        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        faq_id, marker = None, None
        for round_, marker in enumerate(("R1", "R2", "R3", "R4")):
            corpus, faq_id = corpus_with(CHORUS_CORPUS, tmp_path, marker)
            build_index(corpus, out, real_embedder, show_progress=False)
            if round_ % 2 == 0:  # half the rounds by the admin endpoint, half left to the watcher
                status, outcome = _request(port, "POST", "/admin/reload", {}, {"Authorization": f"Bearer {TOKEN}"})
                assert status == 200 and outcome["ok"], outcome
                assert outcome["signalled_workers"] == 1
            time.sleep(2.5)
        stop.set()
        for t in threads:
            t.join(30)
        served = [_request(port, "GET", f"/faq/{faq_id}")[1]["answer"] for _ in range(30)]
        healths = [_request(port, "GET", "/health")[1] for _ in range(30)]
    finally:
        stop.set()
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    print(f"\n{sum(statuses.values())} searches during 4 rebuilds: {dict(statuses)}, errors {errors}")
    assert errors == [] and set(statuses) == {200} and sum(statuses.values()) >= 100
    assert all(f"Révision {marker}." in answer for answer in served)  # whichever worker answered
    assert {h["index"]["id"] for h in healths} == {healths[0]["index"]["id"]}
    assert "Traceback" not in err, err

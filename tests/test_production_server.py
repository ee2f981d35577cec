"""The production server (gunicorn with the service's settings, real model) where its own behaviour matters:
its error answers, connections that never finish, a worker restarting on a damaged build, its control socket."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import psutil
import pytest
from conftest import CHORUS_CORPUS, ROOT, free_port
from test_cli_and_server import ENV, _wait_http

from service.indexing.build import build_index
from service.indexing.store import VECTORS, resolve

pytestmark = pytest.mark.slow


def _start(index_dir, workers: int = 2, **env):
    """gunicorn on a free port, its log in a file (a pipe nobody reads fills up, and the server blocks on its next
    log line: its master then never reaps a killed worker)."""
    import tempfile

    port = free_port()
    log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 - read and closed by _stop
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:service.http.gunicorn_conf", "service.http.wsgi:app"],
        cwd=ROOT,
        env={**ENV, "FAQ_INDEX": str(index_dir), "FAQ_PORT": str(port), "FAQ_WORKERS": str(workers), **env},
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
    )
    proc.log = log
    _wait_http(f"http://127.0.0.1:{port}/ready", proc)
    return proc, port


def _stop(proc) -> str:
    """Stop the server; its log."""
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    proc.log.seek(0)
    text = proc.log.read()
    proc.log.close()
    return text


def _raw(port: int, data: bytes, timeout: float = 10) -> tuple[int, dict]:
    """Send bytes as they are; the status and the JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer:
                head, _, body = answer.partition(b"\r\n\r\n")
                length = [int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")]
                if length and len(body) >= length[0]:
                    break
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), answer[:300]
    return int(head.split(b" ")[1]), json.loads(body)


@pytest.fixture(scope="module")
def server(tmp_path_factory, real_embedder):
    out = tmp_path_factory.mktemp("prod") / "index"
    build_index(CHORUS_CORPUS, out, real_embedder, show_progress=False)
    proc, port = _start(out, FAQ_BODY_TIMEOUT="2")
    yield port
    _stop(proc)


@pytest.mark.parametrize(
    "request_bytes,status,code",
    [
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
        (b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, "headers_too_large"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (
            b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\n{}\r\n0\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"-5\r\n{}\r\n0\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'2\r\n{"query": "facture"}\r\n0\r\n\r\n',
            400,
            "bad_request",
        ),
    ],
    ids=["request line", "header too large", "uri too long", "chunk size zz", "chunk size -5", "chunk too small"],
)
def test_the_server_answers_malformed_requests_in_the_error_shape(server, request_bytes, status, code):
    got_status, body = _raw(server, request_bytes)
    assert (got_status, body["error"]["status"]) == (status, status)
    assert body["error"]["code"] in (code, "invalid_json"), body


def test_a_get_of_1000_accented_characters_is_answered(server):
    query = urllib.parse.quote("é" * 995 + " mot")
    with urllib.request.urlopen(f"http://127.0.0.1:{server}/search?q={query}", timeout=60) as r:
        assert r.status == 200 and json.loads(r.read())["results"]


def test_connections_that_never_finish_do_not_take_the_workers(server):
    """100 connections holding half a request or trickling a body; everyone else is still answered."""
    held = []
    for n in range(100):
        s = socket.create_connection(("127.0.0.1", server), timeout=10)
        s.send(b"GET /health HTTP/1.1\r\nHo" if n % 2 else b"POST /search HTTP/1.1\r\nContent-Length: 9999\r\n\r\n{")
        held.append(s)
    try:
        for _ in range(10):
            with urllib.request.urlopen(f"http://127.0.0.1:{server}/health", timeout=5) as r:
                assert r.status == 200
    finally:
        for s in held:
            s.close()


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_worker_restarted_on_a_damaged_build_serves_the_last_good_one(tmp_path, real_embedder, damage):
    out = tmp_path / "index"
    first = build_index(CHORUS_CORPUS, out, real_embedder, show_progress=False).index_id
    build_index(CHORUS_CORPUS, out, real_embedder, show_progress=False)
    proc, port = _start(out)
    try:
        current = resolve(out)
        # /ready answers once one worker is up: the build is damaged only once both serve it (else the other one
        # would load after the damage, and there would be no old worker serving from memory).
        deadline = time.time() + 90
        while _served_builds(port) != {current.name: 2.0} and time.time() < deadline:
            time.sleep(0.2)
        assert _served_builds(port) == {current.name: 2.0}
        if damage == "deleted":
            shutil.rmtree(current)
        else:
            (current / VECTORS).write_bytes((current / VECTORS).read_bytes()[:100])
        second = current.name
        workers = psutil.Process(proc.pid).children()
        os.kill(workers[0].pid, signal.SIGKILL)
        # /metrics adds up every worker's record of the build it serves, whichever worker answers: wait for the
        # restarted worker to serve the last good build beside the old worker's build (a connection's luck does not
        # decide which worker is asked).
        deadline = time.time() + 90
        served: dict[str, float] = {}
        while time.time() < deadline:
            served = _served_builds(port)
            if served == {second: 1.0, first: 1.0}:
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the server stopped"
        assert served == {second: 1.0, first: 1.0}, served  # the old worker from memory, the new one the earlier build
        assert len(psutil.Process(proc.pid).children()) == 2
    finally:
        _stop(proc)


def _served_builds(port: int) -> dict[str, float]:
    """``faq_index_info`` of /metrics: the builds served now, with how many workers serve each."""
    import re

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return {}
    served = re.findall(r'^faq_index_info\{faq="[^"]*",index_id="([^"]+)"\} (\S+)$', text, re.M)
    return {m[0]: float(m[1]) for m in served}


def test_each_instance_has_its_own_control_socket(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # loading the settings would make one otherwise
    paths = set()
    for port in ("8101", "8102"):
        monkeypatch.setenv("FAQ_PORT", port)
        monkeypatch.delenv("FAQ_CONTROL_SOCKET", raising=False)
        import service.http.gunicorn_conf as conf

        paths.add(importlib.reload(conf).control_socket)
    assert len(paths) == 2 and all(not p.startswith(os.path.expanduser("~/.gunicorn")) for p in paths)


def test_a_reload_signal_to_an_idle_gevent_worker_keeps_it(server):
    """SIGHUP runs in a gevent worker's event loop: the handler must not start a thread there (it killed the
    worker); an admin reload signals the sibling workers the same way."""
    master = next(p for p in psutil.process_iter(["cmdline"]) if f"FAQ_PORT={server}" in " ".join(_env_of(p)))
    before = sorted(w.pid for w in master.children())
    for pid in before:
        os.kill(pid, signal.SIGHUP)
    time.sleep(2)
    assert sorted(w.pid for w in master.children()) == before
    with urllib.request.urlopen(f"http://127.0.0.1:{server}/ready", timeout=10) as r:
        assert r.status == 200


def _env_of(process) -> list[str]:
    try:
        return [f"{k}={v}" for k, v in process.environ().items()]
    except (psutil.Error, OSError):
        return []


def test_a_body_that_stalls_gets_408(server):
    """A body announced and never finished holds its connection for FAQ_BODY_TIMEOUT (2 s here), then 408."""
    started = time.monotonic()
    status, body = _raw(
        server,
        b'POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"que',
    )
    assert (status, body["error"]["code"]) == (408, "request_timeout")
    assert 1.5 < time.monotonic() - started < 10


def test_workers_sharing_the_masters_encoder_stop_at_once_and_answer_the_same(real_index_dir):
    """The master preloads the ONNX encoder (one encoder thread a worker): both workers answer with the master's
    copy, and on SIGTERM they leave on their own (ONNX Runtime's exit handlers would wait forever on a thread of
    the master's: gunicorn then killed each worker after its 30 s graceful timeout)."""
    proc, port = _start(real_index_dir, workers=2)
    try:
        answers = set()
        for _ in range(6):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/search", data=json.dumps({"query": "mot de passe perdu"}).encode(),
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=30) as response:
                answers.add(json.dumps(json.loads(response.read())["results"]))
        assert len(answers) == 1
        master = psutil.Process(proc.pid)
        assert len(master.children()) == 2
        assert "model_emb8.weights" in {os.path.basename(m.path) for m in master.memory_maps()}  # the master's copy
    finally:
        log = _stop(proc)
    assert proc.returncode == 0
    assert "SIGKILL" not in log, log[-2000:]


def test_a_missing_converted_tokenizer_stops_the_server_with_what_to_run(tmp_path, real_index_dir):
    """A worker that cannot load the model exits with gunicorn's boot error: the server halts and says why
    (before, the preloaded ONNX Runtime made that worker hang on its way out and the server listened on, unready)."""
    from conftest import linked_model_copy

    copy = linked_model_copy(tmp_path, without="tokenizer.model")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:service.http.gunicorn_conf", "service.http.wsgi:app"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**ENV, "FAQ_INDEX": str(real_index_dir), "FAQ_MODEL": str(copy), "FAQ_PORT": str(free_port())},
    )  # fmt: skip
    try:
        log = proc.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        log = proc.communicate()[1]
        pytest.fail(f"the server did not stop: {log[-2000:]}")
    assert proc.returncode != 0
    assert "Worker failed to boot" in log and "tokenizer.model is missing" in log and "prepare-model --onnx-only" in log


def test_gunicorn_logs_no_query_string_keeps_one_metrics_series_and_lets_booting_workers_be(tmp_path, real_embedder):
    """Issue 25: a malformed request line with personal data is logged cut to its method and path; reloads leave one
    ``faq_index_info`` series (not one per build ever served); a reload signal to a worker still loading its model
    does not kill it ("Worker was sent SIGHUP!")."""
    out = tmp_path / "index"
    build_index(CHORUS_CORPUS, out, real_embedder, show_progress=False)
    proc, port = _start(out, FAQ_ADMIN_TOKEN="t0ken", FAQ_LOG_LEVEL="debug")
    try:
        status, _ = _raw(
            port, b"GET /search?q=mon mail jean.dupont@gmail.com tel 0612345678 HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert status == 400
        _raw(port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Mail jean.dupont@gmail.com\r\n\r\n")
        for _ in range(3):  # three new builds, each switched to by both workers
            new = build_index(CHORUS_CORPUS, out, real_embedder, show_progress=False).index_id
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/admin/reload", data=b"", headers={"Authorization": "Bearer t0ken"}
            )
            with urllib.request.urlopen(request, timeout=60) as r:
                assert json.loads(r.read())["ok"]
            deadline = time.time() + 60
            while _served_builds(port) != {new: 2.0} and time.time() < deadline:
                time.sleep(0.3)
            assert _served_builds(port) == {new: 2.0}, "one series: the build both workers serve"
        # A worker restarts; while it loads, its siblings' reload signals reach it.
        master = psutil.Process(proc.pid)
        before = {w.pid for w in master.children()}
        os.kill(next(iter(before)), signal.SIGKILL)
        deadline = time.time() + 30
        booting = None
        while booting is None and time.time() < deadline:
            booting = next((w.pid for w in master.children() if w.pid not in before), None)
        assert booting is not None, "no worker was started again"
        signalled = 0
        for _ in range(10):  # a burst at once, while it certainly still loads (a fast boot ends the loop below soon)
            with contextlib.suppress(ProcessLookupError):
                os.kill(booting, signal.SIGHUP)
                signalled += 1
            time.sleep(0.01)
        while time.time() < deadline and _served_builds(port).get(new) != 2.0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(booting, signal.SIGHUP)
                signalled += 1
            time.sleep(0.05)
        assert signalled >= 10 and psutil.pid_exists(booting) and booting in {w.pid for w in master.children()}
        assert _served_builds(port) == {new: 2.0}
    finally:
        log = _stop(proc)
    assert "Invalid request" in log, log[-2000:]
    for secret in ("jean.dupont", "0612345678", "gmail"):
        assert secret not in log, secret
    assert "was sent SIGHUP" not in log


def test_a_killed_master_s_metrics_directory_is_removed_by_the_next_server(tmp_path):
    """A master killed with SIGKILL never runs ``on_exit``: its ``faq-metrics-<pid>-…`` directory is removed by the
    next server that starts (another live master's, and another user's, are left alone)."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    orphan = tmp_path / f"faq-metrics-{gone.pid}-abc"
    living = tmp_path / f"faq-metrics-{os.getpid()}-abc"
    for path in (orphan, living):
        path.mkdir()
        (path / "counter_1.db").write_bytes(b"")
    code = "import os, service.http.gunicorn_conf as c; print(os.path.basename(c._made_metrics_dir))"
    done = subprocess.run([sys.executable, "-c", code], env={**ENV, "TMPDIR": str(tmp_path)}, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert not orphan.exists() and living.exists()
    made = done.stdout.strip()
    assert made.startswith("faq-metrics-") and made.split("-")[2].isdigit() and (tmp_path / made).is_dir()

"""A local cluster (service/deploy/cluster.py): 3 replicas behind HAProxy, Redis for the shared rate limit, one
published index. Under a constant, bounded load through HAProxy (loopback only): a publish reaches every replica
with no failed request, a replica killed with SIGKILL costs no client a request, and Redis stopped and started again
never fails a search. The figures (how long each step took) are printed; the benchmark is `bench.py cluster`."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import CHORUS_CORPUS, DATA, MODEL_DIR

from service.deploy import cluster
from service.indexing.build import build_index
from service.indexing.store import publish_index, read_manifest

pytestmark = pytest.mark.slow

QUERIES = [
    "mot de passe oublie",
    "comment deposer une facture",
    "je narrive pas a me connecter",
    "creer un compte fournisseur",
    "suivre le paiement de ma facture",
    "modifier mon adresse mail",
]


def _needs(program: str) -> None:
    try:
        cluster._program(program)
    except cluster.ClusterError as exc:
        pytest.fail(f"{exc} (`make test` installs it too)")


def _post(url: str, body: dict, headers: dict | None = None, timeout: float = 10) -> tuple[int, Any, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.loads(exc.read() or b"{}")


def _get(url: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class Load:
    """``clients`` threads searching through HAProxy in a loop until stopped: every outcome counted."""

    def __init__(self, url: str, clients: int = 3):
        self.url, self.outcomes, self.served_by = url, Counter(), Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, i: int) -> None:
        n = 0
        while not self._stop.is_set():
            query = QUERIES[(i + n) % len(QUERIES)] + f" {n % 50}"  # mostly fresh searches, some repeated
            n += 1
            try:
                status, headers, _ = _post(self.url + "/search", {"query": query})
            except Exception as exc:  # noqa: BLE001 - a connection refused or reset, a body that is not JSON…
                status, headers = f"error {type(exc).__name__}: {exc}", {}
            self.outcomes[status] += 1
            self.served_by[headers.get("X-Served-By", "?")] += 1
            if status != 200:
                self.failures.append(str(status))

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(30)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _ports(count: int) -> list[int]:
    """``count`` consecutive free ports below the kernel's ephemeral range (``ip_local_port_range``, 32768 and up
    here), so that no outgoing connection of this machine takes one of them as its source port meanwhile."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(max(1024, low - 12000), low - count)
        if all(_bindable(base + i) for i in range(count)):
            return list(range(base, base + count))
    raise RuntimeError("no free ports below the ephemeral range")


def _spec(tmp_path, **overrides) -> cluster.ClusterSpec:
    front, *replicas = _ports(4)
    return cluster.ClusterSpec(
        **{"replicas": 3, "run_dir": tmp_path / "cluster", "front_port": front, "first_replica_port": replicas[0],
           "model": str(MODEL_DIR), **overrides}
    )  # fmt: skip


@contextlib.contextmanager
def _cluster(tmp_path, index_dir, rate_limit: str):
    """A cluster of 3 replicas on free ports, stopped afterwards (and checked to be all gone)."""
    _needs("haproxy")
    _needs("redis-server")
    spec = _spec(tmp_path, rate_limit=rate_limit)
    cluster.start(spec, index_dir)
    try:
        yield spec
    finally:
        stopped = cluster.stop(spec)
        assert "haproxy" in stopped and "redis" in stopped
        assert all(cluster._pid(spec, n) is None for n in ["haproxy", "redis", *spec.names()])


@pytest.fixture
def running(tmp_path, real_index_dir):
    with _cluster(tmp_path, real_index_dir, "100000/minute") as spec:
        yield spec


def _wait_until(check, seconds: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if check():
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def test_the_cluster_spreads_searches_and_each_answer_names_its_replica(running):
    served = Counter(_post(running.url + "/search", {"query": q})[1].get("X-Served-By") for q in QUERIES * 2)
    assert set(served) == set(running.names()), served
    status = cluster.status(running)
    assert all(r["ready"] and r["haproxy"].startswith("UP") for r in status["replicas"].values()), status


def test_a_published_build_reaches_every_replica_under_load_without_a_failed_request(running, tmp_path, real_embedder):
    corpus = tmp_path / "corpus.jsonl"
    rows = [json.loads(line) for line in CHORUS_CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows[1]["answer"] += " Une précision ajoutée pour ce test."  # rows[0] is the FAQ header
    corpus.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    new = tmp_path / "new-index"
    build_index(corpus, new, real_embedder, show_progress=False)
    new_id = read_manifest(new).index_id
    with Load(running.url) as load:
        time.sleep(1)
        publish_index(new, running.publish_dir)
        took = _wait_until(
            lambda: all((cluster.ready(running.port(n)) or {}).get("index_id") == new_id for n in running.names()), 30
        )
        time.sleep(1)
    print(f"publish: every replica on {new_id} after {took} s; {sum(load.outcomes.values())} searches {load.outcomes}")
    assert took is not None, "not every replica serves the published build within 30 s"
    assert load.failures == [] and load.outcomes[200] > 20


def test_a_replica_killed_under_load_costs_no_request_and_rejoins(running):
    victim = "r2"
    pid = cluster._pid(running, victim)
    with Load(running.url) as load:
        time.sleep(1.5)
        os.killpg(pid, signal.SIGKILL)
        down = _wait_until(lambda: cluster.server_states(running)[victim].startswith("DOWN"), 10)
        time.sleep(1)
        cluster.start_replica(running, victim)
        back = _wait_until(lambda: cluster.server_states(running)[victim] == "UP", 20)
        served_after = Counter()
        for q in QUERIES * 2:
            served_after[_post(running.url + "/search", {"query": q})[1].get("X-Served-By")] += 1
    print(
        f"kill -9 {victim}: marked down {down:.2f} s after the kill, up {back} s after its restart; "
        f"{sum(load.outcomes.values())} searches {load.outcomes}, by replica {load.served_by}"
    )
    assert load.failures == [], "a client saw a failure"
    assert down is not None, "HAProxy did not mark the killed replica down (it checks every second, down after 2)"
    assert back is not None, "the restarted replica did not rejoin"
    assert victim in served_after, served_after


def test_a_replica_drained_and_stopped_under_load_costs_no_request(running):
    with Load(running.url) as load:
        time.sleep(1)
        started = time.monotonic()
        cluster.stop_replica(running, "r1")
        took = time.monotonic() - started
        before = sum(load.outcomes.values())
        time.sleep(1)
        after = sum(load.outcomes.values())
    print(f"drain and stop r1: {took:.2f} s; {after} searches {load.outcomes}, by replica {load.served_by}")
    assert cluster._pid(running, "r1") is None
    assert load.failures == [] and after > before, "searches went on through the other replicas"


def test_redis_stopped_and_started_again_never_fails_a_search(running):
    def states() -> set[str]:
        found = set()
        for n in running.names():
            _post(f"http://127.0.0.1:{running.port(n)}/search", {"query": "mot de passe"})  # the limiter looks now
            with urllib.request.urlopen(f"http://127.0.0.1:{running.port(n)}/health", timeout=5) as response:
                found.add(json.loads(response.read())["rate_limit"]["state"])
        return found

    with Load(running.url) as load:
        time.sleep(1)
        assert states() == {"shared"}
        cluster._end(running, "redis")
        fallback = _wait_until(lambda: states() == {"fallback_memory"}, 15)
        time.sleep(1)
        cluster.start_redis(running)
        recovered = _wait_until(lambda: states() == {"shared"}, 60)
    print(f"redis: all replicas on their fallback after {fallback} s, shared again {recovered} s after the restart; "
          f"{sum(load.outcomes.values())} searches {load.outcomes}")  # fmt: skip
    assert load.failures == []
    assert fallback is not None and recovered is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{running.port('r1')}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    fallbacks = [line for line in metrics.splitlines() if line.startswith("faq_rate_limit_fallbacks_total ")]
    assert fallbacks and float(fallbacks[0].split()[1]) >= 1


def _post_from(source: str, url: str, body: dict, headers: dict | None = None) -> tuple[int, Any, dict]:
    """POST from the loopback address ``source`` (127.0.0.2…: another client for HAProxy and the rate limit)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10, source_address=(source, 0))
    try:
        conn.request("POST", parts.path, body=json.dumps(body), headers={"Content-Type": "application/json",
                                                                          **(headers or {})})  # fmt: skip
        response = conn.getresponse()
        return response.status, response.headers, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def test_the_rate_limit_holds_across_replicas_per_client(tmp_path, real_index_dir):
    """A limit of 12 a minute: 30 searches from one client spread over 3 replicas get 12 answers in all, not 12 per
    replica; another client (another address) still has its own 12; a client naming another address in
    X-Forwarded-For gets no new allowance (HAProxy sets the header)."""
    with _cluster(tmp_path, real_index_dir, "12/minute") as spec:
        first = [_post_from("127.0.0.2", spec.url + "/search", {"query": q}) for q in (QUERIES * 5)]
        forged = _post_from("127.0.0.2", spec.url + "/search", {"query": "x"}, {"X-Forwarded-For": "192.0.2.7"})
        other = [_post_from("127.0.0.3", spec.url + "/search", {"query": q}) for q in QUERIES]
    codes = Counter(status for status, _, _ in first)
    answered_by = Counter(headers.get("X-Served-By") for status, headers, _ in first if status == 200)
    assert codes == Counter({200: 12, 429: 18}), codes
    assert len(answered_by) >= 2, f"the answered searches came from one replica only: {answered_by}"
    assert all(body["error"]["code"] == "rate_limited" for status, _, body in first if status == 429)
    assert forged[0] == 429
    assert [status for status, _, _ in other] == [200] * len(QUERIES)


def test_a_published_copy_that_fails_its_checks_is_refused_by_every_replica_which_says_so(running):
    """A copy damaged on the shared storage after its checks (a bad disk, a hand edit): every replica keeps serving
    its build and shows the refusal in /health."""
    from service.indexing.store import BUILDS, CURRENT, _point_current

    published = running.publish_dir
    serving = (published / CURRENT).resolve()
    damaged = published / BUILDS / (serving.name[:-1] + "x")
    shutil.copytree(serving, damaged)
    vectors = damaged / "vectors.faiss"
    data = bytearray(vectors.read_bytes())
    data[-10] ^= 0xFF
    vectors.write_bytes(bytes(data))
    _point_current(published, damaged.name, published / ".current.tmp-test")

    def refused_everywhere() -> bool:
        for n in running.names():
            with urllib.request.urlopen(f"http://127.0.0.1:{running.port(n)}/health", timeout=5) as response:
                last = json.loads(response.read())["reload"]["last"] or {}
            if last.get("ok") is not False:
                return False
        return True

    took = _wait_until(refused_everywhere, 15)
    assert took is not None, "a replica did not refuse the damaged copy within 15 s"
    for n in running.names():
        assert cluster.ready(running.port(n))["index_id"] == serving.name
    status, _, _ = _post(running.url + "/search", {"query": "mot de passe oublie"})
    assert status == 200


def test_haproxy_accepts_the_rendered_configuration(tmp_path):
    _needs("haproxy")
    import subprocess

    spec = cluster.ClusterSpec(replicas=3, run_dir=tmp_path)
    (tmp_path / "haproxy.cfg").write_text(cluster.render_haproxy(spec))
    done = subprocess.run([cluster._program("haproxy"), "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_slow_bodies_wait_at_haproxy_and_searches_go_on(running):
    """24 clients that send a search body slowly (a byte now and then) hold HAProxy's connections, not the replicas'
    8 slots each: the others' searches are answered meanwhile."""
    slow = []
    try:
        for _ in range(24):
            s = socket.create_connection(("127.0.0.1", running.front_port), timeout=10)
            head = b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000\r\n"
            s.sendall(head + b"\r\n")
            s.sendall(b'{"query": "' + b"a" * 100)
            slow.append(s)
        time.sleep(1)
        codes = [_post(running.url + "/search", {"query": q}, timeout=20)[0] for q in QUERIES * 2]
    finally:
        for s in slow:
            s.close()
    assert codes == [200] * len(QUERIES) * 2


def test_haproxys_own_answer_when_no_replica_is_ready_is_json_and_named(running):
    try:
        for name in running.names():
            cluster.haproxy_command(running, f"set server replicas/{name} state maint")
        status, headers, body = _post(running.url + "/search", {"query": "mot"})
    finally:
        for name in running.names():
            cluster.haproxy_command(running, f"set server replicas/{name} state ready")
    assert status == 503 and body["error"]["code"] == "no_replica"
    assert headers.get("X-Served-By") == "haproxy" and headers.get("Content-Type") == "application/json"


def test_a_cluster_of_two_faqs_serves_and_publishes_each_under_its_name(tmp_path, real_index_dir, real_embedder):
    """Two FAQs on 2 replicas: each FAQ answered under its name through HAProxy, a build of one published with
    `faq-search publish --faq` reaches every replica, the other FAQ untouched."""
    _needs("haproxy")
    _needs("redis-server")
    from service.cli import publish

    mairie = tmp_path / "mairie.jsonl"
    mairie.write_bytes((DATA / "mairie_faq.jsonl").read_bytes())
    build_index(mairie, tmp_path / "mairie-index", real_embedder, show_progress=False)
    spec = _spec(tmp_path, replicas=2, rate_limit="100000/minute", faqs=["chorus-pro", "mairie"])
    cluster.start(spec, faq_indexes={"chorus-pro": real_index_dir, "mairie": tmp_path / "mairie-index"})
    try:
        listed = _get(spec.url + "/faqs")
        assert [f["name"] for f in listed["faqs"]] == ["chorus-pro", "mairie"]
        status, _, body = _post(spec.url + "/faqs/mairie/search", {"query": "acte de naissance"})
        assert status == 200 and body["results"][0]["faq_id"] == "mairie-1"
        with mairie.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"id": "mairie-4", "question": "Où se garer ?", "answer": "Place du marché."}) + "\n")
        build_index(mairie, tmp_path / "mairie-index", real_embedder, show_progress=False)
        assert publish.main(["--faq", "mairie", "--index", str(tmp_path / "mairie-index"), "--to",
                             str(spec.publish_dir)]) == 0  # fmt: skip

        def every_replica_has_four() -> bool:
            counts = [_get(f"http://127.0.0.1:{spec.port(n)}/faqs")["faqs"][1]["entries"] for n in spec.names()]
            return counts == [4, 4]

        assert _wait_until(every_replica_has_four, 30) is not None
        assert _get(spec.url + "/faqs")["faqs"][0]["entries"] == 5  # the other FAQ: untouched
    finally:
        cluster.stop(spec)

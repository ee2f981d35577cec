"""Operations: reloading a new index build while serving (admin endpoint, SIGHUP, watcher), refusing a bad one,
the admin token and the API keys."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import MINI_CORPUS, HashingEmbedder, assert_error, corpus_with

from service.errors import IndexUnavailable, redact_paths
from service.http.app import create_app
from service.indexing.build import build_index
from service.indexing.store import VECTORS, load_index, resolve
from service.search.engine import SearchEngine

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _changed_corpus(tmp_path, marker: str):
    return corpus_with(MINI_CORPUS, tmp_path, marker)


@pytest.fixture
def served(tmp_path, fake_embedder):
    """An app serving an index directory that tests rebuild under it."""
    out = tmp_path / "index"
    build_index(MINI_CORPUS, out, fake_embedder, show_progress=False)

    def make(**config):
        engine = SearchEngine(fake_embedder, load_index(out))
        return create_app({"TESTING": True, "FAQ_INDEX": str(out), "FAQ_ADMIN_TOKEN": TOKEN, **config}, engine=engine)

    return make, out


def _answer_of(client, faq_id: str) -> str:
    return client.get(f"/faq/{faq_id}").get_json()["answer"]


# ---- the admin surface ----


@pytest.mark.parametrize("method,path", [("post", "/admin/reload"), ("get", "/admin/stats")])
def test_admin_is_disabled_without_a_token(client, method, path):
    assert_error(getattr(client, method)(path, headers=AUTH), 403, "admin_disabled")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"X-API-Key": "wrong"},
        {"Authorization": "Bearer "},
    ],
)
def test_admin_needs_the_right_token(served, headers):
    make, _ = served
    client = make().test_client()
    assert_error(client.post("/admin/reload", headers=headers), 401, "unauthorized")
    assert_error(client.get("/admin/stats", headers=headers), 401, "unauthorized")
    assert client.get("/admin/stats", headers=AUTH).status_code == 200


def test_admin_reload_body_is_validated(served):
    client = served[0]().test_client()
    assert_error(client.post("/admin/reload", json={"force": "yes"}, headers=AUTH), 400, "invalid_request")
    assert_error(client.post("/admin/reload", json=[1], headers=AUTH), 400, "invalid_request")
    deep = {"data": "[" * 983 + "]" * 983, "content_type": "application/json", "headers": AUTH}
    assert_error(client.post("/admin/reload", **deep), 400, "invalid_request")
    assert_error(
        client.post("/admin/reload", data=b"\xff{", content_type="application/json", headers=AUTH),
        400,
        "invalid_request",
    )


# ---- reloading ----


def test_reload_switches_to_the_new_build(served, tmp_path, fake_embedder):
    make, out = served
    app = make()
    client = app.test_client()
    before = client.get("/health").get_json()["index"]["id"]
    same = client.post("/admin/reload", headers=AUTH).get_json()
    assert same["ok"] and not same["changed"] and same["index_id"] == before
    corpus, faq_id = _changed_corpus(tmp_path, "NOUVEAU-TEXTE")
    build_index(corpus, out, fake_embedder, show_progress=False)
    done = client.post("/admin/reload", headers=AUTH)
    body = done.get_json()
    assert done.status_code == 200 and body["ok"] and body["changed"] and body["previous_index_id"] == before
    assert body["signalled_workers"] == 0  # not under gunicorn: no sibling workers
    health = client.get("/health").get_json()
    assert health["index"]["id"] == body["index_id"] != before
    assert health["reload"]["reloads"] == 1 and health["reload"]["last"]["trigger"] == "admin"
    assert "NOUVEAU-TEXTE" in _answer_of(client, faq_id)
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'index_id="{before}"' not in metrics, "a build no longer served leaves no series behind"
    assert f'faq_index_info{{faq="faq",index_id="{body["index_id"]}"}} 1.0' in metrics
    assert 'faq_reloads_total{faq="faq",outcome="switched"}' in metrics
    assert client.post("/admin/reload", json={"force": True}, headers=AUTH).get_json()["changed"]


@pytest.mark.parametrize("damage", ["truncate", "delete", "other_model"])
def test_a_bad_build_is_refused_and_the_old_index_keeps_serving(served, tmp_path, fake_embedder, damage):
    make, out = served
    app = make()
    client = app.test_client()
    before = client.get("/health").get_json()["index"]["id"]
    corpus, faq_id = _changed_corpus(tmp_path, "JAMAIS-SERVI")
    if damage == "other_model":
        other = HashingEmbedder()
        other.model_id = "another/model"
        build_index(corpus, out, other, show_progress=False)
    else:
        build_index(corpus, out, fake_embedder, show_progress=False)
        vectors = resolve(out) / VECTORS
        if damage == "truncate":
            vectors.write_bytes(vectors.read_bytes()[:100])
        else:
            vectors.unlink()
    refused = client.post("/admin/reload", headers=AUTH)
    body = refused.get_json()
    assert refused.status_code == 409 and body["ok"] is False and body["changed"] is False
    assert body["error"]["code"] == ("index_model_mismatch" if damage == "other_model" else "index_unavailable")
    health = client.get("/health").get_json()
    assert health["index"]["id"] == before and health["reload"]["last"]["error"] == redact_paths(body["error"])
    # /health is open: it names builds, never the host's directories (the admin answer keeps the full reason).
    assert str(tmp_path) in json.dumps(body) and str(tmp_path) not in json.dumps(health)
    search = client.post("/search", json={"query": "mot de passe"})
    assert search.status_code == 200 and search.get_json()["index"]["id"] == before
    assert "JAMAIS-SERVI" not in _answer_of(client, faq_id)


class _GatedEmbedder(HashingEmbedder):
    """Blocks inside encode until released, to hold a request in flight."""

    def __init__(self):
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()
        self.gate = False

    def encode(self, texts, kind="query", batch_size=32, show_progress=False):
        if self.gate and kind == "query":
            self.entered.set()
            assert self.release.wait(10)
        return super().encode(texts, kind, batch_size, show_progress)


def test_a_request_in_flight_finishes_on_the_index_it_started_with(tmp_path):
    embedder = _GatedEmbedder()
    out = tmp_path / "index"
    build_index(MINI_CORPUS, out, embedder, show_progress=False)
    app = create_app(
        {"TESTING": True, "FAQ_INDEX": str(out), "FAQ_ADMIN_TOKEN": TOKEN, "FAQ_CACHE_SIZE": 0},
        engine=SearchEngine(embedder, load_index(out)),
    )
    before = app.extensions["faqs"].default.current_engine.index.index_id
    corpus, _ = _changed_corpus(tmp_path, "APRES")
    build_index(corpus, out, embedder, show_progress=False)
    embedder.gate = True
    answers = []
    worker = threading.Thread(
        target=lambda: answers.append(app.test_client().post("/search", json={"query": "mot de passe"}).get_json())
    )
    worker.start()
    assert embedder.entered.wait(10)
    embedder.gate = False
    assert app.test_client().post("/admin/reload", headers=AUTH).get_json()["changed"]  # while it is in flight
    embedder.release.set()
    worker.join(10)
    assert answers[0]["index"]["id"] == before  # finished on the old index
    after = app.test_client().post("/search", json={"query": "mot de passe"}).get_json()
    assert after["index"]["id"] != before


def test_sighup_reloads(served, tmp_path, fake_embedder):
    make, out = served
    app = make()
    previous = signal.getsignal(signal.SIGHUP)
    try:
        assert app.extensions["faqs"].default.reloader.install_sighup()
        corpus, _ = _changed_corpus(tmp_path, "PAR-SIGNAL")
        build_index(corpus, out, fake_embedder, show_progress=False)
        os.kill(os.getpid(), signal.SIGHUP)
        _wait(lambda: app.extensions["faqs"].default.reloader.reloads == 1)
        assert app.extensions["faqs"].default.reloader.last["trigger"] == "sighup"
        assert app.extensions["faqs"].default.current_engine.index.path == resolve(out)
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_the_watcher_picks_up_a_new_build_and_skips_a_bad_one(served, tmp_path, fake_embedder, caplog):
    make, out = served
    app = make(FAQ_WATCH_SECONDS=0.05)
    reloader = app.extensions["faqs"].default.reloader
    try:
        corpus, _ = _changed_corpus(tmp_path, "VU")
        build_index(corpus, out, fake_embedder, show_progress=False)
        _wait(lambda: reloader.reloads == 1)
        assert reloader.last["trigger"] == "watch" and app.extensions[
            "faqs"
        ].default.current_engine.index.path == resolve(out)
        good = app.extensions["faqs"].default.current_engine.index.index_id
        corpus, _ = _changed_corpus(tmp_path, "CASSE")
        with caplog.at_level(logging.ERROR, logger="service.http.reloader"):
            # The bad build is damaged before it is published (damaged after, the watcher could load it first).
            staging = tmp_path / "staging"
            build_index(corpus, staging, fake_embedder, show_progress=False)
            bad = resolve(staging)
            (bad / VECTORS).write_bytes(b"not faiss")
            shutil.move(str(bad), str(out / "builds" / bad.name))
            os.symlink(Path("builds") / bad.name, out / ".current.tmp-test")
            os.replace(out / ".current.tmp-test", out / "current")
            _wait(lambda: reloader.last["ok"] is False)
            time.sleep(0.3)  # several more ticks: the refused build is not retried over and over
        assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1
        assert app.extensions["faqs"].default.current_engine.index.index_id == good
    finally:
        reloader.stop()


def _wait(condition, seconds: float = 10.0) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


# ---- API keys ----


def test_search_routes_need_a_key_when_keys_are_configured(served, caplog):
    make, _ = served
    client = make(FAQ_API_KEYS="key-one, key-two").test_client()
    with caplog.at_level(logging.DEBUG):
        assert_error(client.post("/search", json={"query": "mot de passe"}), 401, "unauthorized")
        assert_error(client.get("/search?q=mot", headers={"X-API-Key": "key-three"}), 401, "unauthorized")
        assert_error(client.post("/search/batch", json={"queries": ["a"]}), 401, "unauthorized")
        assert_error(client.get("/faq/whatever"), 401, "unauthorized")
        assert (
            client.post(
                "/search", json={"query": "mot de passe"}, headers={"Authorization": "Bearer key-one"}
            ).status_code
            == 200
        )
        assert client.get("/search?q=mot", headers={"X-API-Key": "key-two"}).status_code == 200
    for open_path in ("/health", "/openapi.json", "/"):
        response = client.get(open_path)
        response.close()  # the page is a file response
        assert response.status_code == 200
    assert not [r for r in caplog.records if "key-" in r.getMessage()]  # keys never logged


def test_without_keys_search_is_open(client):
    assert client.post("/search", json={"query": "mot de passe"}).status_code == 200


# ---- the corpus round trip: what a rebuild will change ----


def test_a_build_reports_entries_added_changed_and_removed(served, tmp_path, fake_embedder):
    _, out = served
    rows = [json.loads(line) for line in MINI_CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    previous = load_index(out).index_id
    rows[0]["answer"] += " (mis à jour)"
    removed = rows.pop()
    rows.append({"id": "nouvelle-entree", "question": "Une nouvelle question ?", "answer": "Sa réponse."})
    corpus = tmp_path / "next.jsonl"
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    manifest = build_index(corpus, out, fake_embedder, show_progress=False)
    assert manifest.changes == {
        "previous_index_id": previous,
        "added": ["nouvelle-entree"],
        "changed": [rows[0]["id"]],
        "removed": [removed["id"]],
        "unchanged": len(rows) - 2,
        "identity_changed": False,
    }
    first = build_index(MINI_CORPUS, tmp_path / "fresh", fake_embedder, show_progress=False).changes
    assert first["previous_index_id"] is None and len(first["added"]) == 4 and not first["removed"]
    assert first["identity_changed"] is False
    # Only the "faq" header changes: the report says so (the entries are the same).
    named = tmp_path / "named.jsonl"
    named.write_text('{"faq": {"name": "Mini"}}\n' + corpus.read_text(encoding="utf-8"), encoding="utf-8")
    renamed = build_index(named, out, fake_embedder, show_progress=False)
    assert renamed.changes["identity_changed"] is True and renamed.changes["changed"] == []
    from service.indexing.build import describe_changes

    assert "the faq header changed" in describe_changes(renamed.changes)


def test_check_validates_without_building(served, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    _, out = served
    builds = sorted(p.name for p in (out / "builds").iterdir())
    done = subprocess.run(
        [sys.executable, "scripts/build_index.py", "--check", "--corpus", str(MINI_CORPUS), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["valid"] and report["entries"] == 4 and report["changes"]["unchanged"] == 4
    assert report["synonyms"] == {"equivalent": 0, "oneway": 0}
    assert sorted(p.name for p in (out / "builds").iterdir()) == builds  # nothing written
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "question": "Q ?", "answer": "R."}\n{"id": "a", "question": "Q2 ?"}\n')
    done = subprocess.run(
        [sys.executable, "scripts/build_index.py", "--check", "--corpus", str(bad), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and f"{bad}:2:" in done.stderr


# ---- observability ----


def test_request_ids_are_accepted_or_generated_and_echoed(client):
    given = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = client.get("/health", headers={"X-Request-ID": "not ok\\n" * 3})
    assert len(made.headers["X-Request-ID"]) == 32 and made.headers["X-Request-ID"] != "abc-123"
    error = client.post("/search", json={})
    assert error.status_code == 400 and error.headers["X-Request-ID"]


def test_one_log_line_per_request_and_queries_only_when_configured(served, caplog):
    make, _ = served
    for keep, expected in ((0, None), (8, "mot de p")):
        client = make(FAQ_LOG_QUERIES=keep).test_client()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="service.requests"):
            client.post("/search", json={"query": "mot de passe oublié"}, headers={"X-Request-ID": "r-1"})
        [record] = [r for r in caplog.records if r.name == "service.requests"]
        assert (record.request_id, record.route, record.status) == ("r-1", "/search", 200)
        assert getattr(record, "query", None) == expected


def test_metrics_count_requests_searches_and_the_index(client):
    client.post("/search", json={"query": "mot de passe"})
    client.post("/search", json={"query": "mot de passe"})  # a cache hit
    client.post("/search", json={})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'faq_requests_total{method="POST",route="/search",status="200"}' in text
    assert 'faq_requests_total{method="POST",route="/search",status="400"}' in text
    assert "faq_encode_seconds_count" in text and 'faq_cache_total{faq="faq",result="hit"}' in text
    assert "faq_searches_total{answered=" in text and 'faq_index_entries{faq="faq"} 4.0' in text
    served = client.get("/ready").get_json()["index_id"]
    assert f'faq_index_info{{faq="faq",index_id="{served}"}} 1.0' in text


def test_ready_says_whether_a_model_and_index_are_loaded(client, tmp_path):
    body = client.get("/ready").get_json()
    assert body["status"] == "ready" and body["index_id"]
    empty = create_app({"TESTING": True, "FAQ_INDEX": str(tmp_path / "none")}).test_client()
    assert_error(empty.get("/ready"), 503, "index_unavailable")


# ---- limits ----


def test_rate_limit_answers_429_with_retry_after(served):
    make, _ = served
    client = make(FAQ_RATE_LIMIT="3/minute").test_client()
    for _ in range(3):
        assert client.post("/search", json={"query": "mot de passe"}).status_code == 200
    refused = client.post("/search", json={"query": "mot de passe"})
    assert_error(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) > 0
    assert client.get("/health").status_code == 200  # probes are not counted


def test_a_made_up_key_is_no_new_client_for_the_rate_limit(served):
    """Only a valid key is an identity: 12 requests with 12 invented keys share the address's 5."""
    make, _ = served
    open_service = make(FAQ_RATE_LIMIT="5/minute").test_client()
    codes = [
        open_service.post("/search", json={"query": "mot"}, headers={"X-API-Key": f"made-up-{n}"}).status_code
        for n in range(12)
    ]
    assert codes == [200] * 5 + [429] * 7
    keyed = make(FAQ_RATE_LIMIT="5/minute", FAQ_API_KEYS="good-key,other-key").test_client()
    guesses = [keyed.post("/search", json={"query": "mot"}, headers={"X-API-Key": f"guess-{n}"}) for n in range(8)]
    assert [g.status_code for g in guesses] == [401] * 5 + [429] * 3  # guessing keys is limited too
    for key in ("good-key", "other-key"):  # each valid key is a client of its own, with its own allowance
        assert keyed.post("/search", json={"query": "mot"}, headers={"X-API-Key": key}).status_code == 200


def test_an_unreachable_shared_store_fails_open_counts_per_worker_and_says_so(served, caplog):
    """Redis down (nothing listens on the port): searches answer, the limit is counted in this worker's memory,
    and /health, /metrics and the log say so."""

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    make, _ = served
    fallbacks_before = _sample(
        make().test_client().get("/metrics").get_data(as_text=True), "faq_rate_limit_fallbacks_total"
    )
    app = make(FAQ_RATE_LIMIT="4/minute", FAQ_RATE_LIMIT_STORAGE=f"redis://:secret@127.0.0.1:{port}/0")
    client = app.test_client()
    with caplog.at_level("WARNING"):
        codes = [client.post("/search", json={"query": "mot de passe"}).status_code for _ in range(6)]
    assert codes == [200] * 4 + [429] * 2  # open, and still the limit, counted alone
    assert "falling back to in-memory storage" in caplog.text
    limit = client.get("/health").get_json()["rate_limit"]
    assert limit == {"enabled": True, "limit": "4/minute", "storage": "redis", "state": "fallback_memory"}
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "faq_rate_limit_shared 0.0" in metrics
    assert _sample(metrics, "faq_rate_limit_fallbacks_total") == fallbacks_before + 1


def _sample(metrics: str, name: str) -> float:
    """The value of an unlabelled sample in Prometheus' text format (0 when absent)."""
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_every_response_says_which_replica_served_it(served):
    make, _ = served
    client = make(FAQ_REPLICA_NAME="replica-7").test_client()
    for response in (client.post("/search", json={"query": "mot"}), client.get("/health"), client.get("/nowhere")):
        assert response.headers["X-Served-By"] == "replica-7"
    assert "X-Served-By" not in make().test_client().get("/health").headers  # no name: the host's is not told


def test_behind_a_proxy_each_client_has_its_own_limit_and_cannot_choose_its_address(served):
    """FAQ_PROXY_HOPS=1 (the cluster's replicas): the client is the address the proxy put last in
    X-Forwarded-For; without it the header is ignored and the peer is the client."""
    make, _ = served
    behind = make(FAQ_RATE_LIMIT="2/minute", FAQ_PROXY_HOPS=1).test_client()

    def codes(forwarded: str) -> list[int]:
        return [
            behind.post("/search", json={"query": "mot"}, headers={"X-Forwarded-For": forwarded}).status_code
            for _ in range(3)
        ]

    assert codes("203.0.113.1") == [200, 200, 429]
    assert codes("203.0.113.2") == [200, 200, 429]  # another client, its own allowance
    # A client's own header before the proxy's address changes nothing: only the last hop is trusted.
    assert codes("198.51.100.9, 203.0.113.1") == [429, 429, 429]
    direct = make(FAQ_RATE_LIMIT="2/minute").test_client()
    forged = [
        direct.post("/search", json={"query": "mot"}, headers={"X-Forwarded-For": f"192.0.2.{n}"}) for n in range(3)
    ]
    assert [r.status_code for r in forged] == [200, 200, 429]  # no proxy configured: the header is not believed


def test_a_search_that_cannot_start_in_time_fails_fast(tmp_path):
    embedder = _GatedEmbedder()
    out = tmp_path / "index"
    build_index(MINI_CORPUS, out, embedder, show_progress=False)
    app = create_app(
        {"TESTING": True, "FAQ_CACHE_SIZE": 0, "FAQ_MAX_CONCURRENT_SEARCHES": 1, "FAQ_SEARCH_TIMEOUT": 0.2},
        engine=SearchEngine(embedder, load_index(out)),
    )
    embedder.gate = True
    holder = threading.Thread(target=lambda: app.test_client().post("/search", json={"query": "un"}))
    holder.start()
    assert embedder.entered.wait(10)
    started = time.perf_counter()
    refused = app.test_client().post("/search", json={"query": "deux"})
    assert_error(refused, 503, "search_timeout")
    assert refused.headers["Retry-After"] == "1" and time.perf_counter() - started < 2
    embedder.gate = False
    embedder.release.set()
    holder.join(10)
    assert app.test_client().post("/search", json={"query": "trois"}).status_code == 200


def test_a_valid_key_counts_whichever_header_carries_it(served):
    client = served[0](FAQ_API_KEYS="good-key").test_client()
    both = {"Authorization": "Bearer something-else", "X-API-Key": "good-key"}
    assert client.post("/search", json={"query": "mot"}, headers=both).status_code == 200


def test_a_current_link_loop_falls_back_on_the_last_good_build(served):
    from service.indexing.store import load_latest_sound

    _, out = served
    good = resolve(out).name
    (out / "current").unlink()
    (out / "current").symlink_to("current")  # a link to itself
    with pytest.raises(IndexUnavailable):
        load_index(out)
    index = load_latest_sound(out)
    assert index.path.name == good and index.fallback["serving"] == good


def test_the_admin_token_is_only_a_bearer_token(served):
    client = served[0]().test_client()
    assert_error(client.get("/admin/stats", headers={"X-API-Key": TOKEN}), 401, "unauthorized")
    assert client.get("/admin/stats", headers=AUTH).status_code == 200


# ---- builds a reload must survive ----


@pytest.mark.parametrize(
    "damage",
    [
        "no_counts",
        "manifest_is_a_list",
        "files_not_a_dict",
        "build_is_a_file",
        "no_index_id",
        "scoring_is_a_string",
        "slope_is_text",
        "slope_is_nan",
        "threshold_out_of_range",
        "answer_check_damaged",
        "margin_too_large_for_a_float",
        "answer_check_bias_is_a_bool",
    ],
)
def test_a_malformed_build_is_refused_and_the_watcher_outlives_it(served, tmp_path, fake_embedder, damage):
    """A manifest missing a field or of the wrong shape, or a build that is not a directory: 409 with the reason
    in /health, never a 500, and the watcher still picks up the next good build."""
    make, out = served
    app = make(FAQ_WATCH_SECONDS=0.1)
    client = app.test_client()
    before = client.get("/health").get_json()["index"]["id"]
    build_index(_changed_corpus(tmp_path, "ABIME")[0], out, fake_embedder, show_progress=False)
    build = resolve(out)
    manifest = json.loads((build / "manifest.json").read_text())
    if damage == "no_counts":
        del manifest["counts"]
    elif damage == "files_not_a_dict":
        manifest["files"] = ["vectors.faiss"]
    elif damage == "no_index_id":
        del manifest["index_id"]
    elif damage == "scoring_is_a_string":
        manifest["scoring"] = "x"
    elif damage == "slope_is_text":
        manifest["scoring"]["slope"] = "abc"
    elif damage == "slope_is_nan":
        manifest["scoring"]["slope"] = float("nan")
    elif damage == "threshold_out_of_range":
        manifest["scoring"]["answer_threshold"] = 2.5
    elif damage == "answer_check_damaged":
        manifest["scoring"]["answerability"]["thresholds"] = [[5, "high"]]
    elif damage == "margin_too_large_for_a_float":  # float() of it raises OverflowError, not ValueError
        manifest["scoring"]["non_answer_margin"] = 10**400
    elif damage == "answer_check_bias_is_a_bool":
        manifest["scoring"]["answerability"]["bias"] = True
    if damage == "manifest_is_a_list":
        (build / "manifest.json").write_text(json.dumps([manifest]))
    elif damage == "build_is_a_file":
        for child in build.iterdir():
            child.unlink()
        build.rmdir()
        build.write_text("not a build")
    else:
        (build / "manifest.json").write_text(json.dumps(manifest))
    refused = client.post("/admin/reload", headers=AUTH)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "index_unavailable"
    health = client.get("/health").get_json()
    assert health["index"]["id"] == before and health["reload"]["last"]["ok"] is False
    corpus, faq_id = _changed_corpus(tmp_path, "REPARE")
    good = build_index(corpus, out, fake_embedder, show_progress=False).index_id
    deadline = time.time() + 10
    while client.get("/health").get_json()["index"]["id"] != good and time.time() < deadline:
        time.sleep(0.1)
    assert client.get("/health").get_json()["index"]["id"] == good, "the watcher died on the bad build"
    assert "REPARE" in _answer_of(client, faq_id)
    app.extensions["faqs"].default.reloader.stop()


def test_a_worker_starts_on_the_last_good_build_when_the_current_one_is_damaged(served, tmp_path, fake_embedder):
    """What a gunicorn worker does when it (re)starts: the current build is damaged, the previous one serves,
    and /health says so; only when no build loads does it refuse."""
    make, out = served
    first = load_index(out).index_id
    build_index(_changed_corpus(tmp_path, "ABIME")[0], out, fake_embedder, show_progress=False)
    damaged = resolve(out)
    (damaged / VECTORS).write_bytes(b"truncated")
    from service.indexing.store import load_latest_sound  # what load_engine reads, as a worker starts

    index = load_latest_sound(out)
    assert index.index_id == first and index.fallback["wanted"] == damaged.name
    assert "checksum" in index.fallback["reason"]
    engine = SearchEngine(fake_embedder, index)
    client = create_app({"TESTING": True, "FAQ_INDEX": str(out)}, engine=engine).test_client()
    fallback = client.get("/health").get_json()["index"]["fallback"]
    assert fallback["serving"] == first and fallback["wanted"] == damaged.name and str(tmp_path) not in str(fallback)
    assert client.post("/search", json={"query": "mot de passe"}).status_code == 200
    for build in (out / "builds").iterdir():
        if build.is_dir():
            (build / VECTORS).write_bytes(b"truncated")
    with pytest.raises(IndexUnavailable) as failure:
        load_latest_sound(out)
    assert damaged.name in failure.value.message  # the current build's own reason


def test_a_build_that_cannot_be_published_leaves_nothing_behind(served, tmp_path, fake_embedder, monkeypatch):
    """No inode left for the `current` link: the build fails, and neither its directory nor a link stays."""
    import errno

    from service.indexing import store

    _, out = served
    before = sorted(p.name for p in (out / "builds").iterdir())
    current = resolve(out)

    def no_inodes(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "symlink", no_inodes)
    with pytest.raises(OSError):
        build_index(_changed_corpus(tmp_path, "SANS-INODE")[0], out, fake_embedder, show_progress=False)
    assert sorted(p.name for p in (out / "builds").iterdir()) == before
    assert resolve(out) == current and not [p for p in out.iterdir() if p.name.startswith(".current")]


def test_the_rate_limit_is_one_allowance_per_client_across_routes_and_a_batch_costs_its_questions(served):
    make, _ = served
    client = make(FAQ_RATE_LIMIT="6/minute").test_client()
    assert client.post("/search", json={"query": "mot"}).status_code == 200  # 1
    assert client.get("/search?q=mot").status_code == 200  # 2: the same allowance on another route
    batch = client.post("/search/batch", json={"queries": [{"query": "un"}, {"query": "deux"}, {"query": "trois"}]})
    assert batch.status_code == 200 and len(batch.get_json()["results"]) == 3  # 5: three questions
    assert client.post("/search", json={"query": "mot"}).status_code == 200  # 6
    assert_error(client.get("/search?q=mot"), 429, "rate_limited")
    broken = make(FAQ_RATE_LIMIT="6/minute").test_client()
    assert_error(broken.post("/search/batch", data=b"{not json", content_type="application/json"), 400, "invalid_json")


# ---- no request line reaches a log unredacted (issue 25) ----

PERSONAL_LINE = b"GET /search?q=mon mail jean.dupont@gmail.com tel 0612345678 HTTP/1.1\r\nHost: x\r\n\r\n"


def _raw(url: str, data: bytes) -> bytes:
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_the_development_server_logs_no_query_string(app, caplog):
    """Werkzeug logs each request line, and a malformed one as an error, query string and all."""
    import threading

    from werkzeug.serving import make_server

    from service.http.devserver import ScrubbingHandler

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=ScrubbingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            answer = _raw(url, PERSONAL_LINE)
            _raw(
                url,
                b"GET /search?q=jean.dupont%40gmail.com+0612345678 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert answer.startswith(b"HTTP/1.") and "/search" in logged
    for secret in ("jean.dupont", "0612345678", "gmail", "q="):
        assert secret not in logged, logged

"""What the third hardening round found in the learning loop (issue 25), each defect with the fault that showed it:
queries the reviewed file's reader would refuse, a disk that fills during an append, a corpus rewritten while a
build reads it, builds that fail or whose worker dies, a log without bounds, one client owning the queue. Fast
tier: the fake embedder; the killed worker on gunicorn with the real model is in test_learning_loop.py."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MINI_CORPUS, ROOT, assert_error
from test_learning import ADMIN, _flush, _queue, _rows, _search, _settled

from service.corpus import CorpusError, text_field
from service.indexing.build import build_index
from service.indexing.store import BUILDS, load_index, read_manifest
from service.learning import querylog as querylog_module
from service.learning import review_queue
from service.learning.querylog import QueryLog, connect, query_stats
from service.learning.rebuild import MAX_ATTEMPTS, Rebuilder
from service.learning.redaction import MAX_LOGGED_CHARS
from service.reviewed_file import MAX_QUESTION_CHARS, append_action, new_action, read_actions, reviewed_path

TESTS = Path(__file__).resolve().parent


def _decide(client, body):
    return client.post("/admin/review/actions", headers=ADMIN, json=body)


# ---- 1. what the writer appends, the reader accepts ----

HOSTILE = ["\u200b", "facture\u0000refusee", "\ufdfa" * 1000, "a\u0301\u0301 \u2028 b\tc", "\ud7ff x \U0010ffff"]


def test_every_logged_query_is_a_question_the_reviewed_file_accepts(learning):
    app, client, tmp = learning
    for query in HOSTILE:
        _search(client, query)
    _flush(app)
    for row in _rows(tmp / "log.db"):
        assert len(row["query"]) <= MAX_LOGGED_CHARS
        if row["query"]:  # an invisible-only query is kept empty, and never listed for review
            text_field(row["query"], "questions[0]", "log", 1)
            assert "\x00" not in row["query"]
    queue = _queue(client)
    assert queue["groups"] and all(e["text"] for g in queue["groups"] for e in g["examples"])
    # Every group decided, then every decision read back, and a build with them all succeeds.
    for group in queue["groups"]:
        body = {"action": "dismiss", "query_keys": group["query_keys"], "index_id": queue["index_id"]}
        assert _decide(client, body).status_code == 201
    attach = {"action": "attach", "faq_id": "compte", "query_keys": [], "index_id": queue["index_id"]}
    problems = []
    assert len(read_actions(reviewed_path(tmp / "faq.jsonl"), problems)) == len(queue["groups"]) and not problems
    assert _queue(client)["groups"] == [] and attach
    manifest = build_index(
        tmp / "faq.jsonl", tmp / "index", app.extensions["faqs"].default.current_engine.embedder, show_progress=False
    )
    assert manifest.corpus.reviewed["unreadable"] == []


def test_the_invisible_query_cannot_be_decided_and_nothing_is_written(learning):
    app, client, tmp = learning
    body = _search(client, "\u200b")
    _flush(app)
    key = _rows(tmp / "log.db")[0]["query_key"]
    err = assert_error(
        _decide(client, {"action": "dismiss", "query_keys": [key], "index_id": body["index"]["id"]}),
        404,
        "unknown_query",
    )
    assert "not in the log" in err["message"] and not reviewed_path(tmp / "faq.jsonl").exists()


@pytest.mark.parametrize("by", [" ", "\u200b", "marie\x00", "a\nb", "\u0085x", "\u009fy"])
def test_a_decision_or_a_revert_by_nobody_is_refused(learning, by):
    app, client, tmp = learning
    _search(client, "xylophone quantique")
    _flush(app)
    group = _queue(client)["groups"][0]
    body = {"action": "dismiss", "query_keys": group["query_keys"], "index_id": _queue(client)["index_id"]}
    r = _decide(client, {**body, "by": by})
    assert assert_error(r, 400, "invalid_request")["field"] == "by"
    assert not reviewed_path(tmp / "faq.jsonl").exists()
    decided = _decide(client, body).get_json()["action"]["id"]
    before = reviewed_path(tmp / "faq.jsonl").read_bytes()
    r = client.post(f"/admin/review/actions/{decided}/revert", headers=ADMIN, json={"by": by})
    assert assert_error(r, 400, "invalid_request")["field"] == "by"
    assert reviewed_path(tmp / "faq.jsonl").read_bytes() == before


def test_a_logged_row_the_reader_would_refuse_is_refused_before_it_is_written(learning, monkeypatch):
    """A row of an older version (a NUL, no redaction) and a normaliser that lets it through: the reader's own
    check refuses the decision with its code, and the reviewed file is not touched."""
    app, client, tmp = learning
    _search(client, "xylophone quantique")
    _flush(app)
    conn = sqlite3.connect(tmp / "log.db")
    conn.execute("UPDATE searches SET query = ?", ("xylophone\x00quantique",))
    conn.commit()
    conn.close()
    monkeypatch.setattr(review_queue, "redact", lambda text: text)
    queue = _queue(client)
    r = _decide(client, {"action": "dismiss", "query_keys": queue["groups"][0]["query_keys"],
                         "index_id": queue["index_id"]})  # fmt: skip
    assert "NUL" in assert_error(r, 400, "invalid_review_action")["message"]
    assert not reviewed_path(tmp / "faq.jsonl").exists()


def test_a_bad_line_never_fails_a_build(tmp_path, fake_embedder):
    corpus = tmp_path / "faq.jsonl"
    corpus.write_bytes(MINI_CORPUS.read_bytes())
    good = new_action("attach", "marie", faq_id="compte", questions=("ouvrir un espace",))
    reviewed_path(corpus).write_text(
        '{"action": "attach", "faq_id": "compte", "questions": [""]}\n' + json.dumps(good.to_dict()) + "\nnot json\n"
    )
    manifest = build_index(corpus, tmp_path / "index", fake_embedder, show_progress=False)
    reviewed = manifest.corpus.reviewed
    assert reviewed["alt_questions"] == 1 and len(reviewed["unreadable"]) == 2
    assert "faq.reviewed.jsonl:1" in reviewed["unreadable"][0] and "faq.reviewed.jsonl:3" in reviewed["unreadable"][1]


# ---- 2. appends are whole or nothing ----

APPEND_UNDER_A_LIMIT = """
import os, resource, signal, sys
from service.reviewed_file import append_action, new_action
path = sys.argv[1]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit, a write fails with EFBIG instead of killing us
limit = os.path.getsize(path) + 200
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
questions = tuple("question %d " % i + "x" * 300 for i in range(8))
try:
    append_action(path, new_action("dismiss", "marie", questions=questions))
except OSError as exc:
    print("refused", exc.errno)
"""


def test_an_append_that_fills_the_disk_leaves_the_file_as_it_was(tmp_path):
    """A file size limit (RLIMIT_FSIZE) lets the first 200 bytes of a 2.5 KB line through, then fails: the line is
    rolled back, and the file stays readable; once there is room again, the next append is whole."""
    path = tmp_path / "faq.reviewed.jsonl"
    append_action(path, new_action("dismiss", "marie", questions=("première",)))
    before = path.read_bytes()
    done = subprocess.run([sys.executable, "-c", APPEND_UNDER_A_LIMIT, str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.stdout.strip() == f"refused {errno.EFBIG}", done.stderr
    assert path.read_bytes() == before
    append_action(path, new_action("dismiss", "marie", questions=("seconde",)))
    assert [a.questions for a in read_actions(path)] == [("première",), ("seconde",)]


def test_a_short_write_is_completed_or_rolled_back_and_the_route_says_so(learning, monkeypatch):
    app, client, tmp = learning
    _search(client, "xylophone quantique")
    _flush(app)
    queue = _queue(client)
    body = {"action": "dismiss", "query_keys": queue["groups"][0]["query_keys"], "index_id": queue["index_id"]}
    path = reviewed_path(tmp / "faq.jsonl")
    path.write_bytes(b"")
    real = os.pwrite
    calls = []

    def short_then_full(fd, data, offset):  # a short write, then the disk is full
        calls.append(len(data))
        if len(calls) == 1:
            return real(fd, data[:10], offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("service.reviewed_file.os.pwrite", short_then_full)
    assert_error(_decide(client, body), 500, "reviewed_file_unwritable")
    assert path.read_bytes() == b"" and len(calls) == 2, "the 10 bytes written were rolled back"
    calls.clear()

    def short_twice(fd, data, offset):  # two short writes: completed
        calls.append(len(data))
        return real(fd, data[: max(1, len(data) // 2)], offset)

    monkeypatch.setattr("service.reviewed_file.os.pwrite", short_twice)
    assert _decide(client, body).status_code == 201 and len(calls) > 2
    assert [a.action for a in read_actions(path)] == ["dismiss"]


# ---- 3. builds read a consistent corpus ----


def test_a_corpus_rewritten_while_it_is_read_is_read_again(tmp_path, fake_embedder, monkeypatch):
    corpus = tmp_path / "faq.jsonl"
    full = MINI_CORPUS.read_bytes()
    corpus.write_bytes(full)
    real = Path.read_bytes
    reads = []

    def editor_at_work(self):
        if self == corpus and not reads:  # the first read meets an editor half-way: truncated, then written again
            reads.append("half")
            corpus.write_bytes(full[: len(full) // 3])
            half = real(self)
            time.sleep(0.01)
            corpus.write_bytes(full)
            return half
        reads.append("whole")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", editor_at_work)
    manifest = build_index(corpus, tmp_path / "index", fake_embedder, show_progress=False)
    assert reads[:2] == ["half", "whole"] and manifest.counts.entries == 4


def test_a_review_build_refuses_a_corpus_that_lost_entries(tmp_path, fake_embedder):
    from service.learning.rebuild_child import run_build

    corpus = tmp_path / "faq.jsonl"
    corpus.write_bytes(MINI_CORPUS.read_bytes())
    index = tmp_path / "index"
    served = build_index(corpus, index, fake_embedder, show_progress=False).index_id
    lines = MINI_CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)
    corpus.write_text(lines[0], encoding="utf-8")  # an editor's first write of four entries: one
    connect(tmp_path / "log.db", create=True).close()
    state = run_build(str(corpus), str(index), str(tmp_path / "log.db"), "r-1", model=fake_embedder)
    assert state["state"] == "failed" and "3 entries of the served index are not in the corpus" in state["error"]
    assert read_manifest(index).index_id == served, "nothing published"
    with pytest.raises(CorpusError, match="may not remove entries"):
        build_index(corpus, index, fake_embedder, show_progress=False, may_remove=())
    # An operator's build of the corpus as it is removes them: that is a deletion someone asked for.
    assert build_index(corpus, index, fake_embedder, show_progress=False).counts.entries == 1


# ---- 4 and 5. review builds reconciled and retried ----

#: A stand-in for the review build's child that builds for real with the fake embedder, or fails on the attempts
#: listed in FAQ_TEST_FAIL_ON.
CHILD = """
import argparse, os, sys
from conftest import HashingEmbedder  # PYTHONPATH names tests/
from service.learning.rebuild import failure_state, write_state
from service.learning.rebuild_child import run_build
parser = argparse.ArgumentParser()
for option in ("--corpus", "--index", "--log", "--action", "--attempt", "--model", "--master"):
    parser.add_argument(option)
a = parser.parse_args()
if a.attempt in os.environ.get("FAQ_TEST_FAIL_ON", "").split(","):
    write_state(a.log, failure_state(a.action, int(a.attempt), "corpus error: half a file", pid=os.getpid()), own=True)
    sys.exit(1)
state = run_build(a.corpus, a.index, a.log, a.action, int(a.attempt), HashingEmbedder())
sys.exit(0 if state["state"] == "done" else 1)
"""


@pytest.fixture
def decided(tmp_path, fake_embedder, monkeypatch):
    """An index, its query log, and a decision appended to the reviewed file that no build has applied yet."""
    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # the stand-in child imports the fake embedder from conftest
    corpus = tmp_path / "faq.jsonl"
    corpus.write_bytes(MINI_CORPUS.read_bytes())
    build_index(corpus, tmp_path / "index", fake_embedder, show_progress=False)
    connect(tmp_path / "log.db", create=True).close()
    os.utime(corpus, (time.time() - 5, time.time() - 5))  # left alone for a while: no settling wait
    action = new_action("attach", "marie", faq_id="compte", questions=("ouvrir un espace",))
    append_action(reviewed_path(corpus), action)
    return tmp_path, action


def _rebuilder(tmp, backoff=(0.3, 0.3, 0.3), reloads=None):
    return Rebuilder(
        str(tmp / "faq.jsonl"), str(tmp / "index"), str(tmp / "log.db"),
        on_done=lambda: (reloads.append(1) if reloads is not None else None) or {"ok": True},
        command=[sys.executable, "-c", CHILD], backoff=backoff,
    )  # fmt: skip


def test_a_decision_whose_build_never_started_is_built_by_any_worker(decided):
    tmp, action = decided
    reloads = []
    rebuilder = _rebuilder(tmp, reloads=reloads)
    assert rebuilder.status() is None and rebuilder._pending()
    assert rebuilder.reconcile() == "started"
    state = _settled(rebuilder)
    assert state["state"] == "done" and state["pending"] is False and reloads == [1]
    assert read_manifest(tmp / "index").origin == "review"
    assert "ouvrir un espace" in load_index(tmp / "index").entries["compte"].alt_questions
    assert rebuilder.reconcile() is None, "nothing left to build"
    assert rebuilder.retry() is None, "the owner's retry builds nothing either"


def test_a_failed_build_is_retried_after_its_backoff(decided, monkeypatch):
    tmp, action = decided
    monkeypatch.setenv("FAQ_TEST_FAIL_ON", "1")
    rebuilder = _rebuilder(tmp, backoff=(2.0, 2.0, 2.0))  # the state's times are to the second
    rebuilder.request(action.id)  # the decision's own build (what the route asks for)
    state = _settled(rebuilder)
    assert (state["state"], state["attempt"], state["pending"], state["attempts_left"]) == ("failed", 1, True, 3)
    assert rebuilder.reconcile() is None, "not before its back-off"
    time.sleep(2.2)
    assert rebuilder.reconcile() == "started"
    state = _settled(rebuilder)
    assert (state["state"], state["attempt"], state["pending"]) == ("done", 2, False)


def test_retries_stop_after_the_last_attempt_and_the_owner_can_retry(decided, monkeypatch):
    tmp, _ = decided
    monkeypatch.setenv("FAQ_TEST_FAIL_ON", ",".join(str(n) for n in range(1, MAX_ATTEMPTS + 1)))
    rebuilder = _rebuilder(tmp, backoff=(0.0, 0.0, 0.0))
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert rebuilder.reconcile() == "started"
        assert _settled(rebuilder)["attempt"] == attempt
    assert rebuilder.reconcile() is None and rebuilder.status()["attempts_left"] == 0
    monkeypatch.setenv("FAQ_TEST_FAIL_ON", "")
    assert rebuilder.retry()["attempt"] == 1
    assert _settled(rebuilder)["state"] == "done"


def test_a_newer_decision_is_built_even_when_the_last_one_used_every_attempt(decided, monkeypatch):
    tmp, action = decided
    rebuilder = _rebuilder(tmp)
    rebuilder._save({"state": "failed", "action": "r-older", "attempt": MAX_ATTEMPTS, "next_retry_at": None})
    assert rebuilder.reconcile() == "started"
    assert _settled(rebuilder)["state"] == "done"


def test_two_workers_reconciling_at_once_start_one_build(decided):
    tmp, _ = decided
    first, second = _rebuilder(tmp), _rebuilder(tmp)
    started = [first.reconcile(), second.reconcile()]
    assert started.count("started") == 1
    _settled(first), _settled(second)


def test_the_retry_route_builds_again(learning):
    app, client, tmp = learning
    rebuilder = app.extensions["faqs"].default.rebuilder
    r = client.post("/admin/review/rebuild", headers=ADMIN)
    assert r.status_code == 202 and r.get_json()["rebuild"]["action"] == "retry" and rebuilder.requests == ["retry"]
    assert_error(client.post("/admin/review/rebuild"), 401, "unauthorized")


# ---- 6. redaction off the event loop ----


def test_queries_are_redacted_where_the_database_is_written_not_on_the_event_loop(learning, monkeypatch):
    """Under gevent ``_blocking`` hands work to a native thread: redaction must be inside that work."""
    app, client, tmp = learning
    handed = []
    real = querylog_module._blocking
    monkeypatch.setattr(querylog_module, "_blocking", lambda fn, *a: handed.append(fn.__name__) or real(fn, *a))
    monkeypatch.setattr(querylog_module, "redact", lambda text: handed.append("redact") or text)
    _search(client, "mon mail jean@example.fr")
    _flush(app)
    assert "_redact_and_commit" in handed and handed.index("redact") > handed.index("_redact_and_commit")


# ---- 10. the log bounded; one client counts once ----


def test_the_log_keeps_under_its_size_bound_deleting_the_oldest_first(tmp_path, monkeypatch):
    monkeypatch.setattr(querylog_module, "SIZE_CHECK_SECONDS", 0.0)
    log = QueryLog(tmp_path / "log.db", max_mb=1)
    log.start()
    outcome = {"results": [], "answered": False, "reason": {"code": "no_close_entry"}, "index": {"id": "i"}}
    for n in range(6000):  # about 3 MB of queries
        log.record(f"r{n}", f"question numéro {n:05d} " + "x" * 400, outcome, client=f"ip:{n}")
        if n % 500 == 499:
            assert log.flush(30)
    assert log.flush(30)
    log.close()
    conn = sqlite3.connect(tmp_path / "log.db")
    page, pages, free = (
        conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count", "freelist_count")
    )
    kept = [q for (q,) in conn.execute("SELECT query FROM searches ORDER BY ts")]
    conn.close()
    assert (pages - free) * page <= 1.1 * 2**20 and os.path.getsize(tmp_path / "log.db") <= 1.5 * 2**20
    assert log.size_deleted > 0 and kept[-1].startswith("question numéro 05999")
    assert not kept[0].startswith("question numéro 00000"), "the oldest went first"


def test_one_client_repeating_a_query_or_its_feedback_counts_once(learning):
    app, client, tmp = learning
    for _ in range(30):
        _search(client, "xylophone quantique", client_ip="10.9.9.9")
    _search(client, "xylophone quantique", client_ip="10.9.9.8")
    body = _search(client, "mot de passe oublié", client_ip="10.9.9.9", min_score=0.0)
    _flush(app)
    for _ in range(40):
        r = client.post("/feedback", json={"request_id": body["request_id"], "faq_id": body["results"][0]["faq_id"],
                                           "helpful": False}, environ_base={"REMOTE_ADDR": "10.9.9.9"})  # fmt: skip
        assert r.status_code == 201
    _flush(app)
    stats, _ = query_stats(tmp / "log.db", 0)
    by_text = {s.text: s for s in stats}
    assert (by_text["xylophone quantique"].asked, by_text["xylophone quantique"].unanswered) == (2, 2)
    assert by_text["mot de passe oublié"].not_helpful == 1


def test_one_client_rewording_a_query_counts_once_in_its_group(learning, monkeypatch):
    """Twenty wordings from one client (the fake embedder ignores the numbers: one meaning) and one from another."""
    app, client, tmp = learning
    monkeypatch.setattr(review_queue, "MAX_ENCODED_PER_LISTING", 100)
    for n in range(1, 21):
        _search(client, f"xylophone quantique interstellaire {n}", client_ip="10.9.9.9")
    _search(client, "xylophone quantique interstellaire", client_ip="10.9.9.8")
    _flush(app)
    [group] = _queue(client)["groups"]
    assert (group["queries"], group["asked"], group["unanswered"]) == (21, 2, 2)
    assert sum(group["reasons"].values()) == 2


def test_a_query_of_punctuation_alone_is_never_listed(learning):
    app, client, tmp = learning
    for query in ("?", "\u200b", "!!", "xylophone quantique"):
        _search(client, query)
    _flush(app)
    texts = [e["text"] for g in _queue(client)["groups"] for e in g["examples"]]
    assert texts == ["xylophone quantique"]


def test_the_queue_pages_past_its_listing_size_and_new_queries_are_not_dropped(learning, monkeypatch):
    app, client, tmp = learning
    monkeypatch.setattr(review_queue, "MAX_QUERIES", 5)
    words = ["xylophone", "hippopotame", "quasar", "zeppelin", "yak", "wombat", "narval", "kiwi", "gnou", "lama",
             "okapi", "ibis"]  # fmt: skip
    for word in words:
        _search(client, f"{word} {word} interstellaire")
        time.sleep(0.002)
    _flush(app)
    pages = [_queue(client, page=n) for n in (1, 2, 3)]
    assert [(p["page"], p["pages"], p["queries"]) for p in pages] == [(1, 3, 12), (2, 3, 12), (3, 3, 12)]
    seen = [e["text"] for p in pages for g in p["groups"] for e in g["examples"]]
    assert sorted(seen) == sorted(f"{w} {w} interstellaire" for w in words)
    first_page = [e["text"] for g in pages[0]["groups"] for e in g["examples"]]
    assert "ibis ibis interstellaire" in first_page, "among equals, the newest first"
    assert_error(client.get("/admin/review?page=0", headers=ADMIN), 400, "out_of_range")


# ---- 11. the smaller ones ----


def test_a_listing_encodes_only_its_share_and_the_rest_in_the_background(learning, monkeypatch):
    app, client, tmp = learning
    monkeypatch.setattr(review_queue, "MAX_ENCODED_PER_LISTING", 3)
    for n, word in enumerate(["xylophone", "hippopotame", "quasar", "zeppelin", "yak", "wombat", "narval", "kiwi"]):
        _search(client, f"{word} interstellaire {n}")
    _flush(app)
    embedder = app.extensions["faqs"].default.current_engine.embedder
    embedder.calls.clear()
    queue = _queue(client)
    assert queue["preparing"] == 5 and sum(len(g["query_keys"]) for g in queue["groups"]) == 3
    assert sum(n for n, kind in embedder.calls if kind == "query" and n > 1) <= 3
    source = review_queue.Source(
        str(tmp / "log.db"), str(tmp / "faq.jsonl"), app.extensions["faqs"].default.current_engine, str(tmp / "index")
    )
    assert review_queue.precompute_vectors(source, 30) == 5
    assert _queue(client)["preparing"] == 0


KILLED_AT_THE_SWITCH = """
import os, sys
from conftest import HashingEmbedder  # PYTHONPATH names tests/
from service.indexing import store
from service.indexing.build import build_index
store._point_current = lambda *a, **k: os.kill(os.getpid(), 9)  # killed between the rename and the switch
build_index(sys.argv[1], sys.argv[2], HashingEmbedder(), show_progress=False)
"""


def test_a_build_killed_before_its_switch_is_never_served_as_a_fallback(tmp_path, fake_embedder):
    from service.errors import IndexUnavailable
    from service.indexing.store import load_latest_sound

    index = tmp_path / "index"
    good = build_index(MINI_CORPUS, index, fake_embedder, show_progress=False).index_id
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_THE_SWITCH, str(MINI_CORPUS), str(index)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(TESTS)}, capture_output=True, timeout=120)  # fmt: skip
    assert killed.returncode == -9
    orphans = [p.name for p in (index / BUILDS).iterdir() if not p.name.startswith(".") and p.name != good]
    assert len(orphans) == 1, "the killed build finished its directory"
    # It counts for no origin's earlier builds: two more builds keep the two published before them.
    later = [build_index(MINI_CORPUS, index, fake_embedder, show_progress=False).index_id for _ in range(2)]
    on_disk = {p.name for p in (index / BUILDS).iterdir() if not p.name.startswith(".")}
    assert {good, *later} <= on_disk and orphans[0] in on_disk, "young: it may be a build about to switch"
    for build in (later[-1], later[0]):
        shutil.rmtree(index / BUILDS / build)
    (index / BUILDS / good / "vectors.faiss").write_bytes(b"damaged")
    with pytest.raises(IndexUnavailable):
        load_latest_sound(index)  # before: the never-published build was served


def test_the_temporary_folders_of_dead_builds_go_with_the_next_build(tmp_path, fake_embedder):
    index = tmp_path / "index"
    build_index(MINI_CORPUS, index, fake_embedder, show_progress=False)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = index / BUILDS / f".tmp-{dead.stdout.strip()}-build-x-abc"
    mine = index / BUILDS / f".tmp-{os.getpid()}-build-y-abc"
    stale.mkdir()
    mine.mkdir()
    build_index(MINI_CORPUS, index, fake_embedder, show_progress=False)
    assert not stale.exists() and mine.exists(), "a live build's folder stays"


def test_review_builds_never_push_out_the_operators_last_builds(tmp_path, fake_embedder):
    index = tmp_path / "index"
    operator = [build_index(MINI_CORPUS, index, fake_embedder, show_progress=False).index_id for _ in range(2)]
    review_builds = [
        build_index(MINI_CORPUS, index, fake_embedder, show_progress=False, origin="review").index_id for _ in range(4)
    ]
    on_disk = {p.name for p in (index / BUILDS).iterdir() if not p.name.startswith(".")}
    assert set(operator) <= on_disk, "the operator's builds stay to roll back to"
    assert on_disk == {*operator, *review_builds[-3:]}


def test_a_question_cut_to_the_limit_stays_a_valid_question():
    from service.learning.redaction import redact

    text = redact(("un mot " * 400) + "0612345678")
    assert len(text) <= MAX_QUESTION_CHARS and text.split(" ")[-1] in ("un", "mot"), "cut between two words"
    text_field(text, "questions[0]", "log", 1)

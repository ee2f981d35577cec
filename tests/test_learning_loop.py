"""The whole learning loop on the production server (gunicorn, two workers, the real model): users search and say
an answer did not help, the FAQ owner reviews the group and decides, the index is rebuilt in a child process and
every worker switches to it, and the same questions now get the decision (docs/learning.md)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
import urllib.error
import urllib.request

import pytest
from conftest import CHORUS_CORPUS
from test_production_server import _start, _stop

from service.indexing.build import build_index
from service.reviewed_file import read_actions

pytestmark = pytest.mark.slow

TOKEN = "loop-admin"
ADMIN_LEFT = "notre admin est parti sans passer la main"
PRICE = ["combien coute chorus pro", "chorus pro est il payant", "quel est le tarif de chorus pro"]


def _call(port, method, path, body=None, token=None, user=None):
    """A request; ``user``: the address a proxy in front says it comes from (the servers trust one hop), so that
    several users can be told apart on loopback."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if user:
        headers["X-Forwarded-For"] = user
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _wait_rebuild(port, index_id, seconds=120):
    """Until every worker answers with a build other than ``index_id`` (bounded), and the rebuild's state."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _, queue = _call(port, "GET", "/admin/review", token=TOKEN)
        state = queue["rebuild"] or {}
        assert state.get("state") != "failed", state
        ids = {_call(port, "GET", "/ready")[1]["index_id"] for _ in range(6)}
        # "reload": the worker that ran the build records its reload last, after every worker may have switched.
        if state.get("state") == "done" and ids == {state["index_id"]} and index_id not in ids and "reload" in state:
            return state
        time.sleep(0.5)
    raise AssertionError(f"the rebuild did not reach every worker in {seconds} s: {state}, {ids}")


def _attach_unanswered(port: int, question: str, faq_id: str) -> dict:
    """Ask ``question`` (refused), then attach its group of the review queue to ``faq_id``; the listing used."""
    _, body = _call(port, "POST", "/search", {"query": question})
    assert body["answered"] is False
    time.sleep(1)
    _, queue = _call(port, "GET", "/admin/review", token=TOKEN)
    group = next(g for g in queue["groups"] if any(e["text"] == question for e in g["examples"]))
    status, attached = _call(
        port, "POST", "/admin/review/actions",
        {"action": "attach", "faq_id": faq_id, "query_keys": group["query_keys"], "index_id": queue["index_id"],
         "by": "marie"},
        token=TOKEN,
    )  # fmt: skip
    assert status == 201, attached
    return queue


def test_feedback_review_rebuild_and_the_decision_applies_everywhere(tmp_path, real_embedder):
    corpus = tmp_path / "faq.jsonl"
    shutil.copy(CHORUS_CORPUS, corpus)
    index = tmp_path / "index"
    build_index(corpus, index, real_embedder, show_progress=False)
    log = tmp_path / "queries.db"
    proc, port = _start(
        index, workers=2, FAQ_QUERY_LOG=str(log), FAQ_ADMIN_TOKEN=TOKEN, FAQ_CORPUS=str(corpus), FAQ_CACHE_SIZE="0",
        FAQ_PROXY_HOPS="1",
    )  # fmt: skip
    try:
        # Three users ask about the price, get an entry with confidence, and say it did not help (the feedback may
        # land on the other worker than the search: it waits for the search's row).
        for n, question in enumerate(PRICE):
            user = f"10.0.0.{n + 1}"
            status, body = _call(port, "POST", "/search", {"query": question}, user=user)
            assert status == 200 and body["request_id"]
            first = body["results"][0]["faq_id"]
            status, ack = _call(
                port, "POST", "/feedback", {"request_id": body["request_id"], "faq_id": first, "helpful": False},
                user=user,
            )  # fmt: skip
            assert status == 201, ack
        # An e-mail address typed into a search never reaches the disk.
        _call(port, "POST", "/search", {"query": "mon adresse jean.dupont@example.fr ne recoit rien"})
        time.sleep(1)
        status, queue = _call(port, "GET", "/admin/review", token=TOKEN)
        assert status == 200, queue
        price = next(g for g in queue["groups"] if any(e["text"] in PRICE for e in g["examples"]))
        assert price["not_helpful"] == 3 and price["queries"] == 3, "three wordings of one need: one group"
        wrong = next(iter(price["not_helpful_entries"]))
        # The owner: these are not answered by that entry.
        status, done = _call(
            port, "POST", "/admin/review/actions",
            {"action": "not_answered", "faq_id": wrong, "query_keys": price["query_keys"],
             "index_id": queue["index_id"], "by": "marie"},
            token=TOKEN,
        )  # fmt: skip
        assert status == 201, done
        state = _wait_rebuild(port, queue["index_id"])
        assert state["reload"]["ok"] and state["reload"]["signalled_workers"] == 1
        for question in [*PRICE, "c'est payant chorus pro ?"]:  # the last one: a wording nobody marked
            _, body = _call(port, "POST", "/search", {"query": question})
            assert body["answered"] is False and body["reason"]["code"] == "known_non_answer", (
                question,
                body["reason"],
            )
        # A stale listing is refused; the decision is reverted, the index rebuilt, and the entry answers again.
        _, stale = _call(
            port, "POST", "/admin/review/actions",
            {"action": "dismiss", "query_keys": price["query_keys"][:1], "index_id": queue["index_id"]}, token=TOKEN,
        )  # fmt: skip
        assert stale["error"]["code"] == "stale_review"
        status, undo = _call(
            port, "POST", f"/admin/review/actions/{done['action']['id']}/revert", {"by": "marie"}, token=TOKEN
        )
        assert status == 201, undo
        _wait_rebuild(port, state["index_id"])
        _, body = _call(port, "POST", "/search", {"query": PRICE[0]})
        assert body["answered"] is True
        # A user's wording the FAQ misses (refused: no feedback needed to queue it), attached to its entry.
        queue = _attach_unanswered(port, ADMIN_LEFT, "chorus-pro-4")
        _wait_rebuild(port, queue["index_id"])
        _, body = _call(port, "POST", "/search", {"query": ADMIN_LEFT})
        assert body["answered"] is True and body["results"][0]["faq_id"] == "chorus-pro-4"
        assert body["results"][0]["match"]["matched_question"] == ADMIN_LEFT
        actions = [a.action for a in read_actions(tmp_path / "faq.reviewed.jsonl")]
        assert actions == ["not_answered", "revert", "attach"]
        assert corpus.read_bytes() == CHORUS_CORPUS.read_bytes()
        _, health = _call(port, "GET", "/health")
        assert health["query_log"]["state"] == "ok" and health["query_log"]["failed"] == 0
    finally:
        _stop(proc)
    conn = sqlite3.connect(log)
    stored = " ".join(q for (q,) in conn.execute("SELECT query FROM searches"))
    conn.close()
    assert "jean.dupont@example.fr" not in stored and "<email>" in stored


def test_a_review_build_whose_worker_is_killed_is_still_served_by_every_worker(tmp_path, real_embedder):
    """Issue 25: SIGKILL the worker whose child runs the review build: the build records that it succeeded, and
    both workers (the survivor, and the replacement that was loading meanwhile) switch to it without a reload."""
    import os
    import signal

    import psutil
    from test_production_server import _served_builds

    corpus = tmp_path / "faq.jsonl"
    shutil.copy(CHORUS_CORPUS, corpus)
    index = tmp_path / "index"
    build_index(corpus, index, real_embedder, show_progress=False)
    proc, port = _start(
        index, workers=2, FAQ_QUERY_LOG=str(tmp_path / "queries.db"), FAQ_ADMIN_TOKEN=TOKEN, FAQ_CORPUS=str(corpus)
    )
    try:
        queue = _attach_unanswered(port, ADMIN_LEFT, "chorus-pro-4")
        deadline = time.monotonic() + 30
        child = None
        while child is None and time.monotonic() < deadline:  # this server's build only, never another one's
            child = _build_child(proc.pid)
        assert child is not None, "the review build did not start"
        worker = child.ppid()
        assert worker in {w.pid for w in psutil.Process(proc.pid).children()}
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 120
        served = {}
        while time.monotonic() < deadline:
            served = _served_builds(port)
            if len(served) == 1 and queue["index_id"] not in served and next(iter(served.values())) == 2.0:
                break
            time.sleep(0.5)
        [(new, count)] = served.items()
        assert new != queue["index_id"] and count == 2.0, served
        _, state = _call(port, "GET", "/admin/review", token=TOKEN)
        assert state["rebuild"]["state"] == "done" and state["rebuild"]["index_id"] == new, state["rebuild"]
        assert state["rebuild"]["pending"] is False
        _, body = _call(port, "POST", "/search", {"query": ADMIN_LEFT})
        assert body["answered"] is True and body["results"][0]["faq_id"] == "chorus-pro-4"
    finally:
        _stop(proc)


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

"""The entries API on the production server (gunicorn, two workers, the real model): an entry put, synonyms set, an
import and a deletion are each rebuilt in a child, served by every worker, and the answer says when."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request

import pytest
from conftest import CHORUS_CORPUS
from test_production_server import _start, _stop

from service.corpus import read_corpus
from service.indexing.build import build_index

pytestmark = pytest.mark.slow

TOKEN = "entries-admin"
SUPPORT = {
    "question": "Comment joindre une personne du support de Chorus Pro par téléphone ?",
    "answer": "Le support de Chorus Pro ne répond pas au téléphone : écrivez-lui depuis votre compte, espace "
    "« Sollicitations émises ».",
    "tags": ["support"],
}


def _call(port, method, path, body=None, content_type="application/json", headers=None):
    if body is None:
        data = None
    elif isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode()
    sent = {"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}", **(headers or {})}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, sent, method=method)
    try:
        with urllib.request.urlopen(request, timeout=150) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def _every_worker(port, check, seconds=60):
    """``check(port)`` true on several requests in a row (both workers answer some of them), within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(check(port) for _ in range(6)):
            return
        time.sleep(0.5)
    raise AssertionError("not every worker serves the change")


def test_entries_and_synonyms_changed_over_http_are_served_by_every_worker(tmp_path, real_embedder):
    corpus = tmp_path / "faq.jsonl"
    shutil.copy(CHORUS_CORPUS, corpus)
    index = tmp_path / "index"
    build_index(corpus, index, real_embedder, show_progress=False)
    proc, port = _start(
        index, workers=2, FAQ_QUERY_LOG=str(tmp_path / "queries.db"), FAQ_ADMIN_TOKEN=TOKEN, FAQ_CORPUS=str(corpus),
        FAQ_CACHE_SIZE="0",
    )  # fmt: skip
    try:
        status, listing, headers = _call(port, "GET", "/admin/entries")
        assert status == 200 and listing["total"] == 5 and listing["served"] is True
        assert headers["ETag"] == f'"{listing["checksum"]}"'

        # One entry put, waiting until it is served: the answer says so, and every worker finds it.
        status, put, _ = _call(port, "PUT", "/admin/entries/chorus-pro-6?wait=120", SUPPORT,
                               headers={"If-Match": headers["ETag"]})  # fmt: skip
        assert status == 200 and put["served"] is True and put["created"] == ["chorus-pro-6"], put
        assert put["rebuild"]["state"] == "done" and put["rebuild"]["action"] == f"entries-{put['checksum'][:12]}"

        def finds_support(p):
            _, body, _ = _call(p, "POST", "/search", {"query": "numéro de téléphone du support chorus pro"})
            return body["results"][0]["faq_id"] == "chorus-pro-6"

        _every_worker(port, finds_support)
        # A stale If-Match is refused and changes nothing.
        before = corpus.read_bytes()
        status, err, _ = _call(port, "DELETE", "/admin/entries/chorus-pro-6", headers={"If-Match": headers["ETag"]})
        assert status == 412 and err["error"]["code"] == "precondition_failed"
        assert corpus.read_bytes() == before

        # Synonyms: a word no entry uses now finds the entry that says the phrase it stands for.
        status, current, _ = _call(port, "GET", "/admin/synonyms")
        synonyms = current["synonyms"]
        synonyms["oneway"]["sesame"] = ["mot de passe"]
        status, put, _ = _call(port, "PUT", "/admin/synonyms?wait=120", synonyms)
        assert status == 200 and put["served"] is True, put

        def sesame_matches(p):
            _, body, _ = _call(p, "POST", "/search", {"query": "sesame chorus pro", "top_k": 5})
            first = next(r for r in body["results"] if r["faq_id"] == "chorus-pro-1")
            return "sesame" in first["match"]["terms"]

        _every_worker(port, sesame_matches)
        assert read_corpus(corpus)[0].synonyms.to_dict()["oneway"]["sesame"] == ["mot de passe"]

        # An import of two entries (JSON Lines), then a deletion, each served.
        lines = [
            {"id": "imp-1", "question": "Chorus Pro est-il payant ?", "answer": "Non, Chorus Pro est gratuit."},
            {"id": "imp-2", "question": "Chorus Pro fonctionne-t-il le dimanche ?", "answer": "Oui, tous les jours."},
        ]
        body = "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines).encode()
        status, imported, _ = _call(port, "POST", "/admin/entries?wait=120", body, "application/x-ndjson")
        assert status == 200 and imported["created"] == ["imp-1", "imp-2"] and imported["served"], imported
        status, deleted, _ = _call(port, "DELETE", "/admin/entries/chorus-pro-6?wait=120")
        assert status == 200 and deleted["removed"] == ["chorus-pro-6"] and deleted["served"], deleted

        def gone(p):
            request = urllib.request.Request(f"http://127.0.0.1:{p}/faq/chorus-pro-6")
            try:
                urllib.request.urlopen(request, timeout=30)
            except urllib.error.HTTPError as exc:
                return exc.code == 404
            return False

        _every_worker(port, gone)
        ids = [e.id for e in read_corpus(corpus)[1]]
        assert ids == ["chorus-pro-1", "chorus-pro-2", "chorus-pro-3", "chorus-pro-4", "chorus-pro-5", "imp-1", "imp-2"]
        # The official entries' lines are the original bytes.
        original = CHORUS_CORPUS.read_text(encoding="utf-8").splitlines()[1:]
        assert corpus.read_text(encoding="utf-8").splitlines()[1:6] == original
    finally:
        _stop(proc)

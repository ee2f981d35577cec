"""The entries API (``/admin/entries``, ``/admin/synonyms``): validated as the build validates, written whole or not at
all, rebuilt and served; every refusal a clear code with the corpus and the served index unchanged."""

from __future__ import annotations

import json
import os
import threading

import pytest
from conftest import LEARNING_TOKEN, assert_error

from service.corpus import read_corpus
from service.corpus_writer import CorpusFile, EditError
from service.learning.rebuild_child import run_build

AUTH = {"Authorization": f"Bearer {LEARNING_TOKEN}"}
NDJSON = {**AUTH, "Content-Type": "application/x-ndjson"}
NEW = {
    "question": "Comment joindre le support ?",
    "answer": "Écrivez au support depuis votre compte.",
    "tags": ["aide"],
}


def snapshot(tmp_path):
    """The corpus's bytes and the served index's id: what a refusal must leave as they were."""
    return (tmp_path / "faq.jsonl").read_bytes(), os.readlink(tmp_path / "index" / "current")


def served(app, fake_embedder, tmp_path):
    """Run the build the change asked for (in-process, as the child would) and reload: the change is served."""
    corpus, index = tmp_path / "faq.jsonl", tmp_path / "index"
    state = run_build(str(corpus), str(index), str(tmp_path / "log.db"), "entries", model=fake_embedder)
    assert state["state"] == "done", state
    assert app.extensions["faqs"].default.reload("test", siblings=False)["ok"]


def test_list_and_get_entries_as_written_with_the_checksum(learning):
    app, client, tmp_path = learning
    r = client.get("/admin/entries?limit=2", headers=AUTH)
    assert r.status_code == 200
    body = r.get_json()
    assert [e["id"] for e in body["entries"]] == ["compte", "activation"]
    assert body["total"] == 4 and body["next_offset"] == 2
    assert body["served"] is True and body["checksum"] == body["served_checksum"]
    assert r.headers["ETag"] == f'"{body["checksum"]}"'
    assert client.get("/admin/entries?offset=2", headers=AUTH).get_json()["next_offset"] is None
    entry = client.get("/admin/entries/factures", headers=AUTH).get_json()["entry"]
    assert entry["theme"] == "factures" and entry["alt_questions"] == ["facture sous-traitant"]  # every field
    assert_error(client.get("/admin/entries/nope", headers=AUTH), 404, "unknown_entry")
    assert_error(client.get("/admin/entries"), 401, "unauthorized")


def test_put_creates_then_replaces_in_place_and_the_change_is_served(learning, fake_embedder):
    app, client, tmp_path = learning
    corpus = tmp_path / "faq.jsonl"
    before = corpus.read_text(encoding="utf-8").split("\n")
    r = client.put("/admin/entries/support", json=NEW, headers=AUTH)
    assert r.status_code == 202, r.get_json()
    body = r.get_json()
    assert body["created"] == ["support"] and body["served"] is False
    assert body["rebuild"]["state"] == "running"
    assert app.extensions["faqs"].default.rebuilder.requests == [f"entries-{body['checksum'][:12]}"]
    after = corpus.read_text(encoding="utf-8").split("\n")
    assert after[: len(before) - 1] == before[:-1]  # every other line byte for byte, the new one last
    assert json.loads(after[-2]) == {"id": "support", **NEW}

    served(app, fake_embedder, tmp_path)
    assert client.get("/admin/entries", headers=AUTH).get_json()["served"] is True
    hits = client.post("/search", json={"query": "Comment joindre le support ?"}).get_json()["results"]
    assert hits[0]["faq_id"] == "support"

    changed = {**NEW, "answer": "Appelez le 01 02 03 04 05."}
    r = client.put("/admin/entries/activation", json=changed, headers=AUTH)
    assert r.get_json()["replaced"] == ["activation"]
    lines = corpus.read_text(encoding="utf-8").split("\n")
    assert json.loads(lines[1])["answer"] == "Appelez le 01 02 03 04 05."  # kept in its place
    assert len(lines) == len(after)


def test_an_unchanged_put_writes_nothing_and_builds_nothing(learning):
    app, client, tmp_path = learning
    entry = client.get("/admin/entries/compte", headers=AUTH).get_json()["entry"]
    before = snapshot(tmp_path)
    r = client.put("/admin/entries/compte", json=entry, headers=AUTH)
    assert r.status_code == 200 and r.get_json()["unchanged"] == ["compte"] and r.get_json()["rebuild"] is None
    assert snapshot(tmp_path) == before
    assert app.extensions["faqs"].default.rebuilder.requests == []


def test_delete_then_the_build_may_remove_that_entry_only(learning, fake_embedder):
    app, client, tmp_path = learning
    r = client.delete("/admin/entries/factures", headers=AUTH)
    assert r.status_code == 202 and r.get_json()["removed"] == ["factures"]
    assert "factures" not in {e.id for e in read_corpus(tmp_path / "faq.jsonl")[1]}
    served(app, fake_embedder, tmp_path)
    assert_error(client.get("/faq/factures"), 404, "faq_not_found")
    # A corpus that loses another entry by hand is still refused by the review build (a file caught half-written).
    corpus = tmp_path / "faq.jsonl"
    corpus.write_text("".join(line for line in corpus.read_text(encoding="utf-8").splitlines(keepends=True)
                              if '"compte"' not in line), encoding="utf-8")  # fmt: skip
    state = run_build(str(corpus), str(tmp_path / "index"), str(tmp_path / "log.db"), "x", model=fake_embedder)
    assert state["state"] == "failed" and "compte" in state["error"]


def test_import_json_lines_all_or_nothing(learning):
    app, client, tmp_path = learning
    lines = [{"id": f"imp-{i}", "question": f"Question {i} ?", "answer": f"Réponse {i}."} for i in range(3)]
    body = "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n"
    r = client.post("/admin/entries", data=body.encode(), headers=NDJSON)
    assert r.status_code == 202 and r.get_json()["created"] == ["imp-0", "imp-1", "imp-2"]
    assert len(read_corpus(tmp_path / "faq.jsonl")[1]) == 7
    before = snapshot(tmp_path)
    bad = body + json.dumps({"id": "imp-9", "question": "", "answer": "x"}) + "\n"
    err = assert_error(client.post("/admin/entries", data=bad.encode(), headers=NDJSON), 400, "invalid_entry")
    assert "line 4" in err["message"] and "question" in err["message"]
    # A whole corpus file, header included: the header is named, nothing is written.
    whole = (tmp_path / "faq.jsonl").read_text(encoding="utf-8")
    header = json.dumps({"faq": {"name": "Mini"}}) + "\n"
    err = assert_error(client.post("/admin/entries", data=(header + whole).encode(), headers=NDJSON), 400,
                       "invalid_entry")  # fmt: skip
    assert "line 1 is a corpus header" in err["message"]
    assert snapshot(tmp_path) == before


BAD_CHANGES = [
    ("put", "/admin/entries/a", {"id": "b", **NEW}, 400, "id_mismatch"),
    ("put", "/admin/entries/a", {"question": "Q ?"}, 400, "invalid_entry"),
    ("put", "/admin/entries/a", {"question": "Q ?", "answer": 3}, 400, "invalid_entry"),
    ("put", "/admin/entries/a", {**NEW, "links": [{"label": "x", "url": "javascript:alert(1)"}]}, 400, "invalid_entry"),
    ("put", "/admin/entries/a", ["not", "an", "object"], 400, "invalid_body"),
    ("put", "/admin/entries/bad id", NEW, 400, "invalid_entry"),
    ("put", "/admin/entries/a?wait=-1", NEW, 400, "out_of_range"),
    ("put", "/admin/entries/a?wait=x", NEW, 400, "invalid_type"),
    ("put", "/admin/entries/a?sure=1", NEW, 400, "unknown_field"),
    ("delete", "/admin/entries/nope", None, 404, "unknown_entry"),
    ("put", "/admin/synonyms", {"equivalent": [["médiathèque"]]}, 400, "invalid_synonyms"),
    ("put", "/admin/synonyms", {"equivalent": [["livre", "Livres"]]}, 400, "invalid_synonyms"),
    ("put", "/admin/synonyms", {"oneway": {"a1": ["b1"], "b1": ["a1"]}}, 400, "invalid_synonyms"),
    ("put", "/admin/synonyms", {"equivalent": [["x" * 101, "y"]]}, 400, "invalid_synonyms"),
    ("put", "/admin/synonyms", {"equivalent": [["de la", "chat"]]}, 400, "invalid_synonyms"),
    ("put", "/admin/synonyms", {"synonymes": {}}, 400, "invalid_synonyms"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), BAD_CHANGES)
def test_bad_changes_are_refused_with_a_code_and_change_nothing(learning, method, path, body, status, code):
    app, client, tmp_path = learning
    before = snapshot(tmp_path)
    kwargs = {"json": body} if body is not None else {}
    assert_error(getattr(client, method)(path, headers=AUTH, **kwargs), status, code)
    assert snapshot(tmp_path) == before
    assert app.extensions["faqs"].default.rebuilder.requests == []


def test_the_last_entry_cannot_be_deleted(learning):
    app, client, tmp_path = learning
    for faq_id in ("compte", "activation", "gestionnaire"):
        assert client.delete(f"/admin/entries/{faq_id}", headers=AUTH).status_code == 202
    before = snapshot(tmp_path)
    assert_error(client.delete("/admin/entries/factures", headers=AUTH), 409, "last_entry")
    assert snapshot(tmp_path) == before


def test_a_body_over_the_limit_is_refused(learning):
    app, client, tmp_path = learning
    before = snapshot(tmp_path)
    huge = {**NEW, "answer": "x" * (300 * 1024)}
    assert_error(client.put("/admin/entries/a", json=huge, headers=AUTH), 413, "payload_too_large")
    assert snapshot(tmp_path) == before


def test_if_match_and_a_hand_edit_meanwhile_are_conflicts(learning):
    app, client, tmp_path = learning
    etag = client.get("/admin/entries", headers=AUTH).headers["ETag"]
    assert client.put("/admin/entries/a", json=NEW, headers={**AUTH, "If-Match": etag}).status_code == 202
    before = snapshot(tmp_path)
    stale = {**AUTH, "If-Match": etag}  # the corpus changed since that read
    assert_error(client.put("/admin/entries/b", json=NEW, headers=stale), 412, "precondition_failed")
    assert_error(client.delete("/admin/entries/a", headers=stale), 412, "precondition_failed")
    assert_error(client.delete("/admin/entries/a", headers={**AUTH, "If-Match": "abc"}), 400, "invalid_if_match")
    assert snapshot(tmp_path) == before
    bare = client.get("/admin/entries", headers=AUTH).get_json()["checksum"]  # the body's form works as well
    assert client.delete("/admin/entries/compte", headers={**AUTH, "If-Match": bare}).status_code == 202

    corpus = CorpusFile(tmp_path / "faq.jsonl")
    original = corpus._replace

    def hand_edit_meanwhile(new, checksum, ready):  # an editor saves the file between the read and the rename
        with open(corpus.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"id": "by-hand", "question": "Q ?", "answer": "R."}) + "\n")
        return original(new, checksum, ready)

    corpus._replace = hand_edit_meanwhile
    with pytest.raises(EditError) as refused:
        corpus.put([{"id": "c", **NEW}])
    assert refused.value.kind == "corpus_changed"
    ids = [e.id for e in read_corpus(corpus.path)[1]]
    assert "by-hand" in ids and "c" not in ids  # the hand edit kept, not overwritten


def test_a_broken_corpus_is_not_changed_further(learning):
    app, client, tmp_path = learning
    corpus = tmp_path / "faq.jsonl"
    corpus.write_text(corpus.read_text(encoding="utf-8") + "{not json\n", encoding="utf-8")
    before = snapshot(tmp_path)
    assert_error(client.put("/admin/entries/a", json=NEW, headers=AUTH), 409, "corpus_invalid")
    assert_error(client.get("/admin/entries", headers=AUTH), 409, "corpus_invalid")
    assert snapshot(tmp_path) == before


def test_an_unwritable_corpus_directory_is_a_clear_error(learning, monkeypatch):
    app, client, tmp_path = learning
    before = snapshot(tmp_path)

    def read_only(*args, **kwargs):  # what a read-only directory answers (root would write into one anyway)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("service.corpus_writer.tempfile.mkstemp", read_only)
    err = assert_error(client.put("/admin/entries/a", json=NEW, headers=AUTH), 500, "corpus_unwritable")
    assert "Permission denied" in err["message"] and str(tmp_path) not in err["message"]
    assert snapshot(tmp_path) == before


def test_a_failed_write_leaves_the_old_file(learning, monkeypatch):
    app, client, tmp_path = learning
    before = snapshot(tmp_path)

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("service.corpus_writer.os.replace", no_space)
    assert_error(client.put("/admin/entries/a", json=NEW, headers=AUTH), 500, "corpus_unwritable")
    assert snapshot(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary file left


def test_concurrent_writers_are_serialised_and_none_is_lost(learning):
    app, client, tmp_path = learning
    corpus = CorpusFile(tmp_path / "faq.jsonl")
    errors = []

    def writer(n):
        try:
            for i in range(5):
                corpus.put([{"id": f"w{n}-{i}", "question": f"Question {n} {i} ?", "answer": "R."}])
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    ids = {e.id for e in read_corpus(corpus.path)[1]}
    assert {f"w{n}-{i}" for n in range(4) for i in range(5)} <= ids


def test_synonyms_get_put_and_clear(learning, fake_embedder):
    app, client, tmp_path = learning
    assert client.get("/admin/synonyms", headers=AUTH).get_json()["synonyms"] == {"equivalent": [], "oneway": {}}
    value = {"equivalent": [["courriel", "mail"]], "oneway": {"mdp": ["mot de passe"]}}
    r = client.put("/admin/synonyms", json=value, headers=AUTH)
    assert r.status_code == 202 and r.get_json()["synonyms"] == value
    # What GET answers can be sent back as it is (its read-only fields ignored): nothing to change.
    read = client.get("/admin/synonyms", headers=AUTH).get_json()
    again = client.put("/admin/synonyms", json=read, headers=AUTH)
    assert again.status_code == 200 and again.get_json()["rebuild"] is None
    identity, entries = read_corpus(tmp_path / "faq.jsonl")
    assert identity.synonyms.to_dict() == value and len(entries) == 4
    served(app, fake_embedder, tmp_path)
    results = client.post("/search", json={"query": "mdp", "top_k": 4}).get_json()["results"]
    lexical = {r["faq_id"]: (r["match"]["lexical_score"], r["match"]["terms"]) for r in results}
    assert lexical["compte"][0] > 0 and lexical["compte"][1] == ["mdp"]  # "mot de passe" matched through "mdp"
    assert all(score == 0 for faq_id, (score, _) in lexical.items() if faq_id != "compte")
    assert client.put("/admin/synonyms", json={}, headers=AUTH).status_code == 202
    assert not read_corpus(tmp_path / "faq.jsonl")[0].synonyms


def test_entries_api_needs_the_query_log(tmp_path, fake_embedder):
    from conftest import MINI_CORPUS

    from service.http.app import create_app
    from service.indexing.build import build_index
    from service.indexing.store import load_index
    from service.search.engine import SearchEngine

    corpus = tmp_path / "faq.jsonl"
    corpus.write_bytes(MINI_CORPUS.read_bytes())
    build_index(corpus, tmp_path / "index", fake_embedder, show_progress=False)
    app = create_app({"TESTING": True, "FAQ_ADMIN_TOKEN": LEARNING_TOKEN, "FAQ_CORPUS": str(corpus),
                      "FAQ_INDEX": str(tmp_path / "index")},
                     engine=SearchEngine(fake_embedder, load_index(tmp_path / "index")))  # fmt: skip
    client = app.test_client()
    assert client.get("/admin/entries", headers=AUTH).status_code == 200  # reading needs no log
    before = corpus.read_bytes()
    assert_error(client.put("/admin/entries/a", json=NEW, headers=AUTH), 403, "query_log_disabled")
    assert corpus.read_bytes() == before


MORE_BAD = [
    ("/admin/entries/x%0A", NEW, 400, "invalid_entry"),  # an id ending with a line break
    ("/admin/entries/a", {**NEW, "note": "ab\ud800"}, 400, "invalid_entry"),  # a lone surrogate
    ("/admin/synonyms", {"oneway": {"ab\ud800": ["x"]}}, 400, "invalid_synonyms"),
    ("/admin/synonyms", {"oneway": {f"src{i}": [f"src{i + 1}"] for i in range(1000)}}, 400, "invalid_synonyms"),
]


@pytest.mark.parametrize(("path", "body", "status", "code"), MORE_BAD)
def test_what_the_probes_found_is_refused_and_changes_nothing(learning, path, body, status, code):
    app, client, tmp_path = learning
    before = snapshot(tmp_path)
    data = json.dumps(body, ensure_ascii=True).encode()  # the lone surrogate as a JSON escape, as a client sends it
    r = client.put(path, data=data, headers={**AUTH, "Content-Type": "application/json"})
    assert_error(r, status, code)
    assert snapshot(tmp_path) == before


def test_an_empty_if_match_is_refused_not_taken_as_no_condition(learning):
    app, client, tmp_path = learning
    for value in ("", "W/", '""'):
        assert_error(client.put("/admin/entries/a", json=NEW, headers={**AUTH, "If-Match": value}), 400,
                     "invalid_if_match")  # fmt: skip


def test_a_deeply_nested_field_is_refused(learning):
    app, client, tmp_path = learning
    before = snapshot(tmp_path)
    deep = "[" * 950 + "]" * 950
    body = json.dumps(NEW)[:-1] + ', "deep": ' + deep + "}"
    r = client.put("/admin/entries/a", data=body, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.get_json()["error"]["code"] in ("invalid_entry", "invalid_json")
    assert snapshot(tmp_path) == before


def test_integer_ids_are_managed_as_their_text(learning):
    app, client, tmp_path = learning
    line = json.dumps({"id": 7, "question": "Question sept ?", "answer": "Réponse."}) + "\n"
    assert client.post("/admin/entries", data=line.encode(), headers=NDJSON).status_code == 202
    assert client.get("/admin/entries/7", headers=AUTH).get_json()["entry"]["id"] == 7
    r = client.put("/admin/entries/7", json={"question": "Question sept ?", "answer": "Autre."}, headers=AUTH)
    assert r.status_code == 202 and r.get_json()["replaced"] == ["7"]
    assert client.delete("/admin/entries/7", headers=AUTH).get_json()["removed"] == ["7"]


def test_a_change_of_json_type_only_is_a_change(learning):
    app, client, tmp_path = learning
    assert client.put("/admin/entries/a", json={**NEW, "flag": 1}, headers=AUTH).status_code == 202
    r = client.put("/admin/entries/a", json={**NEW, "flag": True}, headers=AUTH)
    assert r.get_json()["replaced"] == ["a"]
    assert json.loads((tmp_path / "faq.jsonl").read_text(encoding="utf-8").splitlines()[-1])["flag"] is True


def test_an_entry_with_line_separators_is_built_served_and_read_back(learning, fake_embedder):
    app, client, tmp_path = learning
    odd = {"question": "ligne\u2028séparée\u2029et\x85suite ?", "answer": "Réponse\u2028sur deux lignes."}
    assert client.put("/admin/entries/odd", json=odd, headers=AUTH).status_code == 202
    served(app, fake_embedder, tmp_path)
    assert client.get("/faq/odd").get_json()["question"] == odd["question"]


def test_a_hand_edit_that_is_not_utf8_is_corpus_invalid(learning):
    app, client, tmp_path = learning
    corpus = tmp_path / "faq.jsonl"
    corpus.write_bytes(corpus.read_bytes() + b'{"id": "x", "question": "\xff", "answer": "a"}\n')
    before = snapshot(tmp_path)
    assert_error(client.get("/admin/entries", headers=AUTH), 409, "corpus_invalid")
    assert_error(client.put("/admin/entries/a", json=NEW, headers=AUTH), 409, "corpus_invalid")
    assert snapshot(tmp_path) == before


def test_a_linked_corpus_keeps_its_link_and_crlf_files_keep_their_line_ends(tmp_path):
    real = tmp_path / "real.jsonl"
    rows = [{"id": "a", "question": "Q ?", "answer": "R."}, {"id": "b", "question": "Q2 ?", "answer": "R2."}]
    real.write_bytes("".join(json.dumps(r) + "\r\n" for r in rows).encode())
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    CorpusFile(link).put([{"id": "c", "question": "Q3 ?", "answer": "R3."}])
    assert link.is_symlink() and [e.id for e in read_corpus(link)[1]] == ["a", "b", "c"]
    assert real.read_bytes().count(b"\r\n") == 3 and b"\n" not in real.read_bytes().replace(b"\r\n", b"")


def test_a_build_of_a_later_change_serves_the_earlier_one(tmp_path):
    from service.learning.rebuild import record_entries_change, served_since

    log = str(tmp_path / "log.db")
    record_entries_change(log, "a" * 64, (), None)
    record_entries_change(log, "b" * 64, (), None)
    assert served_since(log, "a" * 64, "b" * 64) and not served_since(log, "b" * 64, "a" * 64)
    assert not served_since(log, "a" * 64, "c" * 64)  # a hand edit's build: not known to hold it

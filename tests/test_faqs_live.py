"""Several FAQs in one production server (gunicorn, real model): the search across them, and each FAQ living its
own life: one FAQ rebuilt twice and then given a damaged build while searches go to both, with no failed request."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
from conftest import CHORUS_CORPUS, DATA
from test_production_server import _start, _stop

from service.indexing.build import build_index
from service.indexing.store import VECTORS, resolve

pytestmark = pytest.mark.slow

TOKEN = "faqs-admin-token"


def _call(url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def two_faqs(tmp_path, real_embedder):
    mairie = tmp_path / "mairie.jsonl"
    mairie.write_bytes((DATA / "mairie_faq.jsonl").read_bytes())
    for name, corpus in (("chorus", CHORUS_CORPUS), ("mairie", mairie)):
        build_index(corpus, tmp_path / name, real_embedder, show_progress=False)
    proc, port = _start(
        tmp_path / "chorus",
        FAQ_FAQS=f"chorus-pro={tmp_path / 'chorus'},mairie={tmp_path / 'mairie'}",
        FAQ_ADMIN_TOKEN=TOKEN,
    )
    yield f"http://127.0.0.1:{port}", tmp_path, mairie
    _stop(proc)


def test_two_faqs_one_server_and_a_search_across_them(two_faqs):
    url, _, _ = two_faqs
    listed = _call(f"{url}/faqs")[1]
    assert [f["name"] for f in listed["faqs"]] == ["chorus-pro", "mairie"] and listed["default"] == "chorus-pro"
    assert listed["faqs"][1]["faq"]["name"] == "Mairie de Saint-Exemple" and listed["faqs"][0]["entries"] == 5
    status, chorus = _call(f"{url}/search", {"query": "je n'ai pas reçu le mail d'activation", "faqs": ["*"]})
    assert status == 200 and chorus["faq"] == "chorus-pro" and chorus["results"][0]["faq_id"] == "chorus-pro-2"
    assert chorus["answered"] is True
    status, town = _call(f"{url}/search", {"query": "il me faut un extrait d'acte de naissance", "faqs": ["*"]})
    assert status == 200 and town["faq"] == "mairie" and town["results"][0]["faq_id"] == "mairie-1"
    alone = _call(f"{url}/faqs/mairie/search", {"query": "il me faut un extrait d'acte de naissance"})[1]
    assert alone["results"][0]["score"] == town["results"][0]["score"]  # merged on the same calibrated score
    assert _call(f"{url}/search?q=cantine&faqs=nope")[0] == 404


def test_one_faq_rebuilt_and_damaged_while_both_are_searched_fails_no_request(two_faqs, real_embedder):
    url, tmp_path, mairie = two_faqs
    failures, done, stop = [], [0], threading.Event()

    def load() -> None:
        questions = [("chorus-pro", "comment créer mon compte"), ("mairie", "inscription cantine")]
        while not stop.is_set() and done[0] < 2000:
            for name, question in questions:
                status, body = _call(f"{url}/faqs/{name}/search", {"query": question})
                if status != 200 or not body["results"]:
                    failures.append((name, status, body))
                done[0] += 1

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for n, question in enumerate(("Où se trouve la mairie ?", "Quand ouvre la piscine ?"), start=4):
            with mairie.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"id": f"mairie-{n}", "question": question, "answer": "Voir le site."}) + "\n")
            build_index(mairie, tmp_path / "mairie", real_embedder, show_progress=False)
            status, outcome = _call(f"{url}/faqs/mairie/admin/reload", {}, token=TOKEN)
            assert status == 200 and outcome["changed"] is True, outcome
        # A damaged build of one FAQ: refused, that FAQ keeps its last good build, the other is untouched.
        with mairie.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"id": "mairie-6", "question": "Un dernier ?", "answer": "Oui."}) + "\n")
        build_index(mairie, tmp_path / "mairie", real_embedder, show_progress=False)
        vectors = resolve(tmp_path / "mairie") / VECTORS
        vectors.write_bytes(vectors.read_bytes()[:100])
        status, outcome = _call(f"{url}/faqs/mairie/admin/reload", {}, token=TOKEN)
        assert status == 409 and outcome["error"]["code"] == "index_unavailable", outcome
        health = _call(f"{url}/health")[1]
        assert health["faqs"]["chorus-pro"]["ready"] and health["faqs"]["mairie"]["ready"]
        listed = {f["name"]: f for f in _call(f"{url}/faqs")[1]["faqs"]}
        assert listed["mairie"]["ready"] is True and listed["chorus-pro"]["entries"] == 5
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    print(f"\n{done[0]} searches of two FAQs while one was rebuilt twice and damaged once: {len(failures)} failed")
    assert done[0] > 20 and failures == [], (done[0], failures[:3])


def test_a_faq_added_to_the_configuration_is_served_by_every_worker_without_a_restart(tmp_path, real_embedder):
    import time

    for name, corpus in (("chorus", CHORUS_CORPUS), ("mairie", DATA / "mairie_faq.jsonl")):
        build_index(corpus, tmp_path / name, real_embedder, show_progress=False)
    config = tmp_path / "faqs.toml"
    config.write_text('[[faq]]\nname = "chorus-pro"\nindex = "chorus"\n', encoding="utf-8")
    proc, port = _start(tmp_path / "chorus", FAQ_CONFIG=str(config), FAQ_ADMIN_TOKEN=TOKEN)
    url = f"http://127.0.0.1:{port}"
    try:
        config.write_text(config.read_text() + '[[faq]]\nname = "mairie"\nindex = "mairie"\n', encoding="utf-8")
        status, outcome = _call(f"{url}/admin/faqs/reload", {}, token=TOKEN)
        assert status == 200 and outcome["added"] == ["mairie"] and outcome["signalled_workers"] == 1, outcome
        deadline, seen, answers = time.time() + 30, 0, []
        while seen < 10 and time.time() < deadline:  # ten answers in a row with both FAQs: both workers have it
            answers.append([f["name"] for f in _call(f"{url}/faqs")[1]["faqs"]])
            seen = seen + 1 if answers[-1] == ["chorus-pro", "mairie"] else 0
            time.sleep(0.05)
        assert seen == 10, answers[-5:]
        status, body = _call(f"{url}/faqs/mairie/search", {"query": "inscrire mon fils à la cantine"})
        assert status == 200 and body["results"][0]["faq_id"] == "mairie-2"
    finally:
        log = _stop(proc)
    assert "Traceback" not in log, log[-3000:]


def test_a_broken_configuration_on_disk_does_not_stop_the_server_when_its_workers_restart(tmp_path, real_embedder):
    """A reload refused (a FAQ whose index is damaged; then a file that is not TOML) leaves the bad configuration on
    disk: a worker killed, then every worker restarted by the master's SIGHUP, serve what the server served."""
    import os
    import signal
    import time

    import psutil

    build_index(CHORUS_CORPUS, tmp_path / "chorus", real_embedder, show_progress=False)
    build_index(DATA / "mairie_faq.jsonl", tmp_path / "broken", real_embedder, show_progress=False)
    vectors = resolve(tmp_path / "broken") / VECTORS
    vectors.write_bytes(vectors.read_bytes()[:100])
    config = tmp_path / "faqs.toml"
    config.write_text('[[faq]]\nname = "chorus-pro"\nindex = "chorus"\n', encoding="utf-8")
    proc, port = _start(tmp_path / "chorus", FAQ_CONFIG=str(config), FAQ_ADMIN_TOKEN=TOKEN)
    url = f"http://127.0.0.1:{port}"

    def serving_chorus_only() -> bool:
        try:
            return all([f["name"] for f in _call(f"{url}/faqs")[1]["faqs"]] == ["chorus-pro"] for _ in range(6))
        except OSError:
            return False

    def wait(check, seconds=60) -> bool:
        deadline = time.time() + seconds
        while time.time() < deadline:
            if check():
                return True
            time.sleep(0.5)
        return False

    try:
        config.write_text(config.read_text() + '[[faq]]\nname = "broken"\nindex = "broken"\n', encoding="utf-8")
        status, outcome = _call(f"{url}/admin/faqs/reload", {}, token=TOKEN)
        assert status == 409 and outcome["ok"] is False, outcome
        first = psutil.Process(proc.pid).children()
        os.kill(first[0].pid, signal.SIGKILL)
        assert wait(lambda: len(psutil.Process(proc.pid).children()) == 2 and serving_chorus_only())
        assert proc.poll() is None
        config.write_text("not toml [", encoding="utf-8")
        os.kill(proc.pid, signal.SIGHUP)  # the master restarts every worker, which read the file again
        assert wait(lambda: not set(first) & set(psutil.Process(proc.pid).children()) and serving_chorus_only())
        assert proc.poll() is None
    finally:
        log = _stop(proc)
    assert "serving the FAQs this server served" in log, log[-3000:]

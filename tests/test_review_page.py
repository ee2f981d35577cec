"""The learning loop's pages in a real headless browser (Debian's chromium, Playwright): "Utile ? oui / non" on
the search page, and the FAQ owner's review page at /review (token, groups, decisions, revert), nothing external."""

from __future__ import annotations

import json
import urllib.request

import pytest
from conftest import MINI_CORPUS, RecordingRebuilder, serving
from playwright.sync_api import expect
from test_learning import UNANSWERABLE
from test_page import OUTPUT, browser  # noqa: F401 - the module's browser fixture

from service.http.app import create_app
from service.indexing.build import build_index
from service.indexing.store import load_index
from service.search.engine import SearchEngine

TOKEN = "page-admin"


@pytest.fixture
def site(tmp_path, fake_embedder):
    corpus = tmp_path / "faq.jsonl"
    corpus.write_bytes(MINI_CORPUS.read_bytes())
    build_index(corpus, tmp_path / "index", fake_embedder, show_progress=False)
    app = create_app(
        {"TESTING": False, "FAQ_QUERY_LOG": str(tmp_path / "log.db"), "FAQ_ADMIN_TOKEN": TOKEN,
         "FAQ_CORPUS": str(corpus), "FAQ_INDEX": str(tmp_path / "index")},
        engine=SearchEngine(fake_embedder, load_index(tmp_path / "index")),
    )  # fmt: skip
    app.extensions["faqs"].default.rebuilder = RecordingRebuilder()
    with serving(app) as url:
        yield app, url
    app.extensions["faqs"].default.query_log.close()


def _post(url, body):
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)


@pytest.fixture
def open_page(browser, site):  # noqa: F811
    app, url = site
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page, app, url
    assert all(u.startswith(url) for u in requests), f"external requests: {requests}"
    assert not errors, errors
    context.close()


def test_the_search_page_asks_whether_an_entry_helped(open_page):
    page, app, url = open_page
    page.goto(url + "/")
    page.get_by_label("Votre question").fill("mot de passe oublié")
    page.get_by_role("button", name="Rechercher").click()
    first = page.locator("#liste > li").first
    expect(first.get_by_role("group")).to_contain_text("Utile ?")
    first.get_by_role("button", name="non").click()
    expect(first.locator(".avis")).to_have_text("Merci, votre avis est enregistré.")
    assert app.extensions["faqs"].default.query_log.flush(5)
    import sqlite3

    conn = sqlite3.connect(app.extensions["faqs"].default.settings.query_log)
    rows = conn.execute("SELECT faq_id, helpful FROM feedback").fetchall()
    conn.close()
    assert rows == [(first.get_attribute("data-faq-id"), 0)]


def test_the_review_page_lists_groups_and_applies_and_reverts_decisions(open_page):
    page, app, url = open_page
    for question in (UNANSWERABLE, "interstellaire quantique xylophone", "hippopotame gastronomique"):
        _post(url + "/search", {"query": question})
    assert app.extensions["faqs"].default.query_log.flush(5)
    page.goto(url + "/review")
    expect(page).to_have_title("Revue des questions des usagers")
    assert page.locator("html").get_attribute("lang") == "fr"
    page.get_by_label("Jeton d'administration").fill("wrong")
    page.get_by_role("button", name="Afficher").click()
    expect(page.get_by_role("status")).to_contain_text("unauthorized")
    page.get_by_label("Jeton d'administration").fill(TOKEN)
    page.get_by_label("Votre nom").fill("Marie")
    page.get_by_role("button", name="Afficher").click()
    expect(page.get_by_role("status")).to_have_text("2 groupes de questions à revoir.")
    groups = page.locator("#liste-groupes > li")
    expect(groups.first).to_contain_text("et 1 autre formulation")
    expect(page.locator("#liste-manques > tr")).to_have_count(2)
    # Nothing is chosen in advance: attaching asks for the entry first, and nothing is sent.
    expect(groups.first.get_by_label("Entrée concernée")).to_have_value("")
    groups.first.get_by_role("button", name="Rattacher à cette entrée").click()
    expect(page.get_by_role("status")).to_have_text("Choisissez d'abord l'entrée concernée.")
    assert app.extensions["faqs"].default.rebuilder.requests == []
    # Attach the first group to the entry chosen in its list; the rebuild is asked for.
    groups.first.get_by_label("Entrée concernée").select_option("compte")
    groups.first.get_by_role("button", name="Rattacher à cette entrée").click()
    expect(page.get_by_role("status")).to_contain_text("Décision enregistrée")
    expect(groups).to_have_count(1)
    assert len(app.extensions["faqs"].default.rebuilder.requests) == 1
    decisions = page.locator("#liste-decisions > li")
    expect(decisions.first).to_contain_text("Marie · 2 questions rattachées à compte")
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "review-page.png"), full_page=True)
    decisions.first.get_by_role("button", name="Annuler").click()
    expect(page.get_by_role("status")).to_have_text("Décision annulée.")
    expect(groups).to_have_count(2)
    expect(decisions.nth(1)).to_contain_text("(annulée)")
    # A decision the service refuses is said on the page, not lost.
    groups.first.get_by_role("button", name="Écarter").click()
    expect(page.get_by_role("status")).to_have_text("Groupe écarté.")
    expect(groups).to_have_count(1)


def test_a_failed_rebuild_is_said_with_a_retry_button(open_page):
    page, app, url = open_page
    rebuilder = app.extensions["faqs"].default.rebuilder
    rebuilder.state = {"state": "failed", "action": "r-1", "attempt": 4, "attempts_left": 0, "pending": True,
                       "error": "corpus error: faq.jsonl:3: invalid JSON", "next_retry_at": None}  # fmt: skip
    page.goto(url + "/review")
    page.get_by_label("Jeton d'administration").fill(TOKEN)
    page.get_by_role("button", name="Afficher").click()
    expect(page.locator("#reconstruction")).to_contain_text("a échoué (corpus error: faq.jsonl:3")
    expect(page.locator("#reconstruction")).to_contain_text("relancez-la")
    page.get_by_role("button", name="Relancer la reconstruction").click()
    expect(page.get_by_role("status")).to_have_text("Reconstruction relancée.")
    assert rebuilder.requests == ["retry"]
    expect(page.locator("#reconstruction")).to_have_text("Reconstruction de l'index en cours…")

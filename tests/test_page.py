"""The search page at GET /, end to end in a real headless browser (Debian's chromium, driven by Playwright):
labels, keyboard use, results with scores and why they matched, the full entry on demand, nothing external."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

OUTPUT = Path(__file__).resolve().parent / "output"
CHROMIUM = os.environ.get("FAQ_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no chromium at {CHROMIUM}: `make test` installs Debian's chromium (or set FAQ_CHROMIUM)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_url):
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    missing = []  # what the page itself loads (not its API calls, some of which are errors on purpose)
    page.on("response", lambda r: missing.append(r.url) if r.status >= 400 and r.request.resource_type not in
            ("fetch", "xhr") else None)  # fmt: skip
    page.goto(live_url + "/")
    yield page
    assert all(url.startswith(live_url) for url in requests), f"external requests: {requests}"
    assert not errors, errors
    assert not missing, f"the page's own files answered errors: {missing}"
    context.close()


def test_search_with_the_keyboard_and_open_an_entry(page):
    expect(page).to_have_title("Recherche dans la FAQ")
    assert page.locator("html").get_attribute("lang") == "fr"
    question = page.get_by_label("Votre question")  # the label is tied to the field
    question.focus()
    page.keyboard.type("le gestionnaire a quitté la structure")
    page.keyboard.press("Enter")
    items = page.locator("#liste > li")
    expect(items.first).to_be_visible()
    assert items.first.get_attribute("data-faq-id") == "gestionnaire"
    status = page.get_by_role("status")
    expect(status).to_contain_text("résultat")
    first = items.first
    expect(first.locator(".meta")).to_contain_text("Score")
    expect(first.locator(".meta")).to_contain_text("trouvé par")
    assert first.locator(".badge").inner_text() in ("Réponse", "Suggestion")
    # Keyboard only: Tab from the field reaches the controls, then the first result; Enter opens it.
    opener = first.get_by_role("button", name="Comment transférer le rôle de gestionnaire principal ?")
    for _ in range(6):
        if opener.evaluate("el => el === document.activeElement"):
            break
        page.keyboard.press("Tab")
    assert opener.evaluate("el => el === document.activeElement"), "the result is reachable with Tab"
    page.keyboard.press("Enter")
    expect(opener).to_have_attribute("aria-expanded", "true")
    expect(first.locator(".complete")).to_contain_text("Il transfère lui-même son rôle")
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "search-page.png"), full_page=True)
    assert (OUTPUT / "search-page.png").stat().st_size > 10_000


#: What the page says for each ``reason.code`` of the API (in French).
REASONS_FR = {
    "no_close_entry": "aucune entrée n'est assez proche de la question",
    "ambiguous": "deux entrées sont trop proches pour choisir",
    "not_covered": "l'entrée la plus proche ne parle pas de : ",
    "known_non_answer": "une question semblable est signalée comme sans réponse",
    "too_vague": "la question ne contient aucun mot qui distingue les entrées",
}


def test_an_unanswered_query_shows_suggestions_and_an_error_is_readable(page, live_url):
    import urllib.request

    body = json.dumps({"query": "recette de la tarte aux pommes"}).encode()
    request = urllib.request.Request(live_url + "/search", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as r:
        code = json.load(r)["reason"]["code"]
    page.get_by_label("Votre question").fill("recette de la tarte aux pommes")
    page.get_by_role("button", name="Rechercher").click()
    expect(page.get_by_role("status")).to_contain_text("aucune réponse sûre")
    expect(page.get_by_role("status")).to_contain_text(REASONS_FR[code])
    assert page.locator("#liste .badge.reponse").count() == 0
    page.get_by_label("Votre question").fill("   ")
    page.get_by_role("button", name="Rechercher").click()
    expect(page.get_by_role("status")).to_contain_text("empty_query")
    expect(page.locator("#resultats")).to_be_hidden()


def test_the_page_asks_for_nothing_outside_the_service(live_url):
    import urllib.request

    with urllib.request.urlopen(live_url + "/") as r:
        html = r.read().decode()
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert "http://" not in html and "https://" not in html
    # Its icon, named by the page and where browsers look by habit: no 404 in the console.
    assert '<link rel="icon" href="/static/favicon.svg"' in html
    for path in ("/static/favicon.svg", "/favicon.ico"):
        with urllib.request.urlopen(live_url + path) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("image/svg+xml"), path
            assert r.read().startswith(b"<svg"), path


@pytest.mark.slow
def test_the_page_says_in_french_which_words_the_faq_does_not_cover(browser, real_engine):
    """The real model on the Chorus Pro FAQ: a question about logging in names what no entry covers."""
    from conftest import serving

    from service.http.app import create_app

    with serving(create_app({"TESTING": False}, engine=real_engine)) as url:
        context = browser.new_context(locale="fr-FR")
        page = context.new_page()
        page.goto(url + "/")
        # The FAQ's name and first example question come from its corpus's "faq" header, through /health.
        expect(page).to_have_title("Recherche dans la FAQ Chorus Pro")
        expect(page.get_by_role("heading", level=1)).to_have_text("Recherche dans la FAQ Chorus Pro")
        expect(page.get_by_label("Votre question")).to_have_attribute(
            "placeholder", "ex. : pas reçu le mail d'activation"
        )
        page.get_by_label("Votre question").fill("je narrive plus a me connecter a chorus")
        page.get_by_role("button", name="Rechercher").click()
        status = page.get_by_role("status")
        why = "aucune réponse sûre (l'entrée la plus proche ne parle pas de : narrive, connecter)"
        expect(status).to_contain_text(why)
        expect(status).to_contain_text("Pour obtenir une réponse : le support Chorus Pro, depuis votre compte")
        assert page.locator("#liste .badge.reponse").count() == 0
        assert page.locator("#liste > li").count() > 0, "the nearest entries are still shown as suggestions"
        context.close()


def test_links_of_an_entry_are_links_and_only_http_ones(browser, tmp_path, fake_embedder):
    """An entry's ``links`` and its answer's markdown links are shown as links; a ``javascript:`` one never is."""
    entry = {
        "id": "horaires", "question": "Quels sont les horaires de la médiathèque ?",
        "answer": "Du mardi au samedi. Voir [le calendrier](https://example.org/calendrier) ou "
                  "[ceci](javascript:alert(1)).",
        "links": [{"label": "Le site de la médiathèque", "url": "https://example.org/"}],
    }  # fmt: skip
    with _page_of(browser, tmp_path, fake_embedder, [entry]) as page:
        page.get_by_label("Votre question").fill("horaires médiathèque")
        page.keyboard.press("Enter")
        first = page.locator("#liste > li").first
        expect(first.get_by_role("link", name="Le site de la médiathèque")).to_have_attribute(
            "href", "https://example.org/"
        )
        expect(first.locator(".passage").get_by_role("link", name="le calendrier")).to_have_attribute(
            "href", "https://example.org/calendrier"
        )
        hrefs = first.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
        assert all(h.startswith("https://") for h in hrefs), hrefs
        expect(first.locator(".passage")).to_contain_text("[ceci](javascript:alert(1))")  # shown as text


def test_a_faq_with_tags_offers_them_to_limit_the_search(browser, tmp_path, fake_embedder):
    """The page's "Thème" chooser lists the FAQ's tags (from /health) and sends the chosen one as the filter."""
    entries = [
        {"id": "carte", "question": "Comment obtenir ma carte ?", "answer": "Au guichet.", "tags": ["inscription"]},
        {"id": "pret", "question": "Combien de livres emprunter ?", "answer": "Dix livres.", "tags": ["emprunt"]},
        {"id": "retard", "question": "Un livre rendu en retard ?", "answer": "Une relance.", "tags": ["emprunt"]},
    ]
    with _page_of(browser, tmp_path, fake_embedder, entries) as page:
        chooser = page.get_by_label("Thème")
        expect(chooser).to_be_visible()
        chooser.select_option("emprunt")
        page.get_by_label("Votre question").fill("carte de lecteur")
        page.keyboard.press("Enter")
        items = page.locator("#liste > li")
        expect(items).to_have_count(2)
        assert {items.nth(i).get_attribute("data-faq-id") for i in range(2)} == {"pret", "retard"}


@contextlib.contextmanager
def _page_of(browser, tmp_path, embedder, entries: list[dict]):
    """The search page of a FAQ of these entries (fake embedder), served on 127.0.0.1, in a fresh browser page."""
    from conftest import serving

    from service.http.app import create_app
    from service.indexing.build import build_index
    from service.indexing.store import load_index
    from service.search.engine import SearchEngine

    corpus = tmp_path / "faq.jsonl"
    corpus.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries), encoding="utf-8")
    build_index(corpus, tmp_path / "index", embedder, show_progress=False)
    app = create_app({"TESTING": True}, engine=SearchEngine(embedder, load_index(tmp_path / "index")))
    with serving(app) as url:
        context = browser.new_context(locale="fr-FR")
        page = context.new_page()
        page.goto(url + "/")
        try:
            yield page
        finally:
            context.close()


def test_the_sentence_that_answers_and_the_query_words_are_highlighted(browser, tmp_path, fake_embedder):
    answer = "La carte est gratuite. Vous pouvez emprunter dix livres pour trois semaines. Merci."
    entry = {"id": "pret", "question": "Combien de livres puis-je emprunter ?", "answer": answer}
    with _page_of(browser, tmp_path, fake_embedder, [entry]) as page:
        page.get_by_label("Votre question").fill("emprunter des livres")
        page.keyboard.press("Enter")
        first = page.locator("#liste > li").first
        expect(first.locator(".passage strong.phrase")).to_have_text(
            "Vous pouvez emprunter dix livres pour trois semaines."
        )
        expect(first.locator(".passage mark")).to_have_text(["emprunter", "livres"])

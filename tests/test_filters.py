"""Filters of a search (``search/filters.py``): by tags (any of, all of) and by any scalar field the entries
declare; applied before ranking, the decision made among the entries kept; bad filters refused with their codes."""

from __future__ import annotations

import json

import pytest
from conftest import assert_error

from service.core.catalog import FaqCatalog
from service.core.faq_config import FaqSpec
from service.http.app import create_app
from service.indexing.build import build_index
from service.indexing.store import load_index
from service.search.engine import SearchEngine
from service.settings import Settings

ENTRIES = [
    {"id": "carte", "question": "Comment obtenir ma carte de lecteur ?", "answer": "Au guichet, avec un justificatif.",
     "tags": ["inscription"], "audience": "adulte"},
    {"id": "enfant", "question": "Comment inscrire mon enfant ?", "answer": "Avec le livret de famille.",
     "tags": ["inscription", "jeunesse"], "audience": "parent"},
    {"id": "pret", "question": "Combien de livres puis-je emprunter ?", "answer": "Dix livres pour trois semaines.",
     "tags": ["emprunt"], "audience": "adulte"},
    {"id": "retard", "question": "Que se passe-t-il si je rends un livre en retard ?", "answer": "Une relance.",
     "tags": ["emprunt"], "audience": "adulte", "niveau": 2},
]  # fmt: skip


@pytest.fixture
def library(tmp_path, fake_embedder):
    corpus = tmp_path / "biblio.jsonl"
    corpus.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in ENTRIES), encoding="utf-8")
    build_index(corpus, tmp_path / "index", fake_embedder, show_progress=False)
    return SearchEngine(fake_embedder, load_index(tmp_path / "index"))


@pytest.fixture
def client(library):
    return create_app({"TESTING": True}, engine=library).test_client()


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [r["faq_id"] for r in response.get_json()["results"]]


@pytest.mark.parametrize(
    ("spec", "kept"),
    [
        ({"tags": ["inscription"]}, {"carte", "enfant"}),
        ({"tags": {"any": ["jeunesse", "emprunt"]}}, {"enfant", "pret", "retard"}),
        ({"tags": {"all": ["inscription", "jeunesse"]}}, {"enfant"}),
        ({"audience": "adulte"}, {"carte", "pret", "retard"}),
        ({"audience": ["parent", "nobody"]}, {"enfant"}),
        ({"audience": "adulte", "tags": ["emprunt"]}, {"pret", "retard"}),
        ({"niveau": 2}, {"retard"}),
    ],
)
def test_a_filter_returns_the_entries_it_keeps_and_top_k_of_them(client, spec, kept):
    got = _ids(client.post("/search", json={"query": "livre", "top_k": 10, "filter": spec}))
    assert set(got) == kept  # every kept entry comes back (the filter applies before ranking), and no other


def test_nothing_kept_is_no_answer_and_the_decision_is_made_among_the_kept(client):
    body = client.post("/search", json={"query": "carte", "filter": {"tags": ["absent"]}}).get_json()
    assert body["results"] == [] and body["answered"] is False and body["reason"]["code"] == "no_close_entry"
    alone = client.post("/search", json={"query": "emprunter des livres", "filter": {"niveau": 2}}).get_json()
    assert [r["faq_id"] for r in alone["results"]] == ["retard"]  # one entry kept: nothing close to compete with


def test_the_cache_keys_on_the_filter(client):
    one = _ids(client.post("/search", json={"query": "inscription", "filter": {"audience": "parent"}}))
    other = _ids(client.post("/search", json={"query": "inscription", "filter": {"audience": "adulte"}}))
    assert one == ["enfant"] and "enfant" not in other


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        ({"couleur": "rouge"}, "unknown_filter_field"),
        ({}, "invalid_filter"),
        ({"tags": "inscription"}, "invalid_filter"),
        ({"tags": []}, "invalid_filter"),
        ({"tags": {"some": ["x"]}}, "invalid_filter"),
        ({"tags": [1]}, "invalid_filter"),
        ({"audience": {"x": 1}}, "invalid_filter"),
        ({"audience": [None]}, "invalid_filter"),
        ({f"f{i}": 1 for i in range(17)}, "invalid_filter"),
        ("tags", "invalid_type"),
    ],
)
def test_bad_filters_are_refused_with_their_code(client, spec, code):
    err = assert_error(client.post("/search", json={"query": "livre", "filter": spec}), 400, code)
    assert err["field"] == "filter"
    if code == "unknown_filter_field":
        assert "tags, audience, niveau" in err["message"]


def test_get_and_batch_take_filters(client):
    assert _ids(client.get("/search", query_string={"q": "livre", "filter": '{"niveau": 2}'})) == ["retard"]
    assert_error(client.get("/search", query_string={"q": "livre", "filter": "{oops"}), 400, "invalid_filter")
    batch = client.post(
        "/search/batch",
        json={"queries": [{"query": "livre", "filter": {"niveau": 2}}, {"query": "x", "filter": {"couleur": 1}}]},
    ).get_json()
    assert [r["faq_id"] for r in batch["results"][0]["results"]] == ["retard"]
    assert batch["results"][1]["error"]["code"] == "unknown_filter_field"  # in its slot, not the batch's


def test_across_faqs_a_field_one_faq_lacks_keeps_none_of_its_entries(library, tmp_path, fake_embedder):
    from conftest import MINI_CORPUS

    build_index(MINI_CORPUS, tmp_path / "mini", fake_embedder, show_progress=False)
    specs = [FaqSpec("biblio", tmp_path / "index", default=True), FaqSpec("mini", tmp_path / "mini")]
    engines = {"biblio": library, "mini": SearchEngine(fake_embedder, load_index(tmp_path / "mini"))}
    client = create_app({"TESTING": True}, service=FaqCatalog(Settings.from_env(), specs=specs, engines=engines))
    client = client.test_client()
    body = client.post("/search", json={"query": "livre", "faqs": ["*"], "filter": {"niveau": 2}}).get_json()
    assert [(r["faq"], r["faq_id"]) for r in body["results"]] == [("biblio", "retard")]
    err = assert_error(client.post("/search", json={"query": "x", "faqs": ["*"], "filter": {"z": 1}}), 400,
                       "unknown_filter_field")  # fmt: skip
    assert err["field"] == "filter"


def test_the_client_mcp_and_function_tools_take_a_filter(library):
    from conftest import serving

    from service.integrations.client import FaqSearchClient
    from service.integrations.tools import call_tool

    with serving(create_app({"TESTING": True}, engine=library)) as url:
        client = FaqSearchClient(url)
        assert [r.faq_id for r in client.search("livre", filter={"niveau": 2}).results] == ["retard"]
        found = call_tool(client, "search_faq", {"query": "livre", "filter": {"audience": "parent"}})
        assert [r["faq_id"] for r in found["results"]] == ["enfant"]


def test_the_mcp_search_tool_takes_a_filter(library):
    import asyncio

    from conftest import service_for
    from mcp import Client

    from service.integrations.mcp import ServiceBackend, build_server

    async def call():
        async with Client(build_server(ServiceBackend(service_for(library)))) as client:
            ok = await client.call_tool("search_faq", {"query": "livre", "filter": {"niveau": 2}})
            bad = await client.call_tool("search_faq", {"query": "livre", "filter": {"couleur": 1}})
            return ok, bad

    ok, bad = asyncio.run(call())
    assert [r["faq_id"] for r in json.loads(ok.content[0].text)["results"]] == ["retard"]
    assert bad.is_error and "unknown_filter_field" in bad.content[0].text

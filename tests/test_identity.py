"""The FAQ's identity (its corpus's optional ``{"faq": …}`` first line) travels with the index: the manifest,
``/health``, the OpenAPI title, the MCP server's name and tool description; Chorus Pro's own values live in its
corpus, not in code."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import CHORUS_CORPUS, MINI_CORPUS, service_for

from service.corpus import CorpusError, FaqIdentity, load_corpus, read_corpus
from service.http.app import create_app
from service.indexing.build import build_index
from service.indexing.store import load_index
from service.integrations.mcp import HttpBackend, ServiceBackend, build_server, server_name
from service.search.engine import SearchEngine

HEADER = {
    "faq": {
        "name": "Mairie de Trifouilly",
        "language": "fr",
        "examples": ["horaires de la mairie le samedi", "refaire ma carte d'identité"],
        "support": "l'accueil de la mairie, 01 23 45 67 89",
    }
}


def _corpus(tmp_path, header=HEADER, name="my_faq.jsonl"):
    path = tmp_path / name
    lines = ([json.dumps(header, ensure_ascii=False)] if header is not None else []) + [
        line for line in MINI_CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_header_is_read_and_is_not_an_entry(tmp_path):
    identity, entries = read_corpus(_corpus(tmp_path))
    assert identity == FaqIdentity(
        "Mairie de Trifouilly",
        "fr",
        ("horaires de la mairie le samedi", "refaire ma carte d'identité"),
        "l'accueil de la mairie, 01 23 45 67 89",
    )
    assert [e.id for e in entries] == [e.id for e in load_corpus(MINI_CORPUS)]
    assert read_corpus(MINI_CORPUS)[0] == FaqIdentity(), "no header: an unnamed French FAQ"


def test_chorus_pro_s_identity_lives_in_its_corpus():
    identity = read_corpus(CHORUS_CORPUS)[0]
    assert identity.name == "Chorus Pro" and identity.language == "fr"
    assert identity.examples and "Sollicitations émises" in identity.support


@pytest.mark.parametrize(
    "header,reason",
    [
        ({"faq": "Chorus"}, "'faq' must be an object"),
        ({"faq": {"nom": "x"}}, "unknown field(s) ['nom'] in 'faq'"),
        ({"faq": {"name": ""}}, "field 'faq.name' is empty"),
        ({"faq": {"name": 3}}, "field 'faq.name' must be a string"),
        ({"faq": {"language": "français"}}, "'faq.language' must be a tag"),
        ({"faq": {"examples": "une question"}}, "field 'faq.examples' must be a list of strings"),
        ({"faq": {"examples": ["q"] * 11}}, "'faq.examples' holds at most 10 questions"),
        ({"faq": {"support": "x" * 501}}, "'faq.support' is longer than 500 characters"),
    ],
)
def test_a_bad_header_is_reported_with_its_line(tmp_path, header, reason):
    with pytest.raises(CorpusError) as caught:
        read_corpus(_corpus(tmp_path, header))
    assert caught.value.line == 1 and reason in caught.value.reason


def test_the_header_must_come_first(tmp_path):
    path = _corpus(tmp_path, header=None)
    path.write_text(path.read_text(encoding="utf-8") + json.dumps(HEADER) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="the 'faq' header must be the file's first line"):
        read_corpus(path)
    only = tmp_path / "only.jsonl"
    only.write_text(json.dumps(HEADER) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="the corpus has no entry"):
        read_corpus(only)


@pytest.fixture
def named_engine(tmp_path, fake_embedder):
    build_index(_corpus(tmp_path), tmp_path / "index", fake_embedder, show_progress=False)
    return SearchEngine(fake_embedder, load_index(tmp_path / "index"))


def test_the_identity_travels_with_the_index_to_health_and_openapi(named_engine):
    assert named_engine.index.manifest.faq.name == "Mairie de Trifouilly"
    client = create_app({"TESTING": True}, engine=named_engine).test_client()
    faq = client.get("/health").get_json()["index"]["faq"]
    assert faq == HEADER["faq"]
    info = client.get("/openapi.json").get_json()["info"]
    assert info["title"] == "Recherche dans la FAQ Mairie de Trifouilly"
    assert "l'accueil de la mairie, 01 23 45 67 89" in info["description"]


def test_an_unnamed_faq_keeps_generic_titles(engine):
    client = create_app({"TESTING": True}, engine=engine).test_client()
    assert client.get("/health").get_json()["index"]["faq"]["name"] is None
    assert client.get("/openapi.json").get_json()["info"]["title"] == "Recherche sémantique dans une FAQ"


def test_the_mcp_server_is_named_and_described_after_its_faq(named_engine, engine):
    from mcp import Client

    async def listing(server):
        async with Client(server) as client:
            return (await client.list_tools()).tools, client.server_info.name

    tools, name = asyncio.run(listing(build_server(ServiceBackend(service_for(named_engine)))))
    assert name == "faq-mairie-de-trifouilly"
    description = {t.name: t for t in tools}["search_faq"].description
    assert "the official FAQ of Mairie de Trifouilly" in description
    assert "hand over to a human (l'accueil de la mairie, 01 23 45 67 89)" in description
    tools, name = asyncio.run(listing(build_server(ServiceBackend(service_for(engine)))))
    assert name == "faq-search" and "the organisation's official FAQ" in tools[0].description
    assert server_name(FaqIdentity("Chorus Pro")) == "faq-chorus-pro"
    assert server_name(FaqIdentity("Île-de-France Mobilités")) == "faq-ile-de-france-mobilites"


def test_an_mcp_server_calling_a_service_that_is_down_still_starts_generic():
    from conftest import free_port

    backend = HttpBackend(f"http://127.0.0.1:{free_port()}", timeout=0.5)  # nothing answers there
    assert backend.identity() == FaqIdentity()
    assert server_name(backend.identity()) == "faq-search"


def test_a_manifest_with_a_damaged_identity_is_refused(tmp_path, fake_embedder):
    from service.errors import IndexUnavailable
    from service.indexing.store import resolve

    build_index(_corpus(tmp_path), tmp_path / "index", fake_embedder, show_progress=False)
    manifest_path = resolve(tmp_path / "index") / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["faq"] = {"name": ["not", "a", "string"]}
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexUnavailable, match="field 'faq.name' must be a string"):
        load_index(tmp_path / "index")


def test_health_shows_the_identity_as_written_even_with_slashes(tmp_path, fake_embedder):
    """/health cuts host paths out of its strings; the FAQ's own words are not paths."""
    header = {"faq": {"name": "Mairie (service /état-civil)", "support": "la page /contact/mairie du site"}}
    build_index(_corpus(tmp_path, header), tmp_path / "index", fake_embedder, show_progress=False)
    engine = SearchEngine(fake_embedder, load_index(tmp_path / "index"))
    faq = create_app({"TESTING": True}, engine=engine).test_client().get("/health").get_json()["index"]["faq"]
    assert faq["name"] == "Mairie (service /état-civil)" and faq["support"] == "la page /contact/mairie du site"


@pytest.mark.parametrize(
    "faq,reason",
    [
        ({"name": "A\ud800B"}, "lone surrogate"),
        ({"examples": "abc"}, "must be a list of strings"),
        ({"name": "x" * 5000}, "longer than 100 characters"),
        ({"language": "fr_FR"}, "must be a tag"),
        ({"name": "\u200b\u200b"}, "is empty"),
    ],
)
def test_a_hand_edited_identity_is_checked_as_the_header_is(faq, reason):
    with pytest.raises(ValueError, match=reason):
        FaqIdentity.from_dict(faq)


def test_a_header_line_is_alone_and_language_tags_follow_bcp_47(tmp_path):
    with pytest.raises(CorpusError, match="the 'faq' header must be alone on its line"):
        read_corpus(_corpus(tmp_path, {"faq": {}, "other": 1}))
    # An entry may have a "faq" field of its own: it is an entry (the field is kept), not a header.
    identity, entries = read_corpus(_corpus(tmp_path, {"faq": "x", "id": "z", "question": "Q ?", "answer": "R."}))
    assert identity == FaqIdentity() and entries[0].id == "z" and entries[0].extra == {"faq": "x"}
    for tag in ("fr", "FR", "fr-CA", "fr-Latn-FR", "x-klingon"):
        assert read_corpus(_corpus(tmp_path, {"faq": {"language": tag}}))[0].language == tag


def test_lone_surrogates_in_an_entry_are_a_corpus_error(tmp_path):
    path = tmp_path / "surrogate.jsonl"
    path.write_text('{"id": "a", "question": "Q \\ud800 ?", "answer": "R."}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match="lone surrogate") as caught:
        read_corpus(path)
    assert caught.value.line == 1

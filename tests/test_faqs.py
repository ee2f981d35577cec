"""Several FAQs in one service (``core/faq_config.py``, ``core/catalog.py``, the routes under ``/faqs/<name>/``):
the configuration and its errors, the routes of each FAQ, the search across FAQs, one encoder for all (fake
embedder; the real model and servers: ``test_faqs_live.py``)."""

from __future__ import annotations

import json

import pytest
from conftest import DATA, MINI_CORPUS, assert_error

from service.core.catalog import FaqCatalog
from service.core.faq_config import FaqConfigError, FaqSpec, faq_specs
from service.http.app import create_app
from service.indexing.build import build_index
from service.indexing.store import load_index
from service.search.engine import SearchEngine
from service.settings import Settings

MAIRIE_CORPUS = DATA / "mairie_faq.jsonl"
SPREAD = {"slope": 5.0, "intercept": 0.0}


class CountingEmbedder:
    """The fake embedder, counting the texts it encodes."""

    def __init__(self, inner):
        self.inner, self.encoded = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, texts, **kwargs):
        self.encoded += len(texts)
        return self.inner.encode(texts, **kwargs)


@pytest.fixture
def two(tmp_path, fake_embedder):
    """Two FAQs' indexes (the mini FAQ, the town hall's), built with one fake embedder."""
    indexes = {}
    for name, corpus in (("mini", MINI_CORPUS), ("mairie", MAIRIE_CORPUS)):
        indexes[name] = tmp_path / name
        build_index(corpus, indexes[name], fake_embedder, show_progress=False)
    return indexes


@pytest.fixture
def catalog(two, fake_embedder):
    embedder = CountingEmbedder(fake_embedder)
    specs = [FaqSpec("mini", two["mini"], MINI_CORPUS, default=True), FaqSpec("mairie", two["mairie"], MAIRIE_CORPUS)]
    # A calibration that spreads the fake embedder's scores (the real one's puts them all near 0).
    engines = {
        name: SearchEngine(embedder, load_index(path), scoring=SPREAD, cache_size=0) for name, path in two.items()
    }
    catalog = FaqCatalog(Settings.from_env(), specs=specs, engines=engines)
    catalog.embedder = embedder
    return catalog


@pytest.fixture
def client(catalog):
    return create_app({"TESTING": True}, service=catalog).test_client()


def _two_faqs_client(two, embedder, observer=None, **settings):
    """A test client of the two FAQs (mini the default) with these settings."""
    specs = [FaqSpec("mini", two["mini"], default=True), FaqSpec("mairie", two["mairie"])]
    engines = {name: SearchEngine(embedder, load_index(path), scoring=SPREAD) for name, path in two.items()}
    catalog = FaqCatalog(Settings.from_env(**settings), specs=specs, engines=engines, observer=observer)
    return create_app({"TESTING": True}, service=catalog).test_client()


# ---- the configuration ----


def _config(tmp_path, text: str):
    path = tmp_path / "faqs.toml"
    path.write_text(text, encoding="utf-8")
    return Settings.from_env(config=path)


def test_a_config_file_names_the_faqs_relative_to_itself(tmp_path, two):
    settings = _config(
        tmp_path,
        '[[faq]]\nname = "mini"\nindex = "mini"\ncorpus = "mini.jsonl"\n\n'
        '[[faq]]\nname = "mairie"\nindex = "mairie"\ndefault = true\n',
    )
    specs = faq_specs(settings)
    assert [s.name for s in specs] == ["mairie", "mini"]  # the one marked default first
    assert specs[1].index == tmp_path / "mini" and specs[1].corpus == tmp_path / "mini.jsonl"
    assert specs[0].corpus is None and specs[0].where == f"{tmp_path / 'faqs.toml'}:6"


def test_faq_options_add_faqs_and_a_query_log_per_faq(tmp_path, two):
    settings = Settings.from_env(
        faqs=f"mini={two['mini']},mairie={two['mairie']}", query_log=tmp_path / "logs" / "queries.sqlite"
    )
    specs = faq_specs(settings)
    assert [(s.name, s.index) for s in specs] == [("mini", two["mini"]), ("mairie", two["mairie"])]
    assert all(s.query_log is None for s in specs)  # no corpus: no review loop, so no log
    config = _config(tmp_path, f'[[faq]]\nname = "a"\nindex = "{two["mini"]}"\ncorpus = "a.jsonl"\n')
    logged = faq_specs(config.model_copy(update={"query_log": tmp_path / "queries.sqlite"}))
    assert logged[0].query_log == tmp_path / "queries.a.sqlite"


def test_one_faq_as_before_when_no_configuration(tmp_path):
    specs = faq_specs(Settings.from_env(index=tmp_path / "nowhere", corpus=MINI_CORPUS))
    assert [(s.name, s.index, s.default) for s in specs] == [("mini_faq", tmp_path / "nowhere", True)]


def test_a_bad_configuration_is_refused_whole_with_every_error_and_its_line(tmp_path, two):
    settings = _config(
        tmp_path,
        f'[[faq]]\nname = "mini"\nindex = "{two["mini"]}"\n\n'  # line 1
        f'[[faq]]\nname = "mini"\nindex = "{two["mairie"]}"\n\n'  # line 5: a duplicate name
        '[[faq]]\nname = "Not A Slug"\nindex = "missing"\n\n'  # line 9: not a slug, no index
        f'[[faq]]\nname = "again"\nindex = "{two["mini"]}"\ncolour = "blue"\n\n'  # line 13: same index, unknown key
        '[[faq]]\nindex = "x"\n',  # line 18: no name
    )
    with pytest.raises(FaqConfigError) as raised:
        faq_specs(settings)
    errors = raised.value.errors
    path = tmp_path / "faqs.toml"
    expected = [
        (f"{path}:5", "already the FAQ of"),
        (f"{path}:9", "is not a slug"),
        (f"{path}:9", "no index at"),
        (f"{path}:13", "already the index of 'mini'"),
        (f"{path}:13", "unknown key 'colour'"),
        (f"{path}:18", "'name' is required"),
    ]
    for where, words in expected:
        assert any(e.startswith(where) and words in e for e in errors), (where, words, errors)
    assert len(errors) == len(expected), errors


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[[faq]\nname = 1", "not valid TOML"),
        ("faqs = 3", "unknown key 'faqs'"),
        ("", "no FAQ is named"),
        ('[[faq]]\nname = "a"\nindex = "i"\ndefault = "yes"', "'default' must be true or false"),
        ('[[faq]]\nname = "a"\nindex = "i"\nquery_log = "q.db"', "'query_log' needs 'corpus'"),
    ],
)
def test_bad_configuration_files(tmp_path, text, words):
    with pytest.raises(FaqConfigError) as raised:
        faq_specs(_config(tmp_path, text), check_indexes=False)
    assert any(words in e for e in raised.value.errors), raised.value.errors


def test_two_defaults_and_a_bad_option_are_refused(tmp_path, two):
    settings = _config(
        tmp_path,
        f'[[faq]]\nname = "a"\nindex = "{two["mini"]}"\ndefault = true\n'
        f'[[faq]]\nname = "b"\nindex = "{two["mairie"]}"\ndefault = true\n',
    )
    with pytest.raises(FaqConfigError, match="one default FAQ"):
        faq_specs(settings)
    with pytest.raises(FaqConfigError, match="expected NAME=INDEX_DIR"):
        faq_specs(Settings.from_env(faqs="just-a-name"))


def test_serve_refuses_a_bad_configuration_before_starting(tmp_path, capsys):
    from service.cli import serve

    (tmp_path / "faqs.toml").write_text('[[faq]]\nname = "UPPER"\nindex = "nowhere"\n', encoding="utf-8")
    assert serve.main(["--dev", "--config", str(tmp_path / "faqs.toml")]) == 2
    err = capsys.readouterr().err
    assert "is not a slug" in err and "no index at" in err
    with pytest.raises(SystemExit) as ended:
        serve.main(["--dev", "--faq", "nameonly"])
    assert ended.value.code == 2 and "expected NAME=INDEX_DIR" in capsys.readouterr().err


# ---- the routes of each FAQ ----


def test_faqs_lists_every_faq_with_its_identity(client, two):
    body = client.get("/faqs").get_json()
    assert body["default"] == "mini"
    by_name = {f["name"]: f for f in body["faqs"]}
    assert list(by_name) == ["mini", "mairie"] and by_name["mini"]["default"] is True
    assert by_name["mairie"]["faq"]["name"] == "Mairie de Saint-Exemple" and by_name["mairie"]["entries"] == 3
    assert by_name["mairie"]["ready"] is True and by_name["mairie"]["index_id"]


def test_each_faq_answers_under_its_name_and_the_default_without(client):
    question = "acte de naissance"
    named = client.post("/faqs/mairie/search", json={"query": question}).get_json()
    assert named["results"][0]["faq_id"] == "mairie-1"
    got = client.get("/faqs/mairie/search", query_string={"q": question}).get_json()
    assert got["results"][0]["faq_id"] == "mairie-1"
    default = client.post("/search", json={"query": question}).get_json()
    assert all(r["faq_id"] in {"compte", "activation", "gestionnaire", "espace", "factures"} or
               not r["faq_id"].startswith("mairie") for r in default["results"])  # fmt: skip
    assert client.get("/faqs/mairie/faq/mairie-2").get_json()["id"] == "mairie-2"
    assert_error(client.get("/faq/mairie-2"), 404, "faq_not_found")  # the default FAQ has no such entry
    batch = client.post("/faqs/mairie/search/batch", json={"queries": [question, "cantine"]}).get_json()
    assert [r["results"][0]["faq_id"] for r in batch["results"]] == ["mairie-1", "mairie-2"]
    assert client.get("/faqs/mairie/health").get_json()["index"]["faq"]["name"] == "Mairie de Saint-Exemple"
    with client.get("/faqs/mairie/") as page:
        assert page.status_code == 200 and "Content-Security-Policy" in page.headers


def test_an_unknown_faq_is_a_404_that_lists_the_known_names(client):
    for response in (
        client.post("/faqs/nope/search", json={"query": "x"}),
        client.get("/faqs/nope/faq/mairie-1"),
        client.post("/search", json={"query": "x", "faqs": ["mairie", "nope"]}),
        client.get("/search", query_string={"q": "x", "faqs": "nope"}),
    ):
        err = assert_error(response, 404, "unknown_faq")
        assert "mini, mairie" in err["message"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"query": "x", "faqs": []}, 400, "out_of_range"),
        ({"query": "x", "faqs": "mairie"}, 400, "invalid_type"),
        ({"query": "x", "faqs": [3]}, 400, "invalid_type"),
        ({"query": "x", "faqs": [""]}, 400, "invalid_request"),
        ({"query": "x", "faqs": ["a"] * 65}, 400, "out_of_range"),
        ({"query": "x", "faqs": ["a" * 201]}, 400, "out_of_range"),
    ],
)
def test_bad_faqs_lists(client, body, status, code):
    assert assert_error(client.post("/search", json=body), status, code)["field"] == "faqs"


def test_faqs_is_refused_under_a_faq_name(client):
    err = assert_error(client.post("/faqs/mairie/search", json={"query": "x", "faqs": ["*"]}), 400, "invalid_request")
    assert err["field"] == "faqs"
    batch = client.post("/faqs/mairie/search/batch", json={"queries": ["cantine", {"query": "x", "faqs": ["*"]}]})
    first, second = batch.get_json()["results"]  # the query naming FAQs gets its error in its slot, not the batch
    assert batch.status_code == 200 and first["results"][0]["faq_id"] == "mairie-2"
    assert second["error"]["code"] == "invalid_request" and "/faqs/<name>/" in second["error"]["message"]


def test_repeated_faqs_parameters_add_up(client):
    body = client.get("/search?q=cantine&faqs=mini&faqs=mairie").get_json()
    assert body["faqs"] == ["mini", "mairie"]


def test_the_page_of_an_unknown_faq_is_a_404(client):
    assert_error(client.get("/faqs/nope/"), 404, "unknown_faq")
    assert_error(client.get("/faqs/nope/review"), 404, "unknown_faq")
    with client.get("/faqs/mairie/review") as page:
        assert page.status_code == 200


def test_api_keys_guard_every_faq_and_the_list(two, fake_embedder):
    client = _two_faqs_client(two, fake_embedder, api_keys="k1")
    assert_error(client.post("/faqs/mairie/search", json={"query": "x"}), 401, "unauthorized")
    assert_error(client.get("/faqs"), 401, "unauthorized")
    assert_error(client.post("/faqs/nope/search", json={"query": "x"}), 401, "unauthorized")  # names stay private
    assert_error(client.get("/faqs/mairie/health"), 401, "unauthorized")  # one FAQ's state: keyed
    assert client.get("/health").status_code == 200  # the service's probe stays open
    hidden = assert_error(client.get("/faqs/nope/"), 404, "unknown_faq")  # the page is open: no names to it
    assert "mairie" not in hidden["message"] and "mini" not in hidden["message"]
    keyed = client.post("/faqs/mairie/search", json={"query": "x"}, headers={"X-API-Key": "k1"})
    assert keyed.status_code == 200


# ---- across FAQs ----


def test_a_search_across_faqs_merges_by_score_and_names_each_faq(client, catalog):
    before = catalog.embedder.encoded
    body = client.post("/search", json={"query": "acte de naissance", "faqs": ["*"], "top_k": 4}).get_json()
    assert catalog.embedder.encoded - before == 1  # one encoder for both FAQs: the query is encoded once
    assert body["faq"] == "mairie" and body["results"][0]["faq"] == "mairie"
    assert body["results"][0]["faq_id"] == "mairie-1" and body["faqs"] == ["mini", "mairie"]
    assert [r["rank"] for r in body["results"]] == [1, 2, 3, 4]
    assert {r["faq"] for r in body["results"]} <= {"mini", "mairie"}
    # Each FAQ's order is kept, and the merge is by score: the first result leads every FAQ's first.
    alone = {
        name: client.post(f"/faqs/{name}/search", json={"query": "acte de naissance", "top_k": 4}).get_json()
        for name in ("mini", "mairie")
    }
    assert body["results"][0]["score"] == max(a["results"][0]["score"] for a in alone.values())
    assert body["answered"] == alone["mairie"]["answered"] and body["reason"] == alone["mairie"]["reason"]
    for name in ("mini", "mairie"):
        mine = [r["faq_id"] for r in body["results"] if r["faq"] == name]
        assert mine == [r["faq_id"] for r in alone[name]["results"]][: len(mine)]


def test_across_named_faqs_and_in_a_batch(client):
    one = client.get("/search", query_string={"q": "cantine", "faqs": "mairie"}).get_json()
    assert one["faqs"] == ["mairie"] and all(r["faq"] == "mairie" for r in one["results"])
    batch = client.post(
        "/search/batch",
        json={"queries": ["créer mon compte", {"query": "cantine", "faqs": ["*"]}, {"query": "x", "faqs": ["no"]}]},
    ).get_json()
    plain, across, unknown = batch["results"]
    assert "faq" not in plain["results"][0] and plain["results"][0]["faq_id"] == "compte"
    assert across["faq"] == "mairie" and across["results"][0]["faq_id"] == "mairie-2"
    assert unknown["error"]["code"] == "unknown_faq"


def test_health_reports_every_faq(client):
    body = client.get("/health").get_json()
    assert set(body["faqs"]) == {"mini", "mairie"} and all(f["ready"] for f in body["faqs"].values())


def test_the_openapi_document_has_both_forms_of_each_faq_route(client):
    doc = client.get("/openapi.json").get_json()
    assert "/search" in doc["paths"] and "/faqs/{faq_name}/search" in doc["paths"] and "/faqs" in doc["paths"]
    named = doc["paths"]["/faqs/{faq_name}/search"]["post"]
    assert named["operationId"] == "searchInFaq" and named["parameters"][0]["name"] == "faq_name"
    assert "unknown_faq" in named["responses"]["404"]["description"]
    assert named["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/FaqSearchRequest")
    ids = [op["operationId"] for path in doc["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))


# ---- assistants ----


def test_the_mcp_tools_take_a_faq_listing_each_with_what_it_covers(catalog):
    import asyncio

    from mcp import Client

    from service.integrations.mcp import ServiceBackend, build_server

    async def session(calls):
        async with Client(build_server(ServiceBackend(catalog))) as client:
            tools = await client.list_tools()
            return tools, [await client.call_tool(name, args) for name, args in calls]

    tools, (across, named, entry, unknown) = asyncio.run(
        session(
            [
                ("search_faq", {"query": "acte de naissance", "faq": "*", "top_k": 2}),
                ("search_faq", {"query": "cantine", "faq": "mairie", "top_k": 1}),
                ("get_faq_entry", {"faq_id": "mairie-3", "faq": "mairie"}),
                ("search_faq", {"query": "cantine", "faq": "nope"}),
            ]
        )
    )
    search = {t.name: t for t in tools.tools}["search_faq"]
    faq = search.input_schema["properties"]["faq"]
    assert faq["enum"] == ["mini", "mairie", "*", None] and "Mairie de Saint-Exemple" in faq["description"]
    assert "acte de naissance" in faq["description"]  # the FAQ's examples say what it covers
    body = json.loads(across.content[0].text)
    assert body["faq"] == "mairie" and body["results"][0]["faq"] == "mairie"
    assert json.loads(named.content[0].text)["results"][0]["faq_id"] == "mairie-2"
    assert json.loads(entry.content[0].text)["id"] == "mairie-3"
    assert unknown.is_error and "mini, mairie" in unknown.content[0].text


def test_the_python_client_takes_faq(catalog):
    from conftest import serving

    from service.integrations.client import FaqSearchClient, NotFoundError

    with serving(create_app({"TESTING": True}, service=catalog)) as url:
        client = FaqSearchClient(url)
        assert [f["name"] for f in client.faqs()["faqs"]] == ["mini", "mairie"]
        assert client.search("cantine", faq="mairie").results[0].faq_id == "mairie-2"
        across = client.search("acte de naissance", faq="*")
        assert across.faq == "mairie" and across.results[0].faq == "mairie"
        assert across.faqs == ["mini", "mairie"] and across.unavailable == []
        batch = client.search_batch(["acte de naissance", {"query": "cantine", "top_k": 1}], faq="*")
        assert [b.faq for b in batch] == ["mairie", "mairie"] and len(batch[1].results) == 1
        assert client.entry("mairie-1", faq="mairie")["id"] == "mairie-1"
        assert client.search_batch(["cantine"], faq="mairie")[0].results[0].faq_id == "mairie-2"
        with pytest.raises(NotFoundError) as raised:
            client.search("x", faq="nope")
        assert raised.value.code == "unknown_faq"


# ---- per FAQ: keys, metrics, the review loop ----


def test_a_key_limited_to_some_faqs_gets_403_on_the_others(two, fake_embedder):
    client = _two_faqs_client(two, fake_embedder, api_keys="all-key,town-key:mairie")
    town = {"X-API-Key": "town-key"}
    assert client.post("/faqs/mairie/search", json={"query": "cantine"}, headers=town).status_code == 200
    err = assert_error(client.post("/faqs/mini/search", json={"query": "x"}, headers=town), 403, "faq_forbidden")
    assert "mairie" in err["message"] and "mini" in err["message"]
    assert_error(client.post("/search", json={"query": "x"}, headers=town), 403, "faq_forbidden")  # the default
    assert_error(client.get("/faq/compte", headers=town), 403, "faq_forbidden")
    assert_error(client.post("/search", json={"query": "x", "faqs": ["mini"]}, headers=town), 403, "faq_forbidden")
    across = client.post("/search", json={"query": "cantine", "faqs": ["*"]}, headers=town).get_json()
    assert across["faqs"] == ["mairie"]  # all of those the key may use
    assert [f["name"] for f in client.get("/faqs", headers=town).get_json()["faqs"]] == ["mairie"]
    unknown = assert_error(client.post("/faqs/nope/search", json={"query": "x"}, headers=town), 404, "unknown_faq")
    assert "mini" not in unknown["message"]  # the FAQs a key may not use are not named to it
    assert client.post("/faqs/mini/search", json={"query": "x"}, headers={"X-API-Key": "all-key"}).status_code == 200


def test_a_key_limited_to_a_faq_the_service_does_not_serve_is_refused_at_start(two):
    settings = Settings.from_env(faqs=f"mini={two['mini']},mairie={two['mairie']}", api_keys="k1,k2:mairie+gone")
    with pytest.raises(FaqConfigError) as raised:
        faq_specs(settings)
    assert raised.value.errors == [
        "FAQ_API_KEYS: key number 2 is limited to gone, not a FAQ of this service (mairie, mini)"
    ]
    assert "k2" not in str(raised.value)


def test_the_rate_limit_counts_a_client_across_all_faqs(two, fake_embedder):
    client = _two_faqs_client(two, fake_embedder, rate_limit="3/minute")
    statuses = [
        client.post(path, json={"query": "cantine"}).status_code
        for path in ("/faqs/mairie/search", "/faqs/mini/search", "/search", "/faqs/mairie/search")
    ]
    assert statuses == [200, 200, 200, 429]


def test_metrics_label_each_faq(two, fake_embedder):
    from service.http.observability import MetricsObserver

    client = _two_faqs_client(two, fake_embedder, observer=MetricsObserver)
    client.post("/faqs/mairie/search", json={"query": "cantine"})
    client.post("/faqs/mini/search", json={"query": "compte"})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'faq_searches_total{answered="true",faq="mairie"}' in text or 'answered="false",faq="mairie"' in text
    assert 'faq_index_entries{faq="mairie"} 3.0' in text and 'faq_index_entries{faq="mini"}' in text
    assert 'faq_index_info{faq="mairie",index_id=' in text
    assert 'route="/faqs/<faq_name>/search"' in text  # the route, not each name: bounded


def test_each_faq_has_its_own_query_log_and_review_queue(tmp_path, two, fake_embedder):
    from conftest import LEARNING_TOKEN, RecordingRebuilder

    town_corpus = tmp_path / MAIRIE_CORPUS.name  # a copy: the reviewed file goes beside it
    town_corpus.write_bytes(MAIRIE_CORPUS.read_bytes())
    specs = [
        FaqSpec("mini", two["mini"], MINI_CORPUS, tmp_path / "mini.db", default=True),
        FaqSpec("mairie", two["mairie"], town_corpus, tmp_path / "mairie.db"),
    ]
    engines = {name: SearchEngine(fake_embedder, load_index(path), scoring=SPREAD) for name, path in two.items()}
    catalog = FaqCatalog(Settings.from_env(admin_token=LEARNING_TOKEN), specs=specs, engines=engines)
    for service in catalog.services.values():
        service.rebuilder = RecordingRebuilder()
    client = create_app({"TESTING": True}, service=catalog).test_client()
    admin = {"Authorization": f"Bearer {LEARNING_TOKEN}"}
    try:
        asked = client.post("/faqs/mairie/search", json={"query": "horaires de la piscine municipale"}).get_json()
        assert not asked["answered"]
        town = client.get("/faqs/mairie/admin/gaps", headers=admin).get_json()
        default = client.get("/admin/gaps", headers=admin).get_json()
        assert town["queries"] == 1 and default["queries"] == 0, (town, default)
        sent = client.post(
            "/faqs/mairie/feedback", json={"request_id": asked["request_id"], "faq_id": "mairie-1", "helpful": False}
        )
        assert sent.status_code == 201
        wrong = client.post(
            "/feedback", json={"request_id": asked["request_id"], "faq_id": "mairie-1", "helpful": False}
        )
        assert_error(wrong, 404, "unknown_request")  # the default FAQ's log never saw it
        queue = client.get("/faqs/mairie/admin/review", headers=admin).get_json()
        group = queue["groups"][0]
        decided = client.post(
            "/faqs/mairie/admin/review/actions",
            headers=admin,
            json={"action": "attach", "faq_id": "mairie-1", "query_keys": group["query_keys"],
                  "index_id": queue["index_id"], "by": "marie"},
        )  # fmt: skip
        assert decided.status_code == 201, decided.get_json()
        assert catalog.services["mairie"].rebuilder.requests == [decided.get_json()["action"]["id"]]
        assert catalog.services["mini"].rebuilder.requests == []  # that FAQ only is rebuilt
        assert (tmp_path / "mairie_faq.reviewed.jsonl").is_file()
        assert not (MINI_CORPUS.parent / "mini_faq.reviewed.jsonl").exists()
    finally:
        catalog.close()


# ---- the configuration read again ----


def test_a_configuration_reload_adds_removes_and_keeps_faqs_without_a_restart(
    tmp_path, two, fake_embedder, monkeypatch
):
    from conftest import LEARNING_TOKEN

    import service.core.faq_service as faq_service_module

    monkeypatch.setattr(  # the fake embedder for every FAQ the catalog loads
        faq_service_module,
        "load_engine",
        lambda settings, embedders=None: SearchEngine(
            fake_embedder, load_index(settings.index), scoring=SPREAD
        ),  # fmt: skip
    )
    build_index(MINI_CORPUS, tmp_path / "third", fake_embedder, show_progress=False)
    config = tmp_path / "faqs.toml"
    config.write_text(f'[[faq]]\nname = "mini"\nindex = "{two["mini"]}"\n[[faq]]\nname = "mairie"\nindex = "mairie"\n')
    catalog = FaqCatalog(Settings.from_env(config=config, admin_token=LEARNING_TOKEN))
    kept = catalog.services["mairie"]
    client = create_app({"TESTING": True}, service=catalog).test_client()
    admin = {"Authorization": f"Bearer {LEARNING_TOKEN}"}
    assert_error(client.post("/admin/faqs/reload"), 401, "unauthorized")

    config.write_text('[[faq]]\nname = "mairie"\nindex = "mairie"\n[[faq]]\nname = "third"\nindex = "third"\n')
    outcome = client.post("/admin/faqs/reload", headers=admin).get_json()
    assert outcome["replaced"] == []
    assert (outcome["ok"], outcome["added"], outcome["removed"], outcome["kept"]) == (True, ["third"], ["mini"],
                                                                                       ["mairie"])  # fmt: skip
    assert outcome["default"] == "mairie" and catalog.services["mairie"] is kept  # untouched
    assert [f["name"] for f in client.get("/faqs").get_json()["faqs"]] == ["mairie", "third"]
    assert_error(client.post("/faqs/mini/search", json={"query": "x"}), 404, "unknown_faq")
    assert client.post("/faqs/third/search", json={"query": "compte"}).status_code == 200
    assert client.post("/search", json={"query": "cantine"}).get_json()["results"][0]["faq_id"] == "mairie-2"

    first = '[[faq]]\nname = "mairie"\nindex = "mairie"\n'
    for broken in (
        first + '[[faq]]\nname = "mairie"\nindex = "third"\n',
        first + '[[faq]]\nname = "new"\nindex = "no"\n',
    ):
        config.write_text(broken)
        refused = client.post("/admin/faqs/reload", headers=admin)
        assert refused.status_code == 409 and refused.get_json()["errors"], refused.get_json()
        assert [f["name"] for f in client.get("/faqs").get_json()["faqs"]] == ["mairie", "third"]
    catalog.close()


def test_faqs_of_one_model_share_one_encoder_and_another_model_gets_its_own(monkeypatch):
    import service.search.engine_loading as engine_loading

    loaded = []
    monkeypatch.setattr(engine_loading, "load_embedder", lambda model, backend, threads=None: loaded.append(model)
                        or object())  # fmt: skip
    pool = engine_loading.EmbedderPool()
    first = pool.get("model-a", "onnx", 1)
    assert pool.get("model-a", "onnx", 1) is first and loaded == ["model-a"]
    assert pool.get("model-b", "onnx", 1) is not first and loaded == ["model-a", "model-b"] and len(pool) == 2


# ---- what the adversarial probe found ----


def test_a_batch_counts_every_query_across_faqs_in_one_token_budget(two, fake_embedder):
    client = _two_faqs_client(two, fake_embedder, max_request_tokens=40)
    one = {"query": " ".join(["cantine"] * 12), "faqs": ["*"]}  # within the budget alone, not three together
    assert client.post("/search/batch", json={"queries": [one]}).status_code == 200
    assert_error(client.post("/search/batch", json={"queries": [one] * 3}), 413, "too_many_tokens")


def test_a_key_limited_to_other_faqs_than_the_default_can_batch_across_its_own(two, fake_embedder):
    client = _two_faqs_client(two, fake_embedder, api_keys="town:mairie")
    town = {"X-API-Key": "town"}
    body = client.post("/search/batch", json={"queries": [{"query": "cantine", "faqs": ["mairie"]}]}, headers=town)
    assert body.status_code == 200 and body.get_json()["results"][0]["faq"] == "mairie"
    assert client.get("/faqs", headers=town).get_json()["default"] is None  # not a FAQ this key may use
    assert_error(client.post("/search", json={"query": "x", "faqs": ["*", "nope"]}, headers=town), 404, "unknown_faq")


def test_a_search_across_faqs_is_logged_in_the_leading_faq_only(tmp_path, two, fake_embedder):
    specs = [
        FaqSpec("mini", two["mini"], MINI_CORPUS, tmp_path / "mini.db", default=True),
        FaqSpec("mairie", two["mairie"], MAIRIE_CORPUS, tmp_path / "mairie.db"),
    ]
    engines = {name: SearchEngine(fake_embedder, load_index(path), scoring=SPREAD) for name, path in two.items()}
    catalog = FaqCatalog(Settings.from_env(admin_token="t"), specs=specs, engines=engines)
    client = create_app({"TESTING": True}, service=catalog).test_client()
    try:
        body = client.post("/search", json={"query": "piscine municipale horaires cantine", "faqs": ["*"]}).get_json()
        lead, other = body["faq"], ({"mini", "mairie"} - {body["faq"]}).pop()
        gaps = {name: client.get(f"/faqs/{name}/admin/gaps", headers={"Authorization": "Bearer t"}).get_json()
                for name in (lead, other)}  # fmt: skip
        assert gaps[other]["queries"] == 0  # never the other FAQ's gap
        feedback = {"request_id": body["request_id"], "faq_id": body["results"][0]["faq_id"], "helpful": False}
        assert client.post(f"/faqs/{lead}/feedback", json=feedback).status_code == 201
    finally:
        catalog.close()


def test_an_index_reload_reads_the_configuration_too_in_this_worker(tmp_path, two, fake_embedder, monkeypatch):
    import service.core.faq_service as faq_service_module

    monkeypatch.setattr(faq_service_module, "load_engine", lambda settings, embedders=None: SearchEngine(
        fake_embedder, load_index(settings.index)))  # fmt: skip
    config = tmp_path / "faqs.toml"
    config.write_text('[[faq]]\nname = "mini"\nindex = "mini"\n')
    catalog = FaqCatalog(Settings.from_env(config=config, admin_token="t"))
    client = create_app({"TESTING": True}, service=catalog).test_client()
    config.write_text('[[faq]]\nname = "mini"\nindex = "mini"\n[[faq]]\nname = "mairie"\nindex = "mairie"\n')
    assert client.post("/faqs/mini/admin/reload", headers={"Authorization": "Bearer t"}).status_code == 200
    assert catalog.names == ["mini", "mairie"]  # as every sibling worker, which the reload signals, does
    catalog.close()


@pytest.mark.parametrize(
    ("index", "words"),
    [("loop-a", "cannot be used"), ("mini\u0000x", "cannot be used"), ("mini/current", "serves the build of 'a'")],
)
def test_config_paths_that_loop_hold_nul_or_share_a_build_are_errors_not_crashes(tmp_path, two, index, words):
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")  # (the fixture built tmp_path/mini and tmp_path/mairie)
    escaped = index.replace("\u0000", "\\u0000")
    settings = _config(tmp_path, f'[[faq]]\nname = "a"\nindex = "mini"\n[[faq]]\nname = "b"\nindex = "{escaped}"\n')
    with pytest.raises(FaqConfigError) as raised:
        faq_specs(settings)
    assert any(words in e for e in raised.value.errors), raised.value.errors


def test_error_lines_skip_tables_inside_multiline_strings(tmp_path, two):
    text = (
        '# a comment\n[[faq]]\nname = "ok"\nindex = "mini"\ncorpus = """\n[[faq]]\n"""\n'  # line 2; 6 is a string
        '[["faq"]]\nname = "Bad Name"\nindex = "mairie"\n'  # line 8
    )
    with pytest.raises(FaqConfigError) as raised:
        faq_specs(_config(tmp_path, text))
    assert any(e.startswith(f"{tmp_path / 'faqs.toml'}:8: name 'Bad Name'") for e in raised.value.errors), raised


def test_the_cluster_names_its_faqs_in_valid_toml_and_drops_faq_faqs(tmp_path, monkeypatch):
    import tomllib

    from service.deploy import cluster

    monkeypatch.setenv("FAQ_FAQS", "a=/somewhere")
    spec = cluster.ClusterSpec(run_dir=tmp_path, publish_dir=tmp_path / 'pub "quoted" \\ dir', faqs=["a", "b"])
    parsed = tomllib.loads(cluster.render_faqs_config(spec))
    assert [(f["name"], f["index"]) for f in parsed["faq"]] == [("a", str(spec.published("a"))),
                                                                   ("b", str(spec.published("b")))]  # fmt: skip
    env = cluster.replica_env(spec, "r1")
    assert "FAQ_FAQS" not in env and env["FAQ_CONFIG"] == str(spec.faqs_config)

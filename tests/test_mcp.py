"""The MCP server, checked with the official SDK's own client: in-process, and as `python -m service.mcp` over
stdio calling a running service."""

from __future__ import annotations

import asyncio
import json
import sys

from conftest import ROOT, free_port, service_for
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from service.integrations.mcp import ServiceBackend, build_server


async def _session(server, calls):
    async with Client(server) as client:
        tools = await client.list_tools()
        results = [await client.call_tool(name, args) for name, args in calls]
        return tools, results


def _payload(result) -> dict:
    """The tool's JSON: structured content, and the same in the text block for clients without it."""
    text = json.loads(result.content[0].text)
    assert result.structured_content in (None, text) or result.structured_content.get("result") == text
    return text


def test_tools_are_listed_with_guidance_for_the_model(engine):
    tools, _ = asyncio.run(_session(build_server(ServiceBackend(service_for(engine))), []))
    by_name = {t.name: t for t in tools.tools}
    assert set(by_name) == {"search_faq", "get_faq_entry", "send_feedback"}
    description = by_name["search_faq"].description
    assert "answered" in description and "results[0]" in description and "get_faq_entry" in description
    assert set(by_name["search_faq"].input_schema["properties"]) == {"query", "top_k", "filter"}
    assert by_name["search_faq"].input_schema["required"] == ["query"]
    top_k = by_name["search_faq"].input_schema["properties"]["top_k"]
    assert (top_k["minimum"], top_k["maximum"], top_k["default"]) == (1, 50, 5)


def test_search_and_entry_tools_answer_from_the_engine(engine):
    _, (search, entry, empty, missing, bad_k) = asyncio.run(
        _session(
            build_server(ServiceBackend(service_for(engine))),
            [
                ("search_faq", {"query": "facture sous-traitant", "top_k": 2}),
                ("get_faq_entry", {"faq_id": "gestionnaire"}),
                ("search_faq", {"query": "   "}),
                ("get_faq_entry", {"faq_id": "nope"}),
                ("search_faq", {"query": "facture", "top_k": 500}),
            ],
        )
    )
    assert not search.is_error
    body = _payload(search)
    assert body["results"][0]["faq_id"] == "factures" and len(body["results"]) == 2
    assert isinstance(body["answered"], bool) and body["results"][0]["match"]["by"] == "alt_question"
    assert _payload(entry)["passages"][1]["section"] == "Si le gestionnaire a quitté la structure"
    assert empty.is_error and "empty_query" in empty.content[0].text
    assert missing.is_error and "faq_not_found" in missing.content[0].text
    # The schema declares the bounds, so the SDK refuses 500 before the tool runs, naming the field and the bound.
    assert bad_k.is_error and "out_of_range: " in bad_k.content[0].text and "50" in bad_k.content[0].text
    assert "Traceback" not in empty.content[0].text + missing.content[0].text


def test_stdio_server_calls_a_running_service(live_url):
    params = StdioServerParameters(command=sys.executable, args=["-m", "service.mcp", "--url", live_url], cwd=str(ROOT))
    tools, (search, missing) = asyncio.run(
        _session(
            params,
            [
                ("search_faq", {"query": "lien d'activation", "top_k": 1}),
                ("get_faq_entry", {"faq_id": "nope"}),
            ],
        )
    )
    assert {t.name for t in tools.tools} == {"search_faq", "get_faq_entry", "send_feedback"}
    assert _payload(search)["results"][0]["faq_id"] == "activation"
    assert missing.is_error and "faq_not_found" in missing.content[0].text


def test_streamable_http_transport(live_url):
    import subprocess

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.mcp", "--url", live_url, "--transport", "streamable-http", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_port(proc, port)
        tools, (search,) = asyncio.run(
            _session(f"http://127.0.0.1:{port}/mcp", [("search_faq", {"query": "créer mon compte"})])
        )
        assert {t.name for t in tools.tools} == {"search_faq", "get_faq_entry", "send_feedback"}
        assert _payload(search)["results"][0]["faq_id"] == "compte"
    finally:
        _stop(proc)


def test_the_documented_mcp_client_example_runs(live_url, tmp_path):
    """docs/integration.md's Python MCP client, run as it is written, against a running service."""
    import os
    import re
    import subprocess

    doc = (ROOT / "docs" / "integration.md").read_text(encoding="utf-8")
    [example] = [block for block in re.findall(r"```python\n(.*?)```", doc, re.S) if "StdioServerParameters" in block]
    script = tmp_path / "mcp_client.py"
    script.write_text(example, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env={**os.environ, "FAQ_URL": live_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "['search_faq', 'get_faq_entry', 'send_feedback']" and lines[1].split(" ", 1)[0] in (
        "True",
        "False",
    )


# ---- over HTTP: the HTTP API's rules (issue 25) ----

#: An MCP server over streamable HTTP around the mini corpus and the fake embedder, with keys, a rate limit of 10
#: a minute, one search slot, a budget of 200 tokens; ``FAQ_TEST_SLOW`` makes each search hold its slot that long.
HTTP_SERVER = """
import time
from conftest import HashingEmbedder, service_for
from service.access import RateLimit
from service.indexing.store import load_index
from service.integrations.mcp import ServiceBackend, build_server, serve_http
from service.search.engine import SearchEngine

class Slow(HashingEmbedder):
    def encode(self, texts, **kw):
        if any("lent" in t for t in texts):
            time.sleep(1.5)
        return super().encode(texts, **kw)

engine = SearchEngine(Slow(), load_index({index!r}))
service = service_for(engine, max_concurrent_searches=1, search_timeout=0.3, max_request_tokens=200)
server = build_server(ServiceBackend(service), RateLimit("10/minute"), ["k-one", "k-two"])
serve_http(server, "127.0.0.1", {port}, ["k-one", "k-two"])
"""


def _stop(proc) -> None:
    proc.terminate()
    proc.wait(timeout=30)
    proc.stderr.close()


def _wait_port(proc, port: int, seconds: float = 60) -> None:
    """Until the server ``proc`` accepts connections on ``port`` (bounded); fails with its stderr if it exits."""
    import socket
    import time

    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"nothing listens on port {port} after {seconds} s")


def _mcp_http_server(tmp_path, make_index):
    import os
    import subprocess

    index = make_index(out=tmp_path / "mcp-index")
    port = free_port()
    code = HTTP_SERVER.format(index=str(index), port=port)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}  # the fake embedder lives in conftest
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _wait_port(proc, port)
    return proc, f"http://127.0.0.1:{port}/mcp"


async def _keyed_session(url, headers, calls, concurrent=False):
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        tools = await client.list_tools()
        if concurrent:
            results = await asyncio.gather(*(client.call_tool(name, args) for name, args in calls))
        else:
            results = [await client.call_tool(name, args) for name, args in calls]
        return tools, results


def test_mcp_over_http_needs_a_key_for_everything(tmp_path, make_index):
    import urllib.error
    import urllib.request

    proc, url = _mcp_http_server(tmp_path, make_index)
    try:
        init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}).encode()
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "k-one-"}):
            request = urllib.request.Request(
                url, init, {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                            **headers}, method="POST")  # fmt: skip
            try:
                urllib.request.urlopen(request, timeout=10)
                raise AssertionError("answered without a valid key")
            except urllib.error.HTTPError as exc:
                assert exc.code == 401
                assert json.loads(exc.read())["error"]["code"] == "unauthorized"
        # The real client, with either header, gets the tools.
        for headers in ({"Authorization": "Bearer k-one"}, {"X-API-Key": "k-two"}):
            tools, (search,) = asyncio.run(
                _keyed_session(url, headers, [("search_faq", {"query": "créer mon compte"})])
            )
            assert {t.name for t in tools.tools} == {"search_faq", "get_faq_entry", "send_feedback"}
            assert _payload(search)["results"][0]["faq_id"] == "compte"
    finally:
        _stop(proc)


def test_mcp_over_http_keeps_the_rate_limit_the_token_budget_and_the_slots(tmp_path, make_index):
    proc, url = _mcp_http_server(tmp_path, make_index)
    key = {"Authorization": "Bearer k-one"}
    try:
        # One search slot, 0.3 s to get it: of two slow searches at once, one waits too long.
        _, (a, b) = asyncio.run(
            _keyed_session(
                url, key, [("search_faq", {"query": "lent compte"}), ("search_faq", {"query": "lent"})], concurrent=True
            )  # fmt: skip
        )
        assert sorted([a.is_error, b.is_error]) == [False, True]
        assert "search_timeout" in (a if a.is_error else b).content[0].text
        # 200 tokens a request: a long query is refused before it is encoded.
        _, (long,) = asyncio.run(_keyed_session(url, key, [("search_faq", {"query": "facture " * 90})]))
        assert long.is_error and "too_many_tokens" in long.content[0].text
        # 10 tool calls a minute for this key (3 spent above, counting the refused ones): 7 more, then refused.
        calls = [("search_faq", {"query": "mot de passe"})] * 9
        _, results = asyncio.run(_keyed_session(url, key, calls))
        assert [r.is_error for r in results] == [False] * 7 + [True] * 2
        assert "rate_limited" in results[-1].content[0].text
        # Another key is another client.
        _, (other,) = asyncio.run(_keyed_session(url, {"X-API-Key": "k-two"}, calls[:1]))
        assert not other.is_error
    finally:
        _stop(proc)


def test_mcp_over_http_refuses_a_public_address_without_keys():
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "FAQ_API_KEYS"}
    done = subprocess.run(
        [sys.executable, "-m", "service.mcp", "--url", "http://127.0.0.1:9", "--transport", "streamable-http",
         "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "without API keys" in done.stderr

"""The MCP server, checked with the official SDK's own client: in-process, and as `python -m service.mcp` over
stdio calling a running service."""

from __future__ import annotations

import asyncio
import json
import sys

from conftest import ROOT, free_port
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from service.integrations.mcp import EngineBackend, build_server


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
    tools, _ = asyncio.run(_session(build_server(EngineBackend(engine)), []))
    by_name = {t.name: t for t in tools.tools}
    assert set(by_name) == {"search_faq", "get_faq_entry", "send_feedback"}
    description = by_name["search_faq"].description
    assert "answered" in description and "results[0]" in description and "get_faq_entry" in description
    assert set(by_name["search_faq"].input_schema["properties"]) == {"query", "top_k"}
    assert by_name["search_faq"].input_schema["required"] == ["query"]
    top_k = by_name["search_faq"].input_schema["properties"]["top_k"]
    assert (top_k["minimum"], top_k["maximum"], top_k["default"]) == (1, 50, 5)


def test_search_and_entry_tools_answer_from_the_engine(engine):
    _, (search, entry, empty, missing, bad_k) = asyncio.run(
        _session(
            build_server(EngineBackend(engine)),
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
    assert bad_k.is_error and "top_k" in bad_k.content[0].text and "50" in bad_k.content[0].text
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
    import socket
    import subprocess
    import time

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.mcp", "--url", live_url, "--transport", "streamable-http", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                time.sleep(0.2)
        tools, (search,) = asyncio.run(
            _session(f"http://127.0.0.1:{port}/mcp", [("search_faq", {"query": "créer mon compte"})])
        )
        assert {t.name for t in tools.tools} == {"search_faq", "get_faq_entry", "send_feedback"}
        assert _payload(search)["results"][0]["faq_id"] == "compte"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stderr.close()


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

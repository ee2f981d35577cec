"""docs/integration.md's function-calling loop runs as written, and its tools say what the MCP server's say."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re

import pytest
from conftest import ROOT, service_for, serving

from service.http.app import create_app
from service.integrations.client import FaqSearchClient
from service.integrations.mcp import ServiceBackend, build_server
from service.integrations.tools import call_tool, function_tools, service_tools


def _loop_block() -> str:
    text = (ROOT / "docs" / "integration.md").read_text(encoding="utf-8")
    start = text.index("**OpenAI-style function calling**")
    return re.search(r"```python\n(.*?)```", text[start:], flags=re.DOTALL).group(1)


@pytest.mark.slow
def test_the_tool_calling_loop_of_the_docs_answers_from_the_faq(real_engine):
    with serving(create_app({"TESTING": True}, engine=real_engine)) as url:
        code = _loop_block().replace("http://127.0.0.1:8000", url)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, "docs/integration.md", "exec"), {"__name__": "docs_example"})  # noqa: S102
    out = printed.getvalue()
    assert out.startswith("D'après la FAQ") and "activation" in out, out


def test_the_function_tools_are_the_mcp_tools(engine):
    async def listing():
        from mcp import Client

        async with Client(build_server(ServiceBackend(service_for(engine)))) as client:
            return (await client.list_tools()).tools

    mcp_tools = {t.name: t for t in asyncio.run(listing())}
    tools = {t["function"]["name"]: t["function"] for t in function_tools(engine.index.identity)}
    assert set(tools) == set(mcp_tools)
    for name, tool in tools.items():
        assert tool["description"] == mcp_tools[name].description, name
        assert set(tool["parameters"]["properties"]) == set(mcp_tools[name].input_schema["properties"]), name


def test_call_tool_answers_errors_as_json_and_refuses_unknown_tools(live_url):
    client = FaqSearchClient(live_url)
    assert [t["function"]["name"] for t in service_tools(client)] == ["search_faq", "get_faq_entry", "send_feedback"]
    assert call_tool(client, "search_faq", {"query": "créer mon compte", "top_k": 1})["results"][0]["faq_id"]
    assert call_tool(client, "get_faq_entry", {"faq_id": "nope"})["error"]["code"] == "faq_not_found"
    assert call_tool(client, "search_faq", {})["error"]["code"] == "invalid_request"
    with pytest.raises(ValueError, match="no tool named"):
        call_tool(client, "delete_everything", {})

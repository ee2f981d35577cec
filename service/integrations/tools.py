"""What an assistant is told about the service's tools, the same for every way it calls them: the MCP server's
tools (``mcp.py``) and OpenAI-style function calling (``function_tools`` and ``call_tool``, over the Python client):
when to call, and what to do when ``answered`` is false (hand over to the FAQ's support). No MCP SDK here.
"""

from __future__ import annotations

from typing import Any

from ..core.models import MAX_TOP_K
from ..corpus import FaqIdentity
from .client import FaqSearchClient

SEARCH_DESCRIPTION = (
    "Search {faq} ({language}) for the entries that answer a user's question. Use it "
    "whenever the user asks how to do something, or about a problem, that the FAQ may cover; pass the user's "
    "question as they wrote it, in {language}, typos included. The result lists entries best first, each with its "
    "question, the passage of its answer that matched, and a calibrated score (0 to 1). If `answered` is true and "
    "results[0]'s text addresses what the user asked, answer from it (quote or paraphrase its text, and name its "
    "question); `answered` true is not a guarantee (some questions the FAQ does not cover get through), so if the "
    "text does not address the question, treat it as false. If it is false, the FAQ does "
    "not answer this question (`reason.code` says why: no_close_entry, ambiguous, not_covered with the words "
    "the nearest entry lacks in `reason.terms`, known_non_answer, or too_vague: ask what exactly): do not "
    "present results[0] as the answer "
    "and do not make one up; "
    "say the FAQ does not cover it and hand over to a human ({support}), offering the results "
    "only as possibly related entries. Call get_faq_entry for an entry's full text."
)
#: Language names for the tool description (other tags are named as they are).
LANGUAGES = {"fr": "French", "en": "English", "de": "German", "es": "Spanish", "it": "Italian", "nl": "Dutch"}
ENTRY_DESCRIPTION = (
    "The whole text of one FAQ entry (question, full answer, its passages), by the `faq_id` a "
    "search_faq result gave. Use it when a passage is not enough to answer."
)


def search_description(identity: FaqIdentity) -> str:
    """The ``search_faq`` tool's description, naming the FAQ and where to hand over when it has no answer."""
    faq = f"the official FAQ of {identity.name}" if identity.name else "the organisation's official FAQ"
    support = identity.support or "the organisation's support"
    language = LANGUAGES.get(identity.language.split("-")[0].lower(), f"language {identity.language}")
    return SEARCH_DESCRIPTION.format(faq=faq, support=support, language=language)


FEEDBACK_DESCRIPTION = (
    "Tell the FAQ's owner whether an entry returned by search_faq helped the user: pass that search's `request_id`, "
    "the entry's `faq_id`, and helpful=false when the user says it did not answer their question (or true when it "
    "did). Only call it on the user's own judgement, once per entry. Entries found unhelpful go to the owner's "
    "review queue."
)


FILTER_DESCRIPTION = (
    'Only entries that match: {"tags": ["…"]} (any of these tags), {"tags": {"all": […]}}, or a field the entries '
    'declare, {"audience": "…"}. Omit it unless the user said which kind of entry.'
)


def function_tools(identity: FaqIdentity) -> list[dict[str, Any]]:
    """The OpenAI-style tools (``{"type": "function", "function": {…}}``) of a FAQ: ``search_faq``, ``get_faq_entry``
    and ``send_feedback``, described as the MCP server describes them."""

    def tool(name: str, description: str, properties: dict, required: list[str]) -> dict[str, Any]:
        parameters = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
        return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}

    return [
        tool("search_faq", search_description(identity), {
            "query": {"type": "string", "description": "The user's question as they wrote it (typos included)."},
            "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K, "default": 5,
                      "description": "How many FAQ entries to return."},
            "filter": {"type": "object", "description": FILTER_DESCRIPTION},
        }, ["query"]),
        tool("get_faq_entry", ENTRY_DESCRIPTION, {"faq_id": {"type": "string"}}, ["faq_id"]),
        tool("send_feedback", FEEDBACK_DESCRIPTION, {
            "request_id": {"type": "string", "description": "The `request_id` of the search_faq result."},
            "faq_id": {"type": "string", "description": "The entry judged (a result's `faq_id`)."},
            "helpful": {"type": "boolean", "description": "Whether it answered the user's question."},
        }, ["request_id", "faq_id", "helpful"]),
    ]  # fmt: skip


def service_tools(client: FaqSearchClient) -> list[dict[str, Any]]:
    """``function_tools`` of the FAQ a running service serves (its identity from ``/health``)."""
    return function_tools(FaqIdentity.from_dict(client.health()["index"].get("faq") or {}))


def call_tool(client: FaqSearchClient, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Run a tool call the model asked for against the service; its JSON answer, or the error's (``{"error": …}``:
    the model reads it as it reads an answer).

    Raises:
        ValueError: a tool this service does not have.
    """
    from .client import FaqSearchError

    try:
        if name == "search_faq":
            return client.search_body(
                arguments["query"], top_k=arguments.get("top_k", 5), filter=arguments.get("filter")
            )
        if name == "get_faq_entry":
            return client.entry(arguments["faq_id"])
        if name == "send_feedback":
            return client.send_feedback(arguments["request_id"], arguments["faq_id"], arguments["helpful"])
    except FaqSearchError as exc:
        return {"error": {"code": exc.code, "message": exc.message}}
    except (KeyError, TypeError) as exc:
        return {"error": {"code": "invalid_request", "message": f"missing or wrong argument: {exc}"}}
    raise ValueError(f"no tool named {name!r}: search_faq, get_faq_entry or send_feedback")

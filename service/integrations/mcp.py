"""MCP server for LLM assistants: the ``search_faq``, ``get_faq_entry`` and ``send_feedback`` tools, over stdio or
streamable HTTP; an adapter over the ``FaqService`` of this process (``ServiceBackend``), or over a running
service's HTTP API (``HttpBackend``).

    python -m service.mcp                                  # stdio, loads the model and index in-process
    python -m service.mcp --url http://127.0.0.1:8000      # stdio, calls a running service instead
    python -m service.mcp --transport streamable-http --port 8001

The tools return the HTTP API's JSON (docs/api.md), so an assistant reads the same fields a program does.
``send_feedback`` needs a query log: the service's (``--url``), or ``FAQ_QUERY_LOG`` when loading in-process.

Over HTTP the server keeps the HTTP API's rules: with ``FAQ_API_KEYS`` every request needs a key (a bearer or
``X-API-Key``; 401 otherwise, initialize and tools/list included), ``FAQ_RATE_LIMIT`` counts each client's tool
calls, and in-process searches go through the same token budget and search slots (``search.admission``). It
refuses to listen on an address other than loopback without keys.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import ipaddress
import json
import logging
import re
import sys
import time
from dataclasses import dataclass, replace
from typing import Annotated, Any, Protocol

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from ..access import RateLimit, client_identity, valid_key
from ..core.catalog import FaqCatalog
from ..core.faq_config import FaqConfigError
from ..core.faq_service import FaqService
from ..core.models import MAX_TOP_K, FeedbackRequest, parse_body, parse_search
from ..corpus import FaqIdentity
from ..errors import ServiceError, error_body
from ..search.lexical import fold
from ..settings import Settings, SettingsError, unknown_variable_warnings
from .client import FaqSearchClient, FaqSearchError
from .tools import (
    ENTRY_DESCRIPTION,
    FEEDBACK_DESCRIPTION,
    FILTER_DESCRIPTION,
    LANGUAGES,
    SEARCH_DESCRIPTION,
    search_description,
)


def server_name(identity: FaqIdentity) -> str:
    """``faq-<name>`` in lower-case ASCII words joined by dashes (``faq-chorus-pro``), else ``faq-search``."""
    words = re.findall(r"[a-z0-9]+", fold(identity.name or ""))
    return "faq-" + "-".join(words) if words else "faq-search"


@dataclass(frozen=True)
class Search:
    """One search_faq call: the query, how many entries, who called (``access.client_identity``, for the query log)
    and when (``time.monotonic()``: the wait for a thread counts in ``FAQ_SEARCH_TIMEOUT``), which FAQ (None: the
    default; ``"*"``: all of them) and the FAQs the caller's key may use (None: all)."""

    query: str
    top_k: int = 5
    client: str | None = None
    arrived: float | None = None
    faq: str | None = None
    allowed: frozenset[str] | None = None
    filter: dict | None = None


class Backend(Protocol):
    """Where the tools get their answers: the engine in this process, or a running service. ``client`` is who
    called (``access.client_identity``), for the query log; ``faq`` a FAQ's name (None: the default FAQ; ``"*"``
    for a search: all of them)."""

    def search(self, call: Search) -> dict: ...

    def entry(self, faq_id: str, faq: str | None = None) -> dict: ...

    def feedback(
        self, request_id: str, faq_id: str, helpful: bool, client: str | None = None, faq: str | None = None
    ) -> dict: ...

    def identity(self) -> FaqIdentity: ...

    def faqs(self) -> list[tuple[str, FaqIdentity]]: ...


#: The search tool's filter argument.
Filter = Annotated[dict[str, Any] | None, Field(description=FILTER_DESCRIPTION)]
#: The tools' query argument.
Query = Annotated[str, Field(description="The user's question as they wrote it (typos included).")]
#: The bounds are the schema's only: the tools check them, so that a value out of them gets the stable code.
TopK = Annotated[
    int, Field(json_schema_extra={"minimum": 1, "maximum": MAX_TOP_K}, description="How many FAQ entries to return.")
]

FAQ_ARGUMENT = (
    'Which FAQ to search: {choices}. Pick the one whose subject matches the question; "*" searches them all '
    "and the result's `faq` says which one answered. Default: {default}."
)


def several_instructions(faqs: list[tuple[str, FaqIdentity]]) -> str:
    """The server's instructions when it serves several FAQs."""
    return (
        f"This server answers from the official FAQs of one service: {faq_choices(faqs)}. Choose the FAQ a question "
        'is about (search_faq\'s `faq`), or search them all with "*".'
    )


def faq_choices(faqs: list[tuple[str, FaqIdentity]]) -> str:
    """The FAQs an assistant can route to, each with what it is: ``"mairie" (Mairie de …, French; e.g. "…")``."""
    out = []
    for name, identity in faqs:
        language = LANGUAGES.get(identity.language.split("-")[0].lower(), identity.language)
        about = ", ".join(f'"{e}"' for e in identity.examples[:3])
        what = f"{identity.name}, {language}" if identity.name else language
        out.append(f'"{name}" ({what}' + (f"; questions such as {about})" if about else ")"))
    return "; ".join(out)


class ServiceBackend:
    """The FAQs of this process (a ``FaqCatalog``, or one ``FaqService``): the same use cases, rules and limits as
    the HTTP API (the token budget, the search slots, the query log), the MCP server only the adapter."""

    def __init__(self, service: FaqService | FaqCatalog):
        self.catalog = service if isinstance(service, FaqCatalog) else FaqCatalog.of(service)
        self.service = self.catalog.default
        self.gate = self.catalog.gate

    def search(self, call: Search) -> dict:
        """One search, in one FAQ or across those the caller may use ("*")."""
        asked = {
            "query": call.query,
            "top_k": call.top_k,
            **({"filter": call.filter} if call.filter is not None else {}),
        }
        request = parse_search(asked, self.catalog.settings.max_query_chars)
        if call.faq == "*":
            return self.catalog.search_across(request, ["*"], client=call.client, arrived=call.arrived,
                                              allowed=call.allowed)  # fmt: skip
        return self.catalog.get(call.faq).search(request, client=call.client, arrived=call.arrived)

    def feedback(
        self, request_id: str, faq_id: str, helpful: bool, client: str | None = None, faq: str | None = None
    ) -> dict:
        service = self.catalog.get(faq)
        service.needs_query_log(
            "feedback is off: no query log (or use --url with a service that keeps one)", "feedback_disabled"
        )
        request = parse_body(FeedbackRequest, {"request_id": request_id, "faq_id": faq_id, "helpful": helpful})
        return service.feedback(request, client)

    def entry(self, faq_id: str, faq: str | None = None) -> dict:
        return self.catalog.get(faq).entry(faq_id)

    def identity(self) -> FaqIdentity:
        return self.service.engine.index.identity

    def faqs(self) -> list[tuple[str, FaqIdentity]]:
        return [(name, s.engine.index.identity) for name, s in self.catalog.services.items()]


class HttpBackend:
    """Calls a running service through the Python client."""

    def __init__(self, url: str, timeout: float = 30.0, api_key: str | None = None):
        self.client = FaqSearchClient(url, timeout=timeout, api_key=api_key)
        #: The FAQ a call without one goes to, when the service's default is not among those this key may use.
        self.fallback: str | None = None

    def search(self, call: Search) -> dict:
        call = replace(call, faq=call.faq or self.fallback)
        if call.faq == "*" and call.allowed is not None:  # the FAQs this caller may use, of those the service serves
            body = {"query": call.query, "top_k": call.top_k, "faqs": sorted(call.allowed)}
            if call.filter is not None:
                body["filter"] = call.filter
            return self.client.call("POST", "/search", body)
        return self.client.search_body(call.query, top_k=call.top_k, faq=call.faq, filter=call.filter)

    def entry(self, faq_id: str, faq: str | None = None) -> dict:
        return self.client.entry(faq_id, faq=faq or self.fallback)

    def feedback(
        self, request_id: str, faq_id: str, helpful: bool, client: str | None = None, faq: str | None = None
    ) -> dict:
        return self.client.send_feedback(request_id, faq_id, helpful, faq=faq or self.fallback)

    def faqs(self) -> list[tuple[str, FaqIdentity]]:
        """The service's FAQs (``GET /faqs``); one unnamed FAQ if the service cannot say."""
        try:
            listing = self.client.faqs()
            listed = listing["faqs"]
            names = [f["name"] for f in listed]
            self.fallback = names[0] if names and listing.get("default") not in names else None
            return [(f["name"], FaqIdentity.from_dict(f.get("faq") or {})) for f in listed]
        except (FaqSearchError, KeyError, TypeError, ValueError):
            return [("faq", self.identity())]

    def identity(self) -> FaqIdentity:
        """The service's FAQ identity (``/health``); an unnamed one if the service cannot say (it may start later)."""
        try:
            return FaqIdentity.from_dict(self.client.health()["index"].get("faq") or {})
        except (FaqSearchError, KeyError, TypeError, ValueError) as exc:
            logging.getLogger(__name__).warning("FAQ identity unknown (%s): the tools describe a generic FAQ", exc)
            return FaqIdentity()


def _tool_error(exc: Exception) -> ToolError:
    """An error the MCP client shows the model: the service's code and message, nothing internal."""
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc)
    return ToolError(f"{code}: {message}" if code else message)


def _caller(ctx: Context | None, keys: list[str]) -> tuple[str | None, str | None]:
    """Who called a tool and with which valid key: over HTTP, the key (hashed in the identity) or the address; over
    stdio, (None, None)."""
    try:
        request = ctx.request_context.request if ctx is not None else None
    except (AttributeError, ValueError):  # outside a request (a direct call)
        return None, None
    if request is None or not hasattr(request, "headers"):
        return None, None
    key = valid_key(request.headers.get("authorization"), request.headers.get("x-api-key"), keys)
    return client_identity(key, getattr(getattr(request, "client", None), "host", None)), key


def build_server(
    backend: Backend,
    rate_limit: RateLimit | None = None,
    keys: list[str] | None = None,
    scopes: dict[str, frozenset[str] | None] | None = None,
) -> MCPServer:
    """The MCP server with its three tools, answering from ``backend``, named and described after its FAQ (or its
    FAQs: then each tool takes a ``faq`` argument).

    Args:
        rate_limit: each client's tool calls counted against it (``FAQ_RATE_LIMIT``); None: no limit.
        keys: the API keys (``FAQ_API_KEYS``), for telling clients apart; ``AccessGuard`` refuses requests without one.
        scopes: the FAQs each key may use (``Settings.key_scopes``; a key absent or None: all of them).
    """
    faqs = backend.faqs()
    # One FAQ: its identity (with --url and a key limited to one FAQ, that FAQ's, not the service's default).
    identity = faqs[0][1] if len(faqs) == 1 else backend.identity()
    description = search_description(identity)
    # Several FAQs: a server of this service, not of its default FAQ (each tool's `faq` argument names them).
    if len(faqs) == 1:
        server = MCPServer(server_name(identity), instructions=description)
    else:
        server = MCPServer("faq-search", instructions=several_instructions(faqs))
    keys = keys or []
    scopes = scopes or {}

    def admit(ctx: Context | None, faq: str | None = None) -> tuple[str | None, frozenset[str] | None]:
        """The caller and the FAQs it may use; refused when over the rate limit or when its key may not use
        ``faq`` (its name; None: the default FAQ; "*": any)."""
        client, key = _caller(ctx, keys)
        allowed = scopes.get(key) if key else None
        usable = [name for name, _ in faqs if allowed is None or name in allowed]
        if faq is not None and faq != "*" and faq not in usable:
            known = faq in (name for name, _ in faqs)
            raise ToolError(f"{'faq_forbidden' if known else 'unknown_faq'}: this key may not use a FAQ named "
                            f"{faq[:64]!r}; it may use: {', '.join(usable) or 'none'}")  # fmt: skip
        if faq is None and not usable:
            raise ToolError("faq_forbidden: this API key may use none of this server's FAQs")
        if rate_limit is not None:
            wait = rate_limit.hit(client or "local")
            if wait is not None:
                raise ToolError(f"rate_limited: over the limit of {rate_limit.limit}; retry in {wait:g} s")
        return client, allowed

    def default_for(allowed: frozenset[str] | None) -> str | None:
        """The FAQ a call without one goes to: the default, or the first this key may use."""
        if allowed is None or faqs[0][0] in allowed:
            return None
        return next(name for name, _ in faqs if name in allowed)

    threads: dict[str, anyio.CapacityLimiter] = {}

    async def call(function, *args):
        """Run a backend call in one of a few worker threads (the tools block on the encoder and the database), its
        errors as the service's. Calls beyond those threads wait without a thread of their own: 48 concurrent
        searches in 40 threads left each thread's memory arena behind (a worker kept 640 MB more)."""
        if "limiter" not in threads:  # made in the event loop, on first use
            threads["limiter"] = anyio.CapacityLimiter(getattr(getattr(backend, "gate", None), "slots", 2) + 2)
        try:
            return await anyio.to_thread.run_sync(functools.partial(function, *args), limiter=threads["limiter"])
        except (ServiceError, FaqSearchError) as exc:
            raise _tool_error(exc) from None

    _tools(server, backend, faqs, admit, call, default_for, description)
    return server


def _tools(server: MCPServer, backend: Backend, faqs, admit, call, default_for, description: str) -> None:
    """The three tools. With several FAQs each takes a ``faq`` argument whose schema lists them, each with what it
    covers (and ``"*"`` for the search); with one, the argument is left out of their schemas."""
    names = [name for name, _ in faqs]
    choices = faq_choices(faqs)
    if len(faqs) > 1:
        description = (
            f"Search the official FAQs of this service ({choices}) for the entries that answer a user's question. "
            + SEARCH_DESCRIPTION.format(faq="the FAQ chosen", language="its language", support="the FAQ's support")
        )

    def check(faq: str | None) -> None:
        if faq == "*":
            raise ToolError("invalid_request: an entry is of one FAQ: name it (the search result's `faq`)")

    async def search_faq(
        query: Query,
        ctx: Context,
        faq: str | None = None,
        top_k: TopK = 5,
        filter: Filter = None,
    ) -> dict[str, Any]:
        arrived = time.monotonic()  # the wait for a thread counts in the search's timeout
        if not 1 <= top_k <= MAX_TOP_K:
            raise ToolError(f"out_of_range: 'top_k' must be an integer from 1 to {MAX_TOP_K}")
        client, allowed = admit(ctx, faq)
        search = Search(query, top_k, client, arrived, faq or default_for(allowed), allowed, filter)
        return await call(backend.search, search)

    async def get_faq_entry(faq_id: str, ctx: Context, faq: str | None = None) -> dict[str, Any]:
        check(faq)
        _, allowed = admit(ctx, faq)
        return await call(backend.entry, faq_id, faq or default_for(allowed))

    async def send_feedback(
        request_id: Annotated[str, Field(description="The `request_id` of the search_faq result.")],
        faq_id: Annotated[str, Field(description="The entry judged (a result's `faq_id`).")],
        helpful: Annotated[bool, Field(description="Whether it answered the user's question.")],
        ctx: Context,
        faq: str | None = None,
    ) -> dict[str, Any]:
        check(faq)
        client, allowed = admit(ctx, faq)
        return await call(backend.feedback, request_id, faq_id, helpful, client, faq or default_for(allowed))

    # null is in each enum: the argument is optional, and a client may send it as null.
    faq_arg = Field(json_schema_extra={"enum": [*names, "*", None]},
                    description=FAQ_ARGUMENT.format(choices=choices, default=names[0]))  # fmt: skip
    one_faq = Field(json_schema_extra={"enum": [*names, None]}, description=f"The FAQ of the entry ({choices}): the "
                    f"result's `faq` when the search was across FAQs (default: {names[0]}).")  # fmt: skip
    for tool, field, text in ((search_faq, faq_arg, description), (get_faq_entry, one_faq, ENTRY_DESCRIPTION),
                              (send_feedback, one_faq, FEEDBACK_DESCRIPTION)):  # fmt: skip
        if len(faqs) > 1:
            # The argument's schema is made here (its names are the service's): set before the SDK reads the
            # signature (this module's annotations are strings, evaluated where these local values are not seen).
            tool.__annotations__["faq"] = Annotated[str | None, field]
        else:  # one FAQ: no `faq` argument to offer (a call without it goes to that FAQ)
            signature = inspect.signature(tool, eval_str=True)  # (the SDK reads these annotations as they are)
            tool.__signature__ = signature.replace(parameters=[p for p in signature.parameters.values()
                                                               if p.name != "faq"])  # fmt: skip
            del tool.__annotations__["faq"]
        server.tool(name=tool.__name__, description=text)(tool)


class AccessGuard:
    """ASGI middleware of the MCP server over HTTP: with API keys configured, every request needs one (a bearer or
    ``X-API-Key``, compared in constant time), else 401 in the service's JSON error shape."""

    def __init__(self, app, keys: list[str]):
        self.app, self.keys = app, keys

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.keys:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            if valid_key(headers.get("authorization"), headers.get("x-api-key"), self.keys) is None:
                body = json.dumps(
                    error_body(
                        401,
                        "unauthorized",
                        "this server needs an API key: `Authorization: Bearer <key>` or `X-API-Key`",
                    )  # fmt: skip
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b'Bearer realm="faq-search"'),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve_http(server: MCPServer, host: str, port: int, keys: list[str]) -> None:
    """Serve the MCP server over streamable HTTP, behind ``AccessGuard``, with uvicorn."""
    import anyio
    import uvicorn

    app = AccessGuard(server.streamable_http_app(host=host), keys)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    print(
        f"MCP server {server.name} on http://{host}:{port}/mcp (API keys: {'required' if keys else 'none'})",
        file=sys.stderr,
        flush=True,
    )
    anyio.run(uvicorn.Server(config).serve)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=sys.argv[0] if sys.argv[0].startswith("faq-search") else "python -m service.mcp",
        description=__doc__.replace("``", "`"),  # the reST of the docstring, as a terminal shows it
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", help="call the service running at this URL instead of loading the model here")
    parser.add_argument("--api-key", help="with --url: the service's API key, if it requires one (env FAQ_API_KEY)")
    parser.add_argument("--index", help="index directory when loading in-process (env FAQ_INDEX, default index/)")
    parser.add_argument("--model", help="model when loading in-process (env FAQ_MODEL)")
    parser.add_argument(
        "--config", help="in-process: a TOML file of several FAQs to serve (env FAQ_CONFIG; docs/faqs.md)"
    )
    parser.add_argument(
        "--faq", action="append", default=[], metavar="NAME=INDEX_DIR",
        help="in-process: serve this index as the FAQ NAME (repeat for several; env FAQ_FAQS)",
    )  # fmt: skip
    parser.add_argument(
        "--transport",
        choices=("stdio", "streamable-http"),
        default="stdio",
        help="stdio (default, for a local MCP client) or streamable-http",
    )
    parser.add_argument("--host", default="127.0.0.1", help="streamable-http: address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="streamable-http: port (default 8001)")
    args = parser.parse_args(argv)
    # stdout carries the protocol on stdio: every log line goes to stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env(
            index=args.index, model=args.model, config=args.config, faqs=",".join(args.faq) or None
        )
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in unknown_variable_warnings():
        print(line, file=sys.stderr)
    keys = settings.key_list()
    if args.transport == "streamable-http" and not keys and not _loopback(args.host):
        print(
            f"error: refusing to serve MCP on {args.host} without API keys: anyone who reaches it could search and "
            "send feedback. Set FAQ_API_KEYS, or listen on 127.0.0.1 behind your own proxy",
            file=sys.stderr,
        )
        return 2
    rate_limit = None
    try:
        if settings.rate_limit:
            rate_limit = RateLimit(settings.rate_limit, settings.rate_limit_storage)
    except ValueError as exc:
        print(f"error: FAQ_RATE_LIMIT: {exc}", file=sys.stderr)
        return 2
    if args.url:
        backend: Backend = HttpBackend(args.url, api_key=args.api_key or settings.api_key)
    else:
        try:
            catalog = FaqCatalog(settings)  # the FAQs of FAQ_CONFIG / FAQ_FAQS, else the one of FAQ_INDEX
        except FaqConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        failed = [s for s in catalog.services.values() if s.current_engine is None]
        if failed:
            print(f"error: {failed[0].failure.message}", file=sys.stderr)
            return 2
        import atexit

        atexit.register(catalog.close)  # what the query logs hold is written before the server exits
        backend = ServiceBackend(catalog)
    server = build_server(backend, rate_limit, keys, settings.key_scopes())
    if args.transport == "stdio":
        server.run("stdio")
    else:
        serve_http(server, args.host, args.port, keys)
    return 0


if __name__ == "__main__":
    sys.exit(main())

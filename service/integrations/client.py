"""A small Python client for the service, with typed results and typed errors. Standard library only.

from service.integrations.client import FaqSearchClient, InvalidRequestError
client = FaqSearchClient("http://127.0.0.1:8000")
response = client.search("pas reçu le mail d'activation", top_k=3)
if response.answered:
    print(response.results[0].question, response.results[0].text)
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any


class FaqSearchError(Exception):
    """An error answered by the service (its stable ``code``), or no answer at all (``status`` 0)."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, retry_after: float | None = None
    ):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.field = status, code, message, field
        #: Seconds the service asks to wait before trying again (its ``Retry-After``), when it says so.
        self.retry_after = retry_after


class InvalidRequestError(FaqSearchError):
    """400 (and any other 4xx without a class of its own: 405, 408, 414, 415…): the request is wrong
    (``empty_query``, ``out_of_range``, ``unknown_field``…); do not retry as is."""


class NotFoundError(FaqSearchError):
    """404: no such FAQ entry (``faq_not_found``) or path."""


class PayloadTooLargeError(FaqSearchError):
    """413: the body is over the service's limit, or its queries over its token budget (``too_many_tokens``)."""


class UnauthorizedError(FaqSearchError):
    """401 ``unauthorized``: the service requires an API key (or the admin token) and got none or a wrong one."""


class ForbiddenError(FaqSearchError):
    """403 ``admin_disabled``: the admin endpoints are off (no ``FAQ_ADMIN_TOKEN`` on the service)."""


class RateLimitedError(FaqSearchError):
    """429 ``rate_limited``: too many requests from this client; retry after ``retry_after`` seconds."""


class ConflictError(FaqSearchError):
    """409: the request does not fit the current state (a review listed before the index changed, …)."""


class ServiceUnavailableError(FaqSearchError):
    """503: no usable index or model (``index_unavailable``, ``index_model_mismatch``, ``model_unavailable``), or
    busy (``search_timeout``: retry after ``retry_after`` seconds)."""


class ServerError(FaqSearchError):
    """500 or another unexpected status."""


class ConnectionFailedError(FaqSearchError):
    """The service could not be reached or did not answer in time (``status`` 0, ``code`` ``connection_failed``)."""


#: The exception of each HTTP status the service answers with (its codes, with theirs, are in docs/api.md's
#: "Errors", made from ``service.errors.ErrorCode``); another 4xx is an ``InvalidRequestError``, another 5xx a
#: ``ServerError``. The code itself is kept on the exception (``.code``).
_BY_STATUS = {
    400: InvalidRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: RateLimitedError,
    503: ServiceUnavailableError,
}


def error_class(status: int) -> type[FaqSearchError]:
    """The exception for an answer of this HTTP status."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return InvalidRequestError if 400 <= status < 500 else ServerError if status >= 500 else FaqSearchError


def error_from_body(status: int, body: dict, retry_after: float | None = None) -> FaqSearchError:
    """The typed error for an error body ``{"error": {...}}`` of the service, by its status, with its code."""
    err = body.get("error", {}) if isinstance(body, dict) else {}
    code = err.get("code", "unknown")
    cls = error_class(status)
    return cls(status, code, err.get("message", ""), err.get("field"), retry_after)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: not sent by this service
        return None


@dataclass(frozen=True)
class Match:
    """Why an entry matched (docs/api.md)."""

    by: str
    matched_question: str
    question_similarity: float
    passage_similarity: float
    lexical_score: float
    terms: list[str]


# These mirror the API's JSON (documented in /openapi.json), not the engine's classes: the client needs only the
# standard library, so it can be copied into another project.
@dataclass(frozen=True)
class Result:
    """One FAQ entry of a result list."""

    rank: int
    score: float
    faq_id: str
    passage_id: str
    question: str
    text: str
    section: str | None
    match: Match
    #: The FAQ of the entry (a search across FAQs).
    faq: str | None = None
    #: Where to go further: ``[{"label", "url"}, …]`` (http and https only).
    links: list = field(default_factory=list)
    #: What to show of ``text``: ``[{"start", "end", "kind": "sentence"|"term"[, "term"]}, …]``.
    highlights: list = field(default_factory=list)


@dataclass(frozen=True)
class SearchResponse:
    """A search's answer: ``answered`` says whether ``results[0]`` can be shown as the answer."""

    query: str
    answered: bool
    min_score: float
    results: list[Result]
    index_id: str
    model: str
    took_ms: float
    #: Why ``answered`` is false (``{"code", "message", "terms", "confidence"}``); None when it is true.
    reason: dict | None = None
    #: The search's request id: ``FaqSearchClient.send_feedback`` takes it.
    request_id: str | None = None
    #: A search across FAQs: the FAQ whose first result leads (``answered`` is its).
    faq: str | None = None
    #: A search across FAQs: the FAQs searched, and those named that have no index loaded (left out).
    faqs: list[str] | None = None
    unavailable: list[str] | None = None

    @classmethod
    def from_dict(cls, body: dict) -> SearchResponse:
        """Parse the JSON of a search response."""
        results = [Result(**{**r, "match": Match(**r["match"])}) for r in body["results"]]
        return cls(
            body["query"],
            body["answered"],
            body["min_score"],
            results,
            body["index"]["id"],
            body["index"]["model"],
            body["took_ms"],
            body.get("reason"),
            body.get("request_id"),
            body.get("faq"),
            body.get("faqs"),
            body.get("unavailable"),
        )


class FaqSearchClient:
    """Calls a running service.

    Args:
        url: the service's base URL, e.g. ``http://127.0.0.1:8000``.
        timeout: seconds to wait for each answer.
        api_key: sent as ``Authorization: Bearer …`` when the service requires keys (``FAQ_API_KEYS``).
    """

    def __init__(self, url: str, timeout: float = 10.0, api_key: str | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.api_key = api_key

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        """One request to the service; the decoded JSON answer, or the typed error it maps to."""
        data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read())
            except ValueError:
                payload = {}
            raise error_from_body(exc.code, payload, _seconds(exc.headers.get("Retry-After"))) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConnectionFailedError(0, "connection_failed", f"cannot reach {self.url}: {reason}") from None

    @staticmethod
    def path(route: str, faq: str | None = None) -> str:
        """A FAQ's route: ``/faqs/<faq>/search`` for ``faq``, else the default FAQ's ``/search``."""
        return f"/faqs/{urllib.parse.quote(faq, safe='')}{route}" if faq else route

    def search_body(
        self,
        query: str,
        top_k: int = 5,
        min_score: float | None = None,
        faq: str | None = None,
        filter: dict | None = None,
    ) -> dict:
        """A search's JSON answer (``search`` parses it); ``faq``: a FAQ's name, or ``"*"`` for all of them."""
        body: dict = {"query": query, "top_k": top_k}
        if min_score is not None:
            body["min_score"] = min_score
        if filter is not None:
            body["filter"] = filter
        if faq == "*":
            return self.call("POST", "/search", {**body, "faqs": ["*"]})
        return self.call("POST", self.path("/search", faq), body)

    def search(self, query: str, **options: Any) -> SearchResponse:
        """The ``top_k`` best entries for ``query``; ``options`` as ``search_body`` takes them (``top_k``,
        ``min_score``, ``faq``, ``filter``).

        Args:
            faq: the FAQ to search, by name, in a service of several (``faqs()`` lists them); ``"*"``: all of them,
                each result naming its FAQ in ``faq``. None: the service's default FAQ.
            filter: only the entries that match (``{"tags": ["compte"]}``, ``{"audience": "acheteur"}``; docs/api.md).
        Raises:
            InvalidRequestError, NotFoundError (``unknown_faq``), ServiceUnavailableError, ServerError,
            ConnectionFailedError, …
        """
        return SearchResponse.from_dict(self.search_body(query, **options))

    def faqs(self) -> dict:
        """The FAQs of the service (``GET /faqs``): each one's ``name``, identity (``faq``), entries and index."""
        return self.call("GET", "/faqs")

    def search_batch(self, queries: list[str | dict], faq: str | None = None) -> list[SearchResponse | FaqSearchError]:
        """Up to 64 searches in one request; a query the service refuses comes back as its error, in its place.

        Args:
            faq: the FAQ to search, by name; ``"*"``: each query across all of them; None: the default FAQ.
        """
        if faq == "*":  # each query across every FAQ, in the default FAQ's batch route
            queries = [{"query": q, "faqs": ["*"]} if isinstance(q, str) else {**q, "faqs": ["*"]} for q in queries]
            faq = None
        out: list[SearchResponse | FaqSearchError] = []
        for item in self.call("POST", self.path("/search/batch", faq), {"queries": queries})["results"]:
            out.append(
                error_from_body(item["error"]["status"], item) if "error" in item else SearchResponse.from_dict(item)
            )
        return out

    def entry(self, faq_id: str, faq: str | None = None) -> dict:
        """The whole FAQ entry with its passages (of the FAQ ``faq``, else the default one).

        Raises:
            NotFoundError: no entry has this id.
        """
        return self.call("GET", self.path("/faq/" + urllib.parse.quote(faq_id, safe=""), faq))

    def send_feedback(self, request_id: str, faq_id: str, helpful: bool, faq: str | None = None) -> dict:
        """Say whether the entry ``faq_id`` of the search ``request_id`` (``SearchResponse.request_id``) helped.

        Raises:
            NotFoundError: no such search in the service's log (``unknown_request``) or no such entry
                (``unknown_entry``). FaqSearchError with code ``feedback_disabled``: the service keeps no query log.
        """
        body = {"request_id": request_id, "faq_id": faq_id, "helpful": helpful}
        return self.call("POST", self.path("/feedback", faq), body)

    def health(self) -> dict:
        """The service's ``/health`` answer."""
        return self.call("GET", "/health")

"""The service's error vocabulary: ``ErrorCode`` lists every code an answer can carry, with its HTTP status and what
it means; each exception class stands for a kind of error and carries a code. Routes raise them, one handler renders
them all in one JSON shape (``error_body``), the OpenAPI document lists the codes each route can return, and
docs/api.md's table is ``markdown_table()`` (``tests/test_errors.py`` checks both). The Python client, which must
stay standard-library only, maps the HTTP status to its exceptions and keeps the code.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

#: An absolute file path inside a message (``/srv/faq/index/builds/2026…``).
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/])/(?:[^\s/'\"`:,;()]+/)*([^\s/'\"`:,;()]+)")


class ErrorCode(StrEnum):
    """Every stable code of an error answer: its HTTP status (0: the status the HTTP layer chose) and its meaning."""

    status: int
    meaning: str

    def __new__(cls, code: str, status: int, meaning: str) -> ErrorCode:
        member = str.__new__(cls, code)
        member._value_ = code
        member.status = status
        member.meaning = meaning
        return member

    INVALID_JSON = ("invalid_json", 400, "body is not valid JSON (or not UTF-8, or uses NaN/Infinity)")
    INVALID_BODY = ("invalid_body", 400, "body is JSON but not an object")
    MISSING_QUERY = ("missing_query", 400, "no `query` (or no `q` in a GET)")
    EMPTY_QUERY = ("empty_query", 400, "`query` is empty or only whitespace")
    QUERY_TOO_LONG = ("query_too_long", 400, "`query` longer than `FAQ_MAX_QUERY_CHARS` (1000)")
    INVALID_TYPE = ("invalid_type", 400, 'a field has the wrong type (`top_k: "5"`, `top_k: 2.5`, `query: 42`, …)')
    OUT_OF_RANGE = (
        "out_of_range",
        400,
        "`top_k` outside 1..50, `min_score` outside 0..1, or another number out of its range",
    )
    UNKNOWN_FIELD = ("unknown_field", 400, "a field or GET parameter the API does not know")
    INVALID_FILTER = (
        "invalid_filter",
        400,
        '`filter` is not an object of fields and values (`{"tags": ["…"]}`, `{"audience": "…"}`; docs/api.md)',
    )
    UNKNOWN_FILTER_FIELD = (
        "unknown_filter_field",
        400,
        "`filter` names a field no entry of the FAQ has (the message lists those it has)",
    )
    MISSING_QUERIES = ("missing_queries", 400, "`POST /search/batch` without `queries`")
    INVALID_REQUEST = ("invalid_request", 400, "a field is invalid in another way (the message says how)")
    MISSING_FIELD = (
        "missing_field",
        400,
        "`POST /feedback` or a review action without one of its required fields (`field` names it)",
    )
    BAD_REQUEST = ("bad_request", 400, "a request the HTTP layer itself refuses (malformed)")
    INVALID_REVIEW_ACTION = (
        "invalid_review_action",
        400,
        "a review decision that would make a line the reviewed file's reader refuses: nothing is written",
    )
    INVALID_ENTRY = (
        "invalid_entry",
        400,
        "an entry sent to `/admin/entries` that the corpus reader would refuse (the message says which and why): "
        "nothing is written",
    )
    INVALID_SYNONYMS = (
        "invalid_synonyms",
        400,
        "a synonym list the corpus reader would refuse (a group of one phrase, a cycle of one-way expansions, a "
        "phrase over 100 characters or of stopwords only…): nothing is written",
    )
    ID_MISMATCH = ("id_mismatch", 400, "`PUT /admin/entries/<id>` with a body whose `id` is another")
    INVALID_IF_MATCH = ("invalid_if_match", 400, "`If-Match` that is neither a corpus checksum (64 hex digits) nor `*`")
    UNAUTHORIZED = (
        "unauthorized",
        401,
        "`FAQ_API_KEYS` is set and the search route got no key or a wrong one; or a wrong admin token",
    )
    ADMIN_DISABLED = ("admin_disabled", 403, "`/admin/*` while the service has no `FAQ_ADMIN_TOKEN`")
    FEEDBACK_DISABLED = (
        "feedback_disabled",
        403,
        "`POST /feedback` while the service keeps no query log (`FAQ_QUERY_LOG` unset)",
    )
    QUERY_LOG_DISABLED = (
        "query_log_disabled",
        403,
        "the review queue, the gaps or a change through `/admin/entries` while the service keeps no query log",
    )
    FAQ_FORBIDDEN = (
        "faq_forbidden",
        403,
        "the API key is limited to other FAQs (`FAQ_API_KEYS` as `KEY:faq-a+faq-b`): the message lists the ones it "
        "may use",
    )
    NOT_FOUND = ("not_found", 404, "unknown path")
    FAQ_NOT_FOUND = ("faq_not_found", 404, "`GET /faq/<id>` with an unknown id")
    UNKNOWN_FAQ = (
        "unknown_faq",
        404,
        "a FAQ name this service does not serve (`/faqs/<name>/…`, or in `faqs`): the message lists the names it "
        "serves, and so does `GET /faqs`",
    )
    UNKNOWN_REQUEST = (
        "unknown_request",
        404,
        "feedback for a request id the query log does not hold (never logged, or past the retention)",
    )
    UNKNOWN_ENTRY = (
        "unknown_entry",
        404,
        "feedback naming an entry the search did not return, a review action naming an entry the served index "
        "does not have, or `/admin/entries/<id>` of an entry the corpus does not have",
    )
    UNKNOWN_QUERY = (
        "unknown_query",
        404,
        "a review action naming a query key the log does not hold (purged, or never asked)",
    )
    UNKNOWN_ACTION = ("unknown_action", 404, "reverting a review action that does not exist")
    METHOD_NOT_ALLOWED = ("method_not_allowed", 405, "wrong method (the `Allow` header lists the right ones)")
    REQUEST_TIMEOUT = ("request_timeout", 408, "the request body did not arrive within `FAQ_BODY_TIMEOUT` (10 s)")
    STALE_REVIEW = (
        "stale_review",
        409,
        "a review action sent with the `index_id` of a listing made before the index changed: list again",
    )
    ALREADY_REVIEWED = (
        "already_reviewed",
        409,
        "a review action on a query another action already decided (revert that one first)",
    )
    ALREADY_REVERTED = ("already_reverted", 409, "reverting an action twice")
    CORPUS_MISMATCH = (
        "corpus_mismatch",
        409,
        "a review action while `FAQ_CORPUS` is not the corpus the served index was built from (its decision would "
        "rebuild the index from another corpus)",
    )
    REVIEW_CONFLICT = (
        "review_conflict",
        409,
        "a review action the corpus rules refuse (e.g. an entry's own question as its known non-answer)",
    )
    CORPUS_CHANGED = (
        "corpus_changed",
        409,
        "the corpus file was changed on disk (a hand edit) while a change through `/admin/entries` was being "
        "written: nothing is written; do it again",
    )
    LAST_ENTRY = ("last_entry", 409, "deleting the corpus's last entry (a corpus keeps at least one)")
    CORPUS_INVALID = (
        "corpus_invalid",
        409,
        "a change through `/admin/entries` while the corpus file does not read (a hand edit broke it): fix it first",
    )
    PRECONDITION_FAILED = (
        "precondition_failed",
        412,
        "`If-Match` names another corpus checksum than the corpus's now (it changed since it was read): nothing is "
        "written; read it again",
    )
    PAYLOAD_TOO_LARGE = ("payload_too_large", 413, "body over `FAQ_MAX_BODY_BYTES` (256 KiB)")
    TOO_MANY_TOKENS = (
        "too_many_tokens",
        413,
        "the request's queries would make the encoder read more than `FAQ_MAX_REQUEST_TOKENS` (4096) tokens: a "
        "batch of 64 long queries; split it",
    )
    URI_TOO_LONG = (
        "uri_too_long",
        414,
        "a request line over 8,190 bytes (a GET query of 1,000 accented characters fits)",
    )
    UNSUPPORTED_MEDIA_TYPE = ("unsupported_media_type", 415, "`POST /search` without `Content-Type: application/json`")
    EXPECTATION_FAILED = ("expectation_failed", 417, "an `Expect` header the server does not support")
    RATE_LIMITED = ("rate_limited", 429, "over `FAQ_RATE_LIMIT` for this client; `Retry-After` says when to try again")
    HEADERS_TOO_LARGE = ("headers_too_large", 431, "too many or too large request headers")
    INDEX_UNAVAILABLE = ("index_unavailable", 503, "no index loaded (missing, damaged); the message says what to run")
    INDEX_MODEL_MISMATCH = ("index_model_mismatch", 503, "the index was built with another model than the service's")
    MODEL_UNAVAILABLE = (
        "model_unavailable",
        503,
        "the configured model could not be loaded (missing directory, unknown name)",
    )
    SEARCH_TIMEOUT = ("search_timeout", 503, "every search slot stayed busy for `FAQ_SEARCH_TIMEOUT`; `Retry-After: 1`")
    QUERY_LOG_UNAVAILABLE = (
        "query_log_unavailable",
        503,
        "the query log's database cannot be read (corrupted, locked); searches still answer",
    )
    REVIEWED_FILE_UNWRITABLE = (
        "reviewed_file_unwritable",
        500,
        "a review action while the reviewed file cannot be written next to the corpus (a read-only directory, a "
        "full disk): nothing of the line stays",
    )
    REVIEWED_FILE_INVALID = (
        "reviewed_file_invalid",
        500,
        "the reviewed file next to the corpus cannot be read at all (a bad line is only skipped, and listed in "
        "`reviewed_file_problems`)",
    )
    CORPUS_UNWRITABLE = (
        "corpus_unwritable",
        500,
        "a change through `/admin/entries` while the corpus cannot be written (a read-only directory, a full disk): "
        "the corpus is as it was",
    )
    INTERNAL_ERROR = ("internal_error", 500, "anything unexpected; details go to the log, never to the client")
    NOT_IMPLEMENTED = ("not_implemented", 501, "a transfer coding the server does not implement")
    HTTP_ERROR = ("http_error", 0, "another status the HTTP layer answers by itself (rare: the status says what)")


#: The code of an error the HTTP layer answers by itself (Flask's routing, gunicorn's request parsing), by status.
HTTP_STATUS_CODES: dict[int, ErrorCode] = {
    code.status: code
    for code in (
        ErrorCode.BAD_REQUEST,
        ErrorCode.UNAUTHORIZED,
        ErrorCode.NOT_FOUND,
        ErrorCode.METHOD_NOT_ALLOWED,
        ErrorCode.REQUEST_TIMEOUT,
        ErrorCode.PAYLOAD_TOO_LARGE,
        ErrorCode.URI_TOO_LONG,
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        ErrorCode.EXPECTATION_FAILED,
        ErrorCode.RATE_LIMITED,
        ErrorCode.HEADERS_TOO_LARGE,
        ErrorCode.NOT_IMPLEMENTED,
    )
}


def markdown_table() -> str:
    """docs/api.md's table of error codes: one row per code, by status."""
    rows = ["| status | code | when |", "|---|---|---|"]
    for code in sorted(ErrorCode, key=lambda c: (c.status or 999, list(ErrorCode).index(c))):
        rows.append(f"| {code.status or '4xx, 5xx'} | `{code.value}` | {code.meaning} |")
    return "\n".join(rows)


def redact_paths(value: Any) -> Any:
    """``value`` with every absolute path in its strings cut to ``…/<last part>``, for open endpoints such as
    ``/health``: the build's name is what an operator needs there, the host's directory layout is nobody's
    business (the service log and ``/admin/stats`` keep the full paths)."""
    if isinstance(value, str):
        return _ABSOLUTE_PATH.sub(lambda m: "…/" + m.group(1), value)
    if isinstance(value, dict):
        return {k: redact_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_paths(v) for v in value]
    return value


def error_body(status: int, code: ErrorCode | str, message: str, field: str | None = None) -> dict:
    """The one JSON error shape: ``{"error": {"status", "code", "message"[, "field"]}}``."""
    body = {"status": status, "code": str(code), "message": message}
    if field:
        body["field"] = field
    return {"error": body}


class ServiceError(Exception):
    """Base class: ``code`` (an ``ErrorCode``) is the stable code clients switch on, and says the HTTP status."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR
    #: Extra response headers for this kind of error (e.g. ``Retry-After``).
    headers: dict[str, str] = {}

    def __init__(self, message: str, *, code: ErrorCode | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = ErrorCode(code)
        self.field = field

    @property
    def status(self) -> int:
        """The HTTP status of this error (its code's)."""
        return self.code.status

    def to_dict(self) -> dict:
        """The one JSON error shape (``error_body``)."""
        return error_body(self.status, self.code, self.message, self.field)


class HttpError(ServiceError):
    """An error the HTTP layer answers by itself, with the status it chose (``http_error`` for one with no code of
    its own)."""

    def __init__(self, message: str, status: int):
        super().__init__(message, code=HTTP_STATUS_CODES.get(status, ErrorCode.HTTP_ERROR))
        self._status = status

    @property
    def status(self) -> int:
        return self._status


class InvalidRequest(ServiceError):
    """The request is malformed or a parameter is wrong (400)."""

    code = ErrorCode.INVALID_REQUEST


class UnsupportedMediaType(ServiceError):
    """The body is not sent as ``application/json`` (415)."""

    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE


class PayloadTooLarge(ServiceError):
    """The body, or its queries' tokens, are over a limit (413)."""

    code = ErrorCode.PAYLOAD_TOO_LARGE


class RequestTimeout(ServiceError):
    """The body did not arrive within ``FAQ_BODY_TIMEOUT`` seconds (408)."""

    code = ErrorCode.REQUEST_TIMEOUT


class Forbidden(ServiceError):
    """The caller may not use this (403)."""

    code = ErrorCode.FAQ_FORBIDDEN


class NotFound(ServiceError):
    """No such route, FAQ entry, logged search, query or review action (404)."""

    code = ErrorCode.NOT_FOUND


class IndexUnavailable(ServiceError):
    """No usable index is loaded: missing, unreadable, or built for another model (503)."""

    code = ErrorCode.INDEX_UNAVAILABLE


class IndexMismatch(IndexUnavailable):
    """The index was built with a different model or dimension than the one configured (503)."""

    code = ErrorCode.INDEX_MODEL_MISMATCH


class ModelUnavailable(ServiceError):
    """The embedding model could not be loaded (503)."""

    code = ErrorCode.MODEL_UNAVAILABLE


class Unauthorized(ServiceError):
    """A key is required and none, or a wrong one, was given (401)."""

    code = ErrorCode.UNAUTHORIZED


class AdminDisabled(ServiceError):
    """The admin endpoints are off because no ``FAQ_ADMIN_TOKEN`` is configured (403)."""

    code = ErrorCode.ADMIN_DISABLED


class SearchTimeout(ServiceError):
    """No search slot freed up within ``FAQ_SEARCH_TIMEOUT``: the service is saturated; retry later (503)."""

    code = ErrorCode.SEARCH_TIMEOUT
    headers = {"Retry-After": "1"}


class Conflict(ServiceError):
    """409: the request does not fit the current state (a review listed before a rebuild, a question already
    reviewed, an action the corpus rules refuse)."""

    code = ErrorCode.REVIEW_CONFLICT


class FeatureDisabled(ServiceError):
    """403: the feature needs a setting this service does not have (the query log for feedback and review)."""

    code = ErrorCode.QUERY_LOG_DISABLED


class QueryLogUnavailable(ServiceError):
    """503: the query log's database cannot be read now (corrupted, locked); searches are not affected."""

    code = ErrorCode.QUERY_LOG_UNAVAILABLE

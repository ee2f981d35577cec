"""The service's error vocabulary: each exception carries its HTTP status and a stable machine-readable code."""

from __future__ import annotations

import re
from typing import Any

#: An absolute file path inside a message (``/srv/faq/index/builds/2026…``).
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/])/(?:[^\s/'\"`:,;()]+/)*([^\s/'\"`:,;()]+)")


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


#: The code of an error the HTTP layer answers by itself (Flask's routing, gunicorn's request parsing), by status.
HTTP_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    417: "expectation_failed",
    429: "rate_limited",
    431: "headers_too_large",
    501: "not_implemented",
}


def error_body(status: int, code: str, message: str, field: str | None = None) -> dict:
    """The one JSON error shape: ``{"error": {"status", "code", "message"[, "field"]}}``."""
    body = {"status": status, "code": code, "message": message}
    if field:
        body["field"] = field
    return {"error": body}


class ServiceError(Exception):
    """Base class: ``status`` is the HTTP status, ``code`` the stable code clients switch on."""

    status = 500
    code = "internal_error"
    #: Extra response headers for this kind of error (e.g. ``Retry-After``).
    headers: dict[str, str] = {}

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.field = field

    def to_dict(self) -> dict:
        """The one JSON error shape (``error_body``)."""
        return error_body(self.status, self.code, self.message, self.field)


class InvalidRequest(ServiceError):
    """The request is malformed or a parameter is wrong (400)."""

    status = 400
    code = "invalid_request"


class UnsupportedMediaType(ServiceError):
    """The body is not sent as ``application/json`` (415)."""

    status = 415
    code = "unsupported_media_type"


class PayloadTooLarge(ServiceError):
    """The body is over the configured size limit (413)."""

    status = 413
    code = "payload_too_large"


class NotFound(ServiceError):
    """No such route or FAQ entry (404)."""

    status = 404
    code = "not_found"


class IndexUnavailable(ServiceError):
    """No usable index is loaded: missing, unreadable, or built for another model (503)."""

    status = 503
    code = "index_unavailable"


class IndexMismatch(IndexUnavailable):
    """The index was built with a different model or dimension than the one configured (503)."""

    code = "index_model_mismatch"


class ModelUnavailable(ServiceError):
    """The embedding model could not be loaded (503)."""

    status = 503
    code = "model_unavailable"


class Unauthorized(ServiceError):
    """A key is required and none, or a wrong one, was given (401)."""

    status = 401
    code = "unauthorized"


class AdminDisabled(ServiceError):
    """The admin endpoints are off because no ``FAQ_ADMIN_TOKEN`` is configured (403)."""

    status = 403
    code = "admin_disabled"


class SearchTimeout(ServiceError):
    """No search slot freed up within ``FAQ_SEARCH_TIMEOUT``: the service is saturated; retry later (503)."""

    status = 503
    code = "search_timeout"
    headers = {"Retry-After": "1"}


class Conflict(ServiceError):
    """409: the request does not fit the current state (a review listed before a rebuild, a question already
    reviewed, an action the corpus rules refuse)."""

    status = 409
    code = "review_conflict"


class FeatureDisabled(ServiceError):
    """403: the feature needs a setting this service does not have (the query log for feedback and review)."""

    status = 403
    code = "query_log_disabled"


class QueryLogUnavailable(ServiceError):
    """503: the query log's database cannot be read now (corrupted, locked); searches are not affected."""

    status = 503
    code = "query_log_unavailable"

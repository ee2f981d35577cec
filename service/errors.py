"""The service's error vocabulary: each exception carries its HTTP status and a stable machine-readable code."""

from __future__ import annotations


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
        """The one JSON error shape: ``{"error": {"status", "code", "message"[, "field"]}}``."""
        body = {"status": self.status, "code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return {"error": body}


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

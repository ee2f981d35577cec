"""Reading request bodies: within a deadline, strictly decoded, and read to the end when refused."""

from __future__ import annotations

import contextlib
import json
import sys

from flask import current_app, g, request

from ..errors import ErrorCode, InvalidRequest, PayloadTooLarge, RequestTimeout, ServiceError, UnsupportedMediaType
from .current import catalog

#: A refused body of up to this size is read to its end before the answer, so that a client still sending it reads
#: the 413 instead of a connection reset (gunicorn's gevent workers close without draining it).
DRAIN_REFUSED_BODY_BYTES = 4 * 2**20


@contextlib.contextmanager
def _deadline(seconds: float):
    """Give up on a body read after ``seconds``. In a gevent worker (where a stalled body holds a greenlet, not a
    thread) with gevent's timer; elsewhere the server's own socket settings apply."""
    if "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("socket"):
            import gevent

            timer = gevent.Timeout(seconds)
            timer.start()
            try:
                yield
            except gevent.Timeout as exc:
                if exc is not timer:
                    raise
                raise RequestTimeout(f"the request body did not arrive within {seconds:g} s") from None
            finally:
                timer.close()
            return
    yield


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def read_body() -> bytes:
    """The raw body, within ``FAQ_BODY_TIMEOUT``; 400 ``bad_request`` when the server cannot read it (a malformed
    chunk size or terminator), 413 over ``MAX_CONTENT_LENGTH``, 408 when it stalls. Read once per request (kept for
    a second call: the rate limit reads a batch to count its questions before the route does)."""
    failed = g.get("faq_body_error")
    if failed is not None:
        raise failed
    try:
        try:
            with _deadline(catalog().settings.body_timeout):
                raw = request.get_data(cache=True)
            g.faq_body_read = True  # read whole: nothing is left to drain
        except Exception as exc:
            g.faq_body_error = exc  # a second read would wait again on what is left of a failed body
            raise
    except ServiceError:
        raise
    except Exception as exc:
        if getattr(exc, "code", None) == 413:
            raise
        raise InvalidRequest(f"the request body could not be read: {exc}", code=ErrorCode.BAD_REQUEST) from None
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit and request.content_length is None and len(raw) >= limit:
        # A chunked body (no Content-Length) is cut at the limit by Werkzeug rather than refused.
        raise PayloadTooLarge(f"the body is larger than the limit of {limit} bytes (FAQ_MAX_BODY_BYTES)")
    return raw


def json_body():
    """The request body decoded as strict JSON (no NaN/Infinity)."""
    raw = read_body()
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise InvalidRequest("the body is not valid UTF-8", code=ErrorCode.INVALID_JSON) from None
    except ValueError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}", code=ErrorCode.INVALID_JSON) from None
    except RecursionError:  # e.g. [[[[…]]]] 100,000 deep: the decoder runs out of stack before the end
        raise InvalidRequest("the body is nested too deeply to be read", code=ErrorCode.INVALID_JSON) from None


def drain_refused_body() -> None:
    """Read what is left of a refused body (up to ``DRAIN_REFUSED_BODY_BYTES``, within ``FAQ_BODY_TIMEOUT``); nothing
    when the route read it already (a search refused for its tokens): reading the socket again would wait for bytes
    that never come (the development server has no deadline)."""
    if g.get("faq_body_read"):
        return
    length = request.content_length or 0
    stream = request.environ.get("wsgi.input")
    if stream is None or not 0 < length <= DRAIN_REFUSED_BODY_BYTES:
        return
    try:
        with _deadline(catalog().settings.body_timeout):
            while length > 0 and (chunk := stream.read(min(65536, length))):
                length -= len(chunk)
    except (OSError, ServiceError):  # the client went away, or stalled: answer anyway
        pass


def json_request():
    """The body of a POST that must be JSON: 415 ``unsupported_media_type`` for another type, else ``json_body()``."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(f"send the body as application/json, not {request.mimetype or 'nothing'}")
    return json_body()

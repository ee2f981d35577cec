"""Who may call the service and who a caller is: the API keys, compared in constant time, and a client's identity
for the rate limit and the query log. No Flask here: the HTTP API (``http/admin.py``) and the MCP server over HTTP
(``integrations/mcp.py``) apply the same rules through it.

With ``FAQ_API_KEYS`` set (comma-separated; ``KEY:faq-a+faq-b`` limits a key to those FAQs), a caller sends one
of them as ``Authorization: Bearer <key>`` or ``X-API-Key``. A client is its valid key (hashed, never kept raw),
else its address: an unchecked key is no identity, or every request with a new made-up key would get a fresh
allowance. ``RateLimit`` counts a client's
searches against ``FAQ_RATE_LIMIT`` in the ``limits`` library's storage (each process's memory, or the store of
``FAQ_RATE_LIMIT_STORAGE``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Iterable


def parse_keys(value) -> list[str]:
    """``FAQ_API_KEYS`` as a list (a comma-separated string or a list)."""
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [k.strip() for k in items if k and k.strip()]


def key_scopes(value) -> dict[str, frozenset[str] | None]:
    """``FAQ_API_KEYS`` with the FAQs each key may use: ``KEY`` (every FAQ) or ``KEY:faq-a+faq-b`` (only those).

    Returns:
        Each key (without its scope) and its FAQs' names, None for every FAQ.
    """
    out: dict[str, frozenset[str] | None] = {}
    for item in parse_keys(value):
        key, sep, scope = item.partition(":")
        names = frozenset(n.strip() for n in scope.split("+") if n.strip()) if sep else None
        out[key.strip()] = names
    return out


def key_matches(given: str | None, allowed: Iterable[str]) -> bool:
    """Whether ``given`` is one of ``allowed``, in a time that does not tell which key was close."""
    if not given:
        return False
    found = False
    for key in allowed:  # no early exit
        found |= hmac.compare_digest(given.encode(), key.encode())
    return found


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header value, if any."""
    auth = authorization or ""
    return (auth[7:].strip() or None) if auth[:7].lower() == "bearer " else None


def valid_key(authorization: str | None, x_api_key: str | None, allowed: list[str]) -> str | None:
    """The key a request carries (``Authorization: Bearer …`` or ``X-API-Key``) if it is one of ``allowed``."""
    return next((key for key in (bearer(authorization), x_api_key) if key and key_matches(key, allowed)), None)


def client_identity(key: str | None, address: str | None) -> str:
    """Who a request counts against: a valid key, hashed (never stored raw), else the address."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16] if key else "ip:" + (address or "unknown")


class RateLimit:
    """A per-client limit (``"600/minute"``) counted by the ``limits`` library, as flask-limiter counts the HTTP
    API's: in this process's memory, or in a shared store (``redis://…``).

    Raises:
        ValueError: the limit is not one ``limits`` can read.
    """

    def __init__(self, limit: str, storage_uri: str | None = None):
        from limits import parse
        from limits.storage import storage_from_string
        from limits.strategies import FixedWindowRateLimiter

        self.limit = parse(limit)
        self._limiter = FixedWindowRateLimiter(storage_from_string(storage_uri or "memory://"))

    def hit(self, client: str, cost: int = 1) -> float | None:
        """Count ``cost`` calls of ``client``; None when within the limit, else the seconds until it may try again."""
        if self._limiter.hit(self.limit, "faq-search", client, cost=cost):
            return None
        reset = self._limiter.get_window_stats(self.limit, "faq-search", client).reset_time
        return max(1.0, math.ceil(reset - time.time()))

"""What a search may cost and how many run at once: the token budget of a request and the search slots of a
process. The HTTP routes and the MCP server both go through one ``SearchGate``, so both get the same limits.

Encoding cannot be interrupted half-way, so the bounds are on what starts: a request whose queries would make the
encoder read more than ``max_request_tokens`` tokens is refused (413 ``too_many_tokens``), and a search waits at
most ``timeout`` seconds for one of ``max_concurrent`` slots (then 503 ``search_timeout``, with ``Retry-After``):
under overload requests fail fast with a clear error instead of piling up (and holding memory) until every client
times out. A heavy request (a long batch) also needs the process's one heavy slot, so heavy batches run one at a
time and plain searches interleave with them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ..errors import ErrorCode, PayloadTooLarge, SearchTimeout

T = TypeVar("T")

#: A request whose queries are longer than this many tokens in all (more than any single query can be) is heavy.
HEAVY_REQUEST_TOKENS = 512


class SearchGate:
    """The token budget of one request and the search slots of this process."""

    def __init__(self, max_concurrent: int = 2, timeout: float = 10.0, max_request_tokens: int = 4096):
        if max_concurrent < 1:
            raise ValueError(f"FAQ_MAX_CONCURRENT_SEARCHES must be at least 1, not {max_concurrent}")
        self.timeout, self.max_request_tokens = float(timeout), int(max_request_tokens)
        self.slots = int(max_concurrent)
        self._slots = threading.BoundedSemaphore(self.slots)
        self._heavy = threading.BoundedSemaphore(1)

    def tokens(self, engine, queries: list[str]) -> int:
        """The tokens the encoder would read for these queries; refused when over the budget.

        Characters say little of the cost (1,000 of them are 200 tokens of French, or 512 of symbols), and one
        search holds its worker for as long as its encoding takes.

        Raises:
            PayloadTooLarge: ``too_many_tokens``.
        """
        tokens = sum(engine.count_tokens(queries))
        if tokens > self.max_request_tokens:
            raise PayloadTooLarge(
                f"the request's queries are {tokens} tokens long, over the limit of {self.max_request_tokens}: send "
                "fewer or shorter queries (split a batch)",
                code=ErrorCode.TOO_MANY_TOKENS,
            )
        return tokens

    def run(self, call: Callable[[], T], tokens: int = 0, deadline: float | None = None) -> T:
        """``call()`` once a search slot (and for a heavy request the heavy slot) is free.

        Args:
            deadline: ``time.monotonic()`` by which a slot must be had (default: ``timeout`` seconds from now); a
                request that waited elsewhere first (for a thread) gives the time it arrived plus ``timeout``.
        Raises:
            SearchTimeout: no slot within ``timeout`` seconds.
        """
        gates = [self._slots]
        if tokens > HEAVY_REQUEST_TOKENS:
            gates.insert(0, self._heavy)
        deadline = time.monotonic() + self.timeout if deadline is None else deadline
        taken = []
        try:
            for gate in gates:
                if not gate.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    raise SearchTimeout(
                        f"the service is saturated: no search could start within {self.timeout:g} s; retry later"
                    )
                taken.append(gate)
            return call()
        finally:
            for gate in taken:
                gate.release()

    def deadline(self) -> float:
        """When a request arriving now must have its slot (``time.monotonic()``)."""
        return time.monotonic() + self.timeout

    def try_slot(self) -> bool:
        """Take a search slot if one is free now (background work that must never delay a search); ``release``."""
        return self._slots.acquire(blocking=False)

    def release(self) -> None:
        self._slots.release()

"""A bounded, thread-safe LRU cache of search responses (the engine keys it by index, query and options)."""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Any

from cachetools import LRUCache


class ResponseCache:
    """LRU cache with hit and miss counters; ``max_size`` 0 disables it."""

    def __init__(self, max_size: int = 1024):
        self.max_size = max_size
        self._cache: LRUCache | None = LRUCache(maxsize=max_size) if max_size > 0 else None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any | None:
        """The cached value, or None (counted as a miss)."""
        if self._cache is None:
            return None
        with self._lock:
            value = self._cache.get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
            return value

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value``; the least recently used entry goes when the cache is full."""
        if self._cache is not None:
            with self._lock:
                self._cache[key] = value

    def stats(self) -> dict:
        """Size, bound, hits, misses and hit rate, for ``/health``."""
        with self._lock:
            total = self.hits + self.misses
            return {
                "size": len(self._cache) if self._cache is not None else 0,
                "max_size": self.max_size,
                "hits": self.hits,
                "misses": self.misses,
                "hit_rate": round(self.hits / total, 4) if total else None,
            }

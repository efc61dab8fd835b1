"""Concurrency limits at the edge (open WebSockets per client IP), as a plain state machine.

Rate limits are `sfu.core.token_bucket`'s buckets."""

from __future__ import annotations


class ConcurrencyLimit:
    """At most `limit` open things (WebSockets) per key."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        count = self._open.get(key, 0)
        if count >= self.limit:
            return False
        self._open[key] = count + 1
        return True

    def release(self, key: str) -> None:
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            self._open.pop(key, None)

    def count(self, key: str) -> int:
        return self._open.get(key, 0)

"""When to retry a webhook and how long to wait: pure decisions, no I/O, no clock reads.

Retried: network errors and timeouts (no status), 408, 429 and 5xx. Not retried: other
4xx (the receiver refuses this request; sending it again will not help) and 3xx (redirects
are not followed: the signed POST goes to the configured URL only). 2xx is delivered.
A `Retry-After` on 429 or 503 replaces the computed delay, clamped to `max_retry_after_s`.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRY_AFTER_STATUSES = frozenset({429, 503})


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"


def classify(status: int | None) -> Verdict:
    """`status` None means no HTTP answer (connection error, timeout)."""
    if status is None:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in (408, 429) or 500 <= status < 600:
        return Verdict.RETRY
    return Verdict.REJECTED


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or HTTP date); None if absent or
    unreadable. A date in the past gives 0."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential back-off with jitter and a bound on attempts.

    After failed attempt n (1-based) the wait is `min(max_s, base_s * 2**(n-1))` reduced by
    a random fraction of at most `jitter`; so it lies in `[cap * (1 - jitter), cap]`."""

    base_s: float = 0.5
    max_s: float = 30.0
    max_attempts: int = 6
    jitter: float = 0.5
    max_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.max_s < self.base_s:
            raise ValueError("need 0 <= base_s <= max_s")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")

    def cap(self, attempt: int) -> float:
        return float(min(self.max_s, self.base_s * 2 ** min(max(attempt - 1, 0), 62)))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        draw = (rng or random).random()
        return self.cap(attempt) * (1 - self.jitter * draw)

    def next_delay(
        self,
        attempt: int,
        status: int | None,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None: no more attempts (either
        delivered, rejected, or `attempt` was the last one)."""
        if classify(status) is not Verdict.RETRY or attempt >= self.max_attempts:
            return None
        if retry_after is not None and status in RETRY_AFTER_STATUSES:
            return min(max(retry_after, 0.0), self.max_retry_after_s)
        return self.delay(attempt, rng)

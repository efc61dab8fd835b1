"""The token bucket every rate limit is made of, as a pure state machine: the caller passes
`now` (any monotonic clock, in seconds), so it is tested without sleeping."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import InitVar, dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; full when created at `now`."""

    rate: float
    burst: float
    now: InitVar[float]
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self, now: float) -> None:
        self.tokens = self.burst
        self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Refill for the time since the last call, then take `cost` tokens if there are."""
        elapsed = now - self.stamp
        if elapsed > 0:  # a clock going backwards refills nothing
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True


class BucketTable:
    """One TokenBucket per key (a client address), in a table bounded to `max_keys`: when full,
    the least recently used key is forgotten, so a flood of distinct sources cannot grow
    memory."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 10_000) -> None:
        if rate <= 0 or burst <= 0 or max_keys < 1:
            raise ValueError(f"rate and burst must be positive, max_keys at least 1: {rate=}")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str, now: float, cost: float = 1.0) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now, cost)

    def __len__(self) -> int:
        return len(self._buckets)

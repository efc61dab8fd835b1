"""Per-source rate limiting for UDP services, as a pure state machine (the caller passes `now`).

Built for the STUN responder: every source address gets a token bucket, the table of buckets
is bounded (a flood of spoofed sources evicts the least recently seen ones instead of growing
memory), and one global bucket caps the total whatever the number of sources.
IPv6 sources are keyed by their /64: one host usually owns a whole /64.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class Bucket:
    """`rate` tokens per second, at most `burst` saved up, full when created at `stamp`."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> Bucket:
        return cls(rate=rate, burst=burst, tokens=burst, stamp=now)

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


@dataclass(frozen=True, slots=True)
class RateConfig:
    rate_per_source: float = 20.0
    burst_per_source: float = 40.0
    rate_total: float = 2000.0
    """Also the global burst: at most one second's worth at once."""
    max_sources: int = 10_000
    """Sources tracked at most; when full, the least recently seen one is forgotten."""

    def __post_init__(self) -> None:
        if min(self.rate_per_source, self.burst_per_source, self.rate_total) <= 0:
            raise ValueError(f"rates and bursts must be positive: {self}")
        if self.max_sources < 1:
            raise ValueError(f"max_sources must be at least 1: {self}")


class SourceRateLimiter:
    """`allow(host, now)`: True while both the source's bucket and the global one have a
    token. A source refused by its own bucket does not spend a global token."""

    def __init__(self, config: RateConfig, now: float) -> None:
        self.config = config
        self._total = Bucket.full(config.rate_total, config.rate_total, now)
        self._sources: OrderedDict[str, Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sources)

    def allow(self, host: str, now: float) -> bool:
        key = source_key(host)
        bucket = self._sources.get(key)
        if bucket is None:
            if len(self._sources) >= self.config.max_sources:
                self._sources.popitem(last=False)
            bucket = Bucket.full(self.config.rate_per_source, self.config.burst_per_source, now)
            self._sources[key] = bucket
        else:
            self._sources.move_to_end(key)
        return bucket.take(now) and self._total.take(now)


def source_key(host: str) -> str:
    """What a source is limited as: the IPv4 address, or the /64 of an IPv6 address (an
    IPv4-mapped IPv6 address counts as its IPv4 address). Text that is no address is kept
    as it is."""
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False).network_address) + "/64"

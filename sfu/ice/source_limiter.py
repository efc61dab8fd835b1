"""Per-source rate limiting for UDP services, as a pure state machine (the caller passes `now`).

Built for the STUN responder: every source address gets a token bucket, the table of buckets
is bounded (a flood of spoofed sources evicts the least recently seen ones instead of growing
memory), and one global bucket caps the total whatever the number of sources.
IPv6 sources are keyed by their /64: one host usually owns a whole /64.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sfu.core.token_bucket import BucketTable, TokenBucket


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
        self._total = TokenBucket(config.rate_total, config.rate_total, now)
        self._sources = BucketTable(
            config.rate_per_source, config.burst_per_source, max_keys=config.max_sources
        )

    def __len__(self) -> int:
        return len(self._sources)

    def allow(self, host: str, now: float) -> bool:
        return self._sources.take(source_key(host), now) and self._total.take(now)


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

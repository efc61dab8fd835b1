"""RFC 3339 time stamps, UTC with milliseconds (`2024-05-01T12:00:00.123Z`): one formatter per
unit of the clock they come from."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339_from_s(ts: float) -> str:
    """Seconds since the epoch (`time.time()`)."""
    stamp = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def rfc3339_from_ms(ms: int) -> str:
    """Milliseconds since the epoch (`time.time_ns() // 1_000_000`)."""
    return rfc3339_from_s(ms / 1000)


def parse_rfc3339(value: str) -> float:
    """Seconds since the epoch of an RFC 3339 stamp (a `Z` suffix or an offset); ValueError
    when it is not one. A stamp without an offset is read as UTC."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()

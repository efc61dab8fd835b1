"""The two per-packet clocks of the RTP path, as aiortc.clock computes them but from
`time.time()` instead of building a `datetime` for every packet."""

from __future__ import annotations

import time

NTP_EPOCH_OFFSET_S = 2_208_988_800
"""Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01)."""


def arrival_ms() -> int:
    """aiortc's `clock.current_ms()`: wall-clock milliseconds since the NTP epoch."""
    return int(time.time() * 1000) + NTP_EPOCH_OFFSET_S * 1000


def abs_send_time_now() -> int:
    """The abs-send-time header extension value for now: NTP seconds in 6.18 fixed point, 24
    bits (aiortc's `(current_ntp_time() >> 14) & 0xFFFFFF`)."""
    return int((time.time() + NTP_EPOCH_OFFSET_S) * 262_144) & 0x00FFFFFF

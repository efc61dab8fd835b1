"""The SFU's own view during a load test: its Prometheus ``/metrics``, scraped once a second.

CPU is the rate of ``process_cpu_seconds_total`` between two scrapes (cores used), memory is
``process_resident_memory_bytes``; a few ``sfu_*`` counters are kept so the report can give
their change over the run (NACKs, forwarded packets, drops).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import aiohttp

logger = logging.getLogger(__name__)

SCRAPE_TIMEOUT_S = 2.0
CPU = "process_cpu_seconds_total"
RSS = "process_resident_memory_bytes"
COUNTERS = (
    "sfu_nacks_received_total",
    "sfu_nacks_answered_total",
    "sfu_nacks_sent_total",
    "sfu_rtp_packets_in_total",
    "sfu_rtp_packets_out_total",
    "sfu_rtp_dropped_total",
    "sfu_keyframe_requests_total",
    "sfu_limit_hits_total",
)
GAUGES = ("sfu_rooms", "sfu_participants", "sfu_subscriptions", "sfu_media_ports_free")


def parse_metrics(text: str, names: tuple[str, ...]) -> dict[str, float]:
    """Values of the named series in Prometheus text, each summed over its labels.

    Names absent from the text are absent from the result.
    """
    wanted = set(names)
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_end = len(line)
        for separator in ("{", " "):
            position = line.find(separator)
            if position != -1:
                name_end = min(name_end, position)
        name = line[:name_end]
        if name not in wanted:
            continue
        try:
            value = float(line.rsplit(" ", 1)[-1])
        except ValueError:
            continue
        if math.isfinite(value):
            values[name] = values.get(name, 0.0) + value
    return values


@dataclass(frozen=True, slots=True)
class SfuSample:
    at: float
    """Monotonic time of the scrape's answer."""
    cpu_seconds: float | None
    rss_bytes: float | None
    values: dict[str, float] = field(default_factory=dict)


class MetricsPoller:
    """Scrapes ``{url}/metrics``; keeps the previous sample to turn CPU seconds into a rate."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self._http = http
        self.url = base_url + "/metrics"
        self.first: SfuSample | None = None
        self.last: SfuSample | None = None
        self.errors = 0
        self.last_error = ""

    async def scrape(self) -> SfuSample | None:
        """One scrape; None (counted in ``errors``) when the SFU does not answer in time."""
        try:
            async with (
                self._http.get(
                    self.url, timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
                ) as response,
            ):
                if response.status != 200:
                    raise aiohttp.ClientResponseError(
                        response.request_info, (), status=response.status
                    )
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.errors += 1
            self.last_error = repr(exc)
            if self.errors == 1:
                logger.warning("cannot scrape %s: %r", self.url, exc)
            return None
        values = parse_metrics(text, (CPU, RSS, *COUNTERS, *GAUGES))
        sample = SfuSample(
            at=time.monotonic(),
            cpu_seconds=values.get(CPU),
            rss_bytes=values.get(RSS),
            values=values,
        )
        if self.first is None:
            self.first = sample
        return sample

    def rate(self, sample: SfuSample) -> float | None:
        """CPU cores used since the previous sample passed here (None for the first)."""
        previous, self.last = self.last, sample
        if previous is None or previous.cpu_seconds is None or sample.cpu_seconds is None:
            return None
        span = sample.at - previous.at
        if span <= 0:
            return None
        return max(0.0, (sample.cpu_seconds - previous.cpu_seconds) / span)

    def counter_changes(self, final: SfuSample | None) -> dict[str, float]:
        """How much each ``sfu_*`` counter grew from the first scrape to ``final``."""
        if self.first is None or final is None:
            return {}
        return {
            name: final.values[name] - self.first.values.get(name, 0.0)
            for name in COUNTERS
            if name in final.values
        }

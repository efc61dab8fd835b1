"""The storage figures of `sfu analytics serve`, in a registry of their own.

`StorageExporter.refresh` streams the listing of `vod/sessions/` once and keeps a snapshot:
bytes and objects per tier, their cost per month (bytes / 2**30 x the tier's price per GB
and month: a GB here is a GiB, 1024³ bytes), the restores from the lifecycle's state file and
the CDN hit ratio from the last ingested logs. `collect` exports the last snapshot, so a scrape
never lists the store. `sfu_vod_plays_total{tier}` counts the plays this service took, by the
tier the session's master playlist was in when played."""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sfu.analytics.plays import DAY_S, PlayStore
from sfu.analytics.store import load_cdn_ratio
from sfu.storage.base import ObjectStore, Tier
from sfu.storage.restores import restore_counts, state_path_for

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from sfu.config.settings import Settings

logger = logging.getLogger(__name__)

PREFIX = "vod/sessions/"
GIB = 2**30
UNKNOWN_TIER = "unknown"
"""The plays label of a session whose master playlist is not in the store."""


@dataclass(slots=True)
class Snapshot:
    bytes: Tally[Tier] = field(default_factory=Tally)
    objects: Tally[Tier] = field(default_factory=Tally)
    master_tiers: dict[str, Tier] = field(default_factory=dict)
    hot_unread: int = 0
    restores_pending: int = 0
    restores_failed: int = 0
    restores_total: int = 0
    restores_known: bool = False
    cdn_hit_ratio: float | None = None
    refreshed_at: float = 0.0


def session_of(key: str) -> str | None:
    rest = key[len(PREFIX) :] if key.startswith(PREFIX) else ""
    session_id, slash, _ = rest.partition("/")
    return session_id if slash and session_id else None


UPLOAD_BUCKETS = (2**16, 2**20, 2**22, 2**24, 2**26, 2**28, 2**30, 2**32, float("inf"))
"""Upload sizes in bytes; 2**26 (64 MiB) is the large-upload alert's bound."""


class StorageExporter(Collector):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.snapshot = Snapshot()
        self.registry = CollectorRegistry(auto_describe=True)
        self.plays = Counter(
            "sfu_vod_plays",
            "Plays taken by POST /vod/views, by the tier of the session's master playlist",
            ["tier"],
            registry=self.registry,
        )
        self.refresh_errors = Counter(
            "sfu_storage_refresh_errors",
            "Refreshes of the storage figures that failed (the last figures stay exported)",
            registry=self.registry,
        )
        self.uploads = Histogram(
            "sfu_storage_upload_bytes",
            "Sizes of the objects that appeared under vod/sessions/ since the previous refresh",
            buckets=UPLOAD_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(self)

    def price(self, tier: Tier) -> float:
        lifecycle = self.settings.lifecycle
        return {
            Tier.STANDARD: lifecycle.price_standard_gb_month,
            Tier.INFREQUENT_ACCESS: lifecycle.price_infrequent_gb_month,
            Tier.ARCHIVE: lifecycle.price_archive_gb_month,
        }[tier]

    async def refresh(self, store: ObjectStore, plays: PlayStore, now: float | None = None) -> None:
        now = time.time() if now is None else now
        lifecycle = self.settings.lifecycle
        snap = Snapshot(refreshed_at=now)
        seen_until = self.snapshot.refreshed_at
        standard_old: Tally[str] = Tally()
        old_before = now - lifecycle.ia_after_days * DAY_S
        async for info in store.list(PREFIX):
            snap.bytes[info.tier] += info.size
            snap.objects[info.tier] += 1
            # New since the last refresh: written in (its start, this one's start]. One written
            # after this refresh began is left to the next, which would otherwise count it again.
            if seen_until and seen_until < info.last_modified.timestamp() <= now:
                self.uploads.observe(info.size)
            session_id = session_of(info.key)
            if session_id is None:
                continue
            if info.key.endswith("/master.m3u8"):
                snap.master_tiers[session_id] = info.tier
            if info.tier is Tier.STANDARD and info.last_modified.timestamp() < old_before:
                standard_old[session_id] += 1
        since = now - lifecycle.hot_window_days * DAY_S
        for session_id, count in standard_old.items():
            if (await plays.summary(session_id, now)).plays_since(since) == 0:
                snap.hot_unread += count
        self._restores(snap)
        snap.cdn_hit_ratio = await load_cdn_ratio(self.settings)
        self.snapshot = snap

    def _restores(self, snap: Snapshot) -> None:
        """From the restore tracker's state (sfu/storage/restores.py), which the lifecycle
        and the views endpoint write."""
        counts = restore_counts(state_path_for(self.settings.data_dir))
        snap.restores_pending, snap.restores_failed = counts.pending, counts.failed
        snap.restores_total = counts.pending + counts.failed + counts.done
        snap.restores_known = True

    def tier_of(self, session_id: str) -> Tier | None:
        return self.snapshot.master_tiers.get(session_id)

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        gauges = {
            "bytes": GaugeMetricFamily(
                "sfu_storage_bytes", "Bytes under vod/sessions/, by tier", labels=["tier"]
            ),
            "objects": GaugeMetricFamily(
                "sfu_storage_objects", "Objects under vod/sessions/, by tier", labels=["tier"]
            ),
            "cost": GaugeMetricFamily(
                "sfu_storage_cost_usd_month",
                "Estimated cost per month (bytes / 2^30 x the tier's price), by tier",
                labels=["tier"],
            ),
        }
        total = 0.0
        for tier in Tier:
            cost = snap.bytes[tier] / GIB * self.price(tier)
            total += cost
            gauges["bytes"].add_metric([tier.value], snap.bytes[tier])
            gauges["objects"].add_metric([tier.value], snap.objects[tier])
            gauges["cost"].add_metric([tier.value], cost)
        yield from gauges.values()
        yield GaugeMetricFamily(
            "sfu_storage_budget_usd_month",
            "The storage budget per month (SFU_STORAGE_BUDGET_MONTH_USD)",
            value=self.settings.lifecycle.budget_month_usd,
        )
        yield GaugeMetricFamily(
            "sfu_storage_forecast_usd_month",
            "The cost per month of what is stored now, every tier",
            value=total,
        )
        yield GaugeMetricFamily(
            "sfu_storage_hot_unread_objects",
            "Standard objects older than the IA age of sessions not played in the hot window",
            value=snap.hot_unread,
        )
        yield GaugeMetricFamily(
            "sfu_storage_restores_pending",
            "Sessions whose restore from Archive is under way (0 without the restore tracker)",
            value=snap.restores_pending,
        )
        yield GaugeMetricFamily(
            "sfu_storage_restores_failed_total",
            "Sessions whose restore failed for good (0 without the restore tracker)",
            value=snap.restores_failed,
        )
        yield GaugeMetricFamily(
            "sfu_storage_restores_total",
            "Sessions whose restore from Archive was asked for (pending, failed or done)",
            value=snap.restores_total,
        )
        if snap.cdn_hit_ratio is not None:
            yield GaugeMetricFamily(
                "sfu_cdn_hit_ratio",
                "Cache hits over lines with a cache status, in the last ingested CDN logs",
                value=snap.cdn_hit_ratio,
            )
        yield GaugeMetricFamily(
            "sfu_storage_last_refresh_timestamp_seconds",
            "When the storage figures were last refreshed (0: not yet)",
            value=snap.refreshed_at,
        )

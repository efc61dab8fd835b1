"""`sfu lifecycle report` and `sfu lifecycle simulate`.

`report` streams the store's listing under `vod/sessions/` into per-tier totals (one object at
a time: the listing is never held), prices them, and forecasts the month against the budget
(`costs.Forecast`); each run appends the day's $/month rate to
`<data_dir>/lifecycle/cost-history.jsonl`, which later runs of the month use for the forecast.

`simulate` builds the design's catalogue (1 TB: 100 GB younger than 30 days, 400 GB 30-365 days,
524 GB older) in memory, tiers it by age with the configured rules and prices it with the same
code as `report`: it reproduces the design's $26.11 → $7.86 (70 %).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sfu.config.settings import LifecycleSettings, Settings
from sfu.core.timestamps import parse_rfc3339
from sfu.lifecycle.costs import (
    GB,
    SESSIONS_PREFIX,
    CostReport,
    History,
    Tally,
    cost_report,
    format_table,
    prices_of,
)
from sfu.storage import StorageError, store_from_settings
from sfu.storage.base import ObjectStore, Tier

logger = logging.getLogger(__name__)

SIMULATED_AT = datetime(2026, 1, 15, tzinfo=UTC)
"""The simulation's clock: fixed, so its output does not depend on the day it runs."""


def history_path(settings: Settings) -> Path:
    return settings.data_dir / "lifecycle" / "cost-history.jsonl"


async def tally_store(store: ObjectStore, prefix: str = SESSIONS_PREFIX) -> Tally:
    tally = Tally()
    async for info in store.list(prefix):
        tally.add_info(info)
    return tally


def tier_for_age(age_days: float, rules: LifecycleSettings) -> Tier | None:
    """The tier the age rules give an object `age_days` old; None once it is to be deleted."""
    if age_days >= rules.delete_after_days:
        return None
    if age_days >= rules.archive_after_days:
        return Tier.ARCHIVE
    if age_days >= rules.ia_after_days:
        return Tier.INFREQUENT_ACCESS
    return Tier.STANDARD


@dataclass(frozen=True, slots=True)
class SimObject:
    key: str
    size: int
    modified: datetime


SESSION_GB = 1
"""Each simulated session holds 1 GB (about a 40 min session at the default ladder)."""
OBJECTS_PER_SESSION = 4
BANDS = ((100, 0, 30), (400, 30, 365), (524, 365, 2555))
"""(sessions of 1 GB, youngest age, oldest age exclusive): the design's 100 / 400 / 524 GB."""


def design_catalogue(at: datetime = SIMULATED_AT) -> Iterator[SimObject]:
    """The design's 1 TB, as sessions of 1 GB whose ages are spread evenly over each band."""
    size = SESSION_GB * GB // OBJECTS_PER_SESSION
    n = 0
    for count, young, old in BANDS:
        for i in range(count):
            age = young + (old - young) * (i + 0.5) / count
            modified = at - timedelta(days=age)
            for part in range(OBJECTS_PER_SESSION):
                yield SimObject(f"{SESSIONS_PREFIX}sim-{n:05d}/part-{part}.ts", size, modified)
            n += 1


def simulate(settings: Settings, at: datetime = SIMULATED_AT) -> tuple[CostReport, int]:
    """The design catalogue through the age rules and the prices: (report, objects deleted)."""
    rules = settings.lifecycle
    tally = Tally()
    deleted = 0
    for obj in design_catalogue(at):
        tier = tier_for_age((at - obj.modified).total_seconds() / 86400, rules)
        if tier is None:
            deleted += 1
            continue
        tally.add(tier, obj.size, obj.key)
    report = cost_report(tally, prices_of(rules), at, budget_usd_month=rules.budget_month_usd)
    return report, deleted


def _now(args: argparse.Namespace) -> datetime:
    value = getattr(args, "now", None)
    if not value:
        return datetime.now(UTC)
    return datetime.fromtimestamp(parse_rfc3339(value), UTC)


def _check_png(args: argparse.Namespace) -> bool:
    if getattr(args, "png", None) is None:
        return True
    try:
        import matplotlib  # noqa: F401  (checked before the listing, used after it)
    except ImportError:
        print(
            "sfu lifecycle: --png needs matplotlib: pip install 'cotept-sfu[loadtest]'",
            file=sys.stderr,
        )
        return False
    return True


def _emit(
    report: CostReport, args: argparse.Namespace, title: str, extra: dict[str, object]
) -> None:
    if args.png is not None:
        from sfu.lifecycle.chart import write_chart

        write_chart(report, args.png, title)
    if args.json:
        print(json.dumps(report.as_json() | extra, indent=2))
    else:
        print(format_table(report))
        for name, value in extra.items():
            print(f"{name.replace('_', ' ')}: {value}")


async def _report(settings: Settings, at: datetime) -> CostReport:
    store = store_from_settings(settings)
    try:
        tally = await tally_store(store)
    finally:
        await store.close()
    history = History(history_path(settings))
    report = cost_report(
        tally,
        prices_of(settings.lifecycle),
        at,
        budget_usd_month=settings.lifecycle.budget_month_usd,
        history=history.read(),
    )
    try:
        history.record(at.date(), report.usd_month)
    except OSError as exc:
        logger.warning("cost history not written (%s): the forecast will not use today", exc)
    return report


def main(args: argparse.Namespace, settings: Settings) -> int:
    if not _check_png(args):
        return 2
    if args.lifecycle_command == "simulate":
        report, deleted = simulate(settings)
        _emit(report, args, "Simulated 1 TB catalogue (design)", {"deleted_objects": deleted})
        return 0
    try:
        at = _now(args)
    except ValueError:
        print(f"sfu lifecycle report: --now {args.now!r} is not RFC 3339", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(_report(settings, at))
    except StorageError as exc:
        print(f"sfu lifecycle report: {exc}", file=sys.stderr)
        return 1
    _emit(report, args, f"VOD storage at {at:%Y-%m-%d %H:%M} UTC", {})
    return 0

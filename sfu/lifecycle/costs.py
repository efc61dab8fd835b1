"""Storage cost: objects, bytes and $/month per tier, the saving against all-Standard, and the
month's forecast against the budget. Pure computation, shared by `sfu lifecycle report` (on the
store's listing) and `sfu lifecycle simulate` (on a synthetic catalogue), so the simulation
checks the report's own arithmetic.

Units: a GB here is 2**30 bytes (a GiB). The design's table takes 1 TB as 1024 GB
(1024 x $0.0255 = $26.11), which only holds with binary units; OCI bills per GB-month in the
same binary sense.
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from sfu.config.settings import LifecycleSettings
from sfu.storage.base import ObjectInfo, Tier

GB = 2**30
"""Bytes per billed GB (binary, as the design's 1 TB = 1024 GB)."""

SESSIONS_PREFIX = "vod/sessions/"


def prices_of(settings: LifecycleSettings) -> dict[Tier, float]:
    """USD per GB-month of each tier."""
    return {
        Tier.STANDARD: settings.price_standard_gb_month,
        Tier.INFREQUENT_ACCESS: settings.price_infrequent_gb_month,
        Tier.ARCHIVE: settings.price_archive_gb_month,
    }


@dataclass(slots=True)
class TierTotal:
    objects: int = 0
    bytes: int = 0


@dataclass(slots=True)
class Tally:
    """Running totals per tier, fed one object at a time: a listing is never held."""

    tiers: dict[Tier, TierTotal] = field(default_factory=lambda: {t: TierTotal() for t in Tier})
    sessions: set[str] = field(default_factory=set)

    def add(self, tier: Tier, size: int, key: str = "") -> None:
        total = self.tiers[tier]
        total.objects += 1
        total.bytes += size
        if key.startswith(SESSIONS_PREFIX):
            session = key[len(SESSIONS_PREFIX) :].split("/", 1)[0]
            if session:
                self.sessions.add(session)

    def add_info(self, info: ObjectInfo) -> None:
        self.add(info.tier, info.size, info.key)


@dataclass(frozen=True, slots=True)
class TierCost:
    tier: Tier
    objects: int
    bytes: int
    gb: float
    price_gb_month: float
    usd_month: float


@dataclass(frozen=True, slots=True)
class Forecast:
    """The month's storage cost, forecast.

    Storage is billed per GB-month, pro rata of the time it is held: a month in which the
    footprint does not change costs the current $/month. With a history of daily reports, the
    days already recorded this month count at their own rate and the rest of the month at
    today's:
    forecast = (sum of the recorded daily rates + today's rate x days left) / days in month.
    """

    month: str
    days_in_month: int
    days_recorded: int
    usd_month: float
    budget_usd_month: float

    @property
    def budget_ratio(self) -> float:
        return self.usd_month / self.budget_usd_month if self.budget_usd_month else 0.0


@dataclass(frozen=True, slots=True)
class CostReport:
    at: datetime
    sessions: int
    tiers: tuple[TierCost, ...]
    all_standard_usd_month: float
    forecast: Forecast | None

    @property
    def objects(self) -> int:
        return sum(t.objects for t in self.tiers)

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.tiers)

    @property
    def gb(self) -> float:
        return self.bytes / GB

    @property
    def usd_month(self) -> float:
        return sum(t.usd_month for t in self.tiers)

    @property
    def saving_usd_month(self) -> float:
        return self.all_standard_usd_month - self.usd_month

    @property
    def saving_ratio(self) -> float:
        if not self.all_standard_usd_month:
            return 0.0
        return self.saving_usd_month / self.all_standard_usd_month

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "sessions": self.sessions,
            "tiers": [
                {
                    "tier": t.tier.value,
                    "objects": t.objects,
                    "bytes": t.bytes,
                    "gb": round(t.gb, 3),
                    "price_gb_month": t.price_gb_month,
                    "usd_month": round(t.usd_month, 4),
                }
                for t in self.tiers
            ],
            "total": {
                "objects": self.objects,
                "bytes": self.bytes,
                "gb": round(self.gb, 3),
                "usd_month": round(self.usd_month, 4),
            },
            "all_standard_usd_month": round(self.all_standard_usd_month, 4),
            "saving_usd_month": round(self.saving_usd_month, 4),
            "saving_ratio": round(self.saving_ratio, 4),
        }
        if self.forecast is not None:
            f = self.forecast
            out["forecast"] = {
                "month": f.month,
                "days_in_month": f.days_in_month,
                "days_recorded": f.days_recorded,
                "usd_month": round(f.usd_month, 4),
                "budget_usd_month": f.budget_usd_month,
                "budget_ratio": round(f.budget_ratio, 4),
            }
        return out


def cost_report(
    tally: Tally,
    prices: dict[Tier, float],
    at: datetime,
    *,
    budget_usd_month: float | None = None,
    history: Iterable[tuple[date, float]] = (),
) -> CostReport:
    tiers = tuple(
        TierCost(
            tier=t,
            objects=tally.tiers[t].objects,
            bytes=tally.tiers[t].bytes,
            gb=tally.tiers[t].bytes / GB,
            price_gb_month=prices[t],
            usd_month=tally.tiers[t].bytes / GB * prices[t],
        )
        for t in Tier
    )
    all_standard = sum(t.bytes for t in tiers) / GB * prices[Tier.STANDARD]
    rate = sum(t.usd_month for t in tiers)
    forecast = None
    if budget_usd_month is not None:
        forecast = forecast_month(rate, at.date(), budget_usd_month, history)
    return CostReport(at, len(tally.sessions), tiers, all_standard, forecast)


def forecast_month(
    rate_usd_month: float,
    today: date,
    budget_usd_month: float,
    history: Iterable[tuple[date, float]] = (),
) -> Forecast:
    """See `Forecast`: the days before today recorded this month at their rate, today and the
    rest of the month at `rate_usd_month`."""
    days = calendar.monthrange(today.year, today.month)[1]
    earlier = {
        d: r for d, r in history if (d.year, d.month) == (today.year, today.month) and d < today
    }
    left = days - len(earlier)
    usd = (sum(earlier.values()) + rate_usd_month * left) / days
    return Forecast(f"{today:%Y-%m}", days, len(earlier) + 1, usd, budget_usd_month)


class History:
    """Daily $/month rates, one JSON line per day (`{"date": "2026-12-04", "usd_month": 7.86}`);
    the last line written for a day wins. Used only for the forecast."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[tuple[date, float]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        days: dict[date, float] = {}
        for line in lines:
            try:
                entry = json.loads(line)
                days[date.fromisoformat(entry["date"])] = float(entry["usd_month"])
            except (ValueError, KeyError, TypeError):
                continue  # a torn or foreign line: skip it
        return sorted(days.items())

    def record(self, day: date, usd_month: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"date": day.isoformat(), "usd_month": round(usd_month, 6)}))
            out.write("\n")


def format_table(report: CostReport) -> str:
    rows = [("tier", "objects", "GB", "$/GB-month", "$/month")]
    for t in report.tiers:
        rows.append(
            (
                t.tier.value,
                f"{t.objects}",
                f"{t.gb:,.2f}",
                f"{t.price_gb_month:g}",
                f"{t.usd_month:,.2f}",
            )
        )
    rows.append(("total", f"{report.objects}", f"{report.gb:,.2f}", "", f"{report.usd_month:,.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(f"sessions: {report.sessions}")
    lines.append(f"all-Standard: ${report.all_standard_usd_month:,.2f}/month")
    lines.append(f"saving: ${report.saving_usd_month:,.2f}/month ({report.saving_ratio:.0%})")
    if report.forecast is not None:
        f = report.forecast
        lines.append(
            f"forecast {f.month}: ${f.usd_month:,.2f} of a ${f.budget_usd_month:,.2f} budget "
            f"({f.budget_ratio:.0%}; {f.days_recorded} of {f.days_in_month} days recorded)"
        )
    return "\n".join(lines)

"""`sfu lifecycle report` and `simulate`: the cost arithmetic, the forecast, the design's table."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from sfu.config.settings import Settings, load_settings
from sfu.lifecycle import report as lifecycle_report
from sfu.lifecycle.costs import GB, History, Tally, cost_report, forecast_month, prices_of
from sfu.storage import LocalStore
from sfu.storage.base import Tier


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("SFU_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return load_settings(data_dir=tmp_path / "data", storage_budget_month_usd=10.0)


def _args(command: str, **extra: object) -> argparse.Namespace:
    values: dict[str, object] = {"json": True, "png": None, "now": None} | extra
    return argparse.Namespace(command="lifecycle", lifecycle_command=command, **values)


def test_simulate_reproduces_the_design_table(settings: Settings) -> None:
    report, deleted = lifecycle_report.simulate(settings)
    by_tier = {t.tier: t for t in report.tiers}
    assert deleted == 0
    assert report.sessions == 1024
    assert report.bytes == 1024 * GB
    assert [round(by_tier[t].gb, 6) for t in Tier] == [100, 400, 524]
    assert [round(by_tier[t].usd_month, 2) for t in Tier] == [2.55, 4.00, 1.31]
    assert round(report.all_standard_usd_month, 2) == 26.11
    assert round(report.usd_month, 2) == 7.86
    assert round(report.saving_usd_month, 2) == 18.25
    assert round(report.saving_ratio * 100) == 70


def test_simulate_cli_json(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert lifecycle_report.main(_args("simulate"), settings) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"]["usd_month"] == 7.86
    assert out["all_standard_usd_month"] == 26.112
    assert out["saving_ratio"] == pytest.approx(0.699, abs=0.001)
    assert out["deleted_objects"] == 0


@pytest.mark.parametrize(
    ("age", "tier"),
    [
        (0, Tier.STANDARD),
        (29.99, Tier.STANDARD),
        (30, Tier.INFREQUENT_ACCESS),
        (364.9, Tier.INFREQUENT_ACCESS),
        (365, Tier.ARCHIVE),
        (2554.9, Tier.ARCHIVE),
        (2555, None),
    ],
)
def test_age_rules(settings: Settings, age: float, tier: Tier | None) -> None:
    assert lifecycle_report.tier_for_age(age, settings.lifecycle) is tier


def test_forecast_without_and_with_history() -> None:
    today = date(2026, 4, 11)  # 30 days, 10 before today
    assert forecast_month(9.0, today, 10.0).usd_month == pytest.approx(9.0)
    history = [(date(2026, 4, d), 3.0) for d in range(1, 11)] + [(date(2026, 3, 31), 99.0)]
    f = forecast_month(9.0, today, 10.0, history)
    assert f.usd_month == pytest.approx((10 * 3.0 + 20 * 9.0) / 30)
    assert f.days_recorded == 11 and f.days_in_month == 30
    assert f.budget_ratio == pytest.approx(0.7)


def test_history_last_line_of_a_day_wins(tmp_path: Path) -> None:
    history = History(tmp_path / "h" / "cost.jsonl")
    assert history.read() == []
    history.record(date(2026, 4, 1), 1.0)
    history.record(date(2026, 4, 1), 2.0)
    with history.path.open("a") as out:
        out.write("{torn\n")
    history.record(date(2026, 4, 2), 3.0)
    assert history.read() == [(date(2026, 4, 1), 2.0), (date(2026, 4, 2), 3.0)]


def test_tally_counts_sessions_and_tiers() -> None:
    tally = Tally()
    tally.add(Tier.STANDARD, GB, "vod/sessions/a/x.ts")
    tally.add(Tier.ARCHIVE, 2 * GB, "vod/sessions/a/y.ts")
    tally.add(Tier.ARCHIVE, GB, "vod/sessions/b/y.ts")
    report = cost_report(
        tally,
        {Tier.STANDARD: 1.0, Tier.INFREQUENT_ACCESS: 0.5, Tier.ARCHIVE: 0.25},
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert report.sessions == 2 and report.objects == 3
    assert report.usd_month == pytest.approx(1.75)
    assert report.all_standard_usd_month == pytest.approx(4.0)
    assert report.forecast is None


async def _fill(root: Path) -> None:
    store = LocalStore(root)
    for tier, name in ((Tier.STANDARD, "a"), (Tier.INFREQUENT_ACCESS, "b"), (Tier.ARCHIVE, "c")):
        for part in range(3):
            await store.put(
                f"vod/sessions/{name}/{part}.ts", b"x" * 1024, content_type="video/mp2t", tier=tier
            )
    await store.put("elsewhere/z.ts", b"x" * 4096, content_type="video/mp2t")
    await store.close()


def test_report_on_a_local_store(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    asyncio.run(_fill(settings.data_dir / "objects"))
    now = "2026-04-11T03:00:00Z"
    assert lifecycle_report.main(_args("report", now=now), settings) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sessions"] == 3
    assert [t["objects"] for t in out["tiers"]] == [3, 3, 3]
    assert out["total"]["bytes"] == 9 * 1024  # the object outside vod/sessions/ is not counted
    prices = prices_of(settings.lifecycle)
    expected = sum(3 * 1024 / GB * prices[t] for t in Tier)
    assert out["total"]["usd_month"] == round(expected, 4)
    assert out["forecast"]["month"] == "2026-04" and out["forecast"]["budget_usd_month"] == 10.0
    # The day's rate is kept for the month's later forecasts.
    recorded = History(lifecycle_report.history_path(settings)).read()
    assert [d for d, _ in recorded] == [date(2026, 4, 11)]
    assert lifecycle_report.main(_args("report", json=False, now=now), settings) == 0
    text = capsys.readouterr().out
    assert "InfrequentAccess" in text and "forecast 2026-04" in text


def test_report_refuses_a_bad_now(settings: Settings) -> None:
    assert lifecycle_report.main(_args("report", now="yesterday"), settings) == 2


def test_png(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "chart.png"
    assert lifecycle_report.main(_args("simulate", png=path), settings) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_png_without_matplotlib_is_a_clear_error(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert lifecycle_report.main(_args("simulate", png=tmp_path / "c.png"), settings) == 2
    assert "needs matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()

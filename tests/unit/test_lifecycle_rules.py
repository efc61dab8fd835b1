"""The lifecycle's pure parts: age rule, hot and re-watch score, restore states, streaming."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sfu.analytics.plays import MemoryPlayStore, Play
from sfu.config.settings import load_settings
from sfu.lifecycle.catalogue import FactsReader, sessions
from sfu.lifecycle.rules import Action, SessionFacts, decide
from sfu.lifecycle.run_command import parse_now
from sfu.lifecycle.summary import LastRun, RunProgress, RunSummary
from sfu.storage import LocalStore, ObjectArchived, Tier
from sfu.storage.base import RestoreState
from sfu.storage.s3 import restore_state_of
from tests.support.lifecycle import publish_fake

PUBLISHED = datetime(2026, 1, 1, tzinfo=UTC)
CFG = load_settings().lifecycle


def facts(plays: int = 0, mentee_days: float | None = None, mentor_plays: int = 0) -> SessionFacts:
    return SessionFacts(
        "s1", PUBLISHED, "metadata.ended_at", plays, mentee_days, "m1", mentor_plays
    )


@pytest.mark.parametrize(
    ("days", "tier"),
    [
        (0, Tier.STANDARD),
        (30, Tier.STANDARD),
        (31, Tier.INFREQUENT_ACCESS),
        (365, Tier.INFREQUENT_ACCESS),
        (366, Tier.ARCHIVE),
        (2555, Tier.ARCHIVE),
        (2556, None),
    ],
)
def test_age_rule(days: int, tier: Tier | None) -> None:
    decision = decide(facts(), PUBLISHED + timedelta(days=days), CFG)
    assert decision.target is tier
    assert decision.action is (Action.DELETE if tier is None else Action.KEEP)


def test_hot_session_stays_standard_but_is_still_deleted() -> None:
    at = PUBLISHED + timedelta(days=400)
    assert decide(facts(plays=CFG.hot_plays), at, CFG).target is Tier.STANDARD
    assert decide(facts(plays=CFG.hot_plays - 1), at, CFG).target is Tier.ARCHIVE
    gone = decide(facts(plays=100), PUBLISHED + timedelta(days=3000), CFG)
    assert gone.action is Action.DELETE


def test_rewatch_score_keeps_one_tier_warmer() -> None:
    at = PUBLISHED + timedelta(days=400)
    mentee = decide(facts(mentee_days=3.0), at, CFG)
    assert (mentee.mentee_score, mentee.score, mentee.likely) == (1.0, 1.0, True)
    assert mentee.target is Tier.INFREQUENT_ACCESS
    assert decide(facts(mentee_days=45.0), at, CFG).target is Tier.ARCHIVE
    popular = decide(facts(mentor_plays=10), PUBLISHED + timedelta(days=40), CFG)
    assert popular.mentor_score == 1.0 and popular.target is Tier.STANDARD
    half = decide(facts(mentor_plays=5), at, CFG)
    assert half.score == 0.5 and not half.likely and half.target is Tier.ARCHIVE


def test_s3_restore_header() -> None:
    assert restore_state_of(None) is RestoreState.ARCHIVED
    assert restore_state_of('ongoing-request="true"') is RestoreState.PENDING
    header = 'ongoing-request="false", expiry-date="Fri, 21 Dec 2026 00:00:00 GMT"'
    assert restore_state_of(header) is RestoreState.RESTORED


async def test_local_restore_pending_then_restored(tmp_path: Path) -> None:
    clock = [1000.0]
    store = LocalStore(tmp_path, restore_delay_s=60.0, clock=lambda: clock[0])
    await store.put("a.ts", b"x", content_type="video/mp2t", tier=Tier.ARCHIVE)
    assert await store.restore_state("a.ts") is RestoreState.ARCHIVED
    with pytest.raises(ObjectArchived):
        await store.get("a.ts")
    await store.restore("a.ts", hours=1)
    assert await store.restore_state("a.ts") is RestoreState.PENDING
    with pytest.raises(ObjectArchived):
        await store.get("a.ts")
    clock[0] += 61.0
    assert await store.restore_state("a.ts") is RestoreState.RESTORED
    assert await store.get("a.ts") == b"x"
    clock[0] += 3600.0
    assert await store.restore_state("a.ts") is RestoreState.ARCHIVED
    await store.set_tier("a.ts", Tier.STANDARD)
    assert await store.restore_state("a.ts") is RestoreState.NOT_ARCHIVED


async def test_sessions_are_grouped_while_streaming(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for sid in ("a", "b"):
        await publish_fake(store, sid, "2026-01-01T00:00:00+00:00")
    await store.put("vod/other.txt", b"x", content_type="text/plain")
    found = [(s.session_id, len(s.objects)) async for s in sessions(store)]
    assert found == [("a", 7), ("b", 7)]
    ordered = [o.key.rsplit("/", 1)[-1] async for s in sessions(store, "a") for o in s.ordered()]
    assert ordered[-1] == "master.m3u8" and ordered[:3] == ["0.ts", "0.ts", "1.ts"]


async def test_mentor_plays_are_counted_while_streaming(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    for sid in ("a", "b"):
        await publish_fake(store, sid, "2026-01-01T00:00:00+00:00", mentee=f"mentee-{sid}")
    plays = MemoryPlayStore()
    now = PUBLISHED + timedelta(days=100)
    await plays.record(Play("a", now.timestamp() - 3600.0 * i) for i in range(1, 11))
    reader = FactsReader(store, plays, tmp_path / "state", CFG.hot_window_days)
    found = {s.session_id: await reader.facts(s, now) async for s in sessions(store)}
    a, b = found["a"], found["b"]
    assert a is not None and b is not None
    assert (a.plays_in_window, a.mentor_plays) == (10, 0)  # "a" comes first in key order
    assert (b.plays_in_window, b.mentor_plays, b.mentor_id) == (0, 10, "mentor-1")
    assert decide(b, now, CFG).target is Tier.STANDARD  # one warmer than InfrequentAccess
    reader.save_mentors()
    again = FactsReader(store, plays, tmp_path / "state", CFG.hot_window_days)
    (first,) = [await again.facts(s, now) async for s in sessions(store, "a")]
    assert first is not None and first.mentor_plays == 10  # the previous run's total


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal() -> None:
    summary = RunSummary(sessions=2, objects_seen=14, changed=7)
    tty, pipe = _Tty(), io.StringIO()
    for out in (tty, pipe):
        progress = RunProgress(True, out)
        progress.update(summary)
        progress.done(summary)
    line = "\rlifecycle: 2 sessions, 14 objects, 7 moved, 0 deleted"
    assert tty.getvalue() == line + line + "\n"
    assert pipe.getvalue() == ""
    off = _Tty()
    RunProgress(False, off).update(summary)
    assert off.getvalue() == ""


def test_progress_bar_against_the_last_run() -> None:
    clock = [0.0]
    tty = _Tty()
    progress = RunProgress(True, tty, expected=10_000, clock=lambda: clock[0])
    progress.update(RunSummary(sessions=2_500, objects_seen=50_000, changed=3))
    progress.update(RunSummary(sessions=2_600))  # within 0.1 s: not redrawn
    assert tty.getvalue() == (
        "\rlifecycle [######..................]  25% 2,500 of ~10,000 sessions, "
        "50,000 objects, 3 moved, 0 deleted"
    )
    clock[0] = 1.0
    progress.update(RunSummary(sessions=10_001))  # past the last run: a counter, line wiped
    last = tty.getvalue().rsplit("\r", 1)[1]
    assert last.startswith("lifecycle: 10,001 sessions, 0 objects, 0 moved, 0 deleted  ")
    assert len(last) == len("\rlifecycle [######..................]  25% 2,500 of ~10,000 "
        "sessions, 50,000 objects, 3 moved, 0 deleted") - 1  # fmt: skip


def test_last_run_kept_and_bad_file_ignored(tmp_path: Path) -> None:
    path = tmp_path / "lifecycle" / "last_run.json"
    assert LastRun.load(path) is None
    LastRun(10_000, 200_000, 1.5).save(path)
    assert LastRun.load(path) == LastRun(10_000, 200_000, 1.5)
    path.write_text("{not json", encoding="utf-8")
    assert LastRun.load(path) is None


def test_now_is_rfc3339_or_utc() -> None:
    assert parse_now("2027-01-01T00:00:00Z") == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_now("2027-01-01") == datetime(2027, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_now("yesterday")

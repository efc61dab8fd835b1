"""RestoreTracker: one restore per session, pending until every object is readable, retried
with back-off, counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from sfu.storage import LocalStore, StorageError, Tier, restores
from sfu.storage.base import RestoreState
from sfu.storage.restores import (
    RestoreTracker,
    request_session,
    restore_counts,
    restore_metrics,
)
from tests.support.lifecycle import publish_fake, session_keys


async def archived_session(store: LocalStore, session_id: str) -> None:
    await publish_fake(store, session_id, "2026-01-01T00:00:00+00:00")
    for key in session_keys(session_id):
        await store.set_tier(key, Tier.ARCHIVE)


async def test_restore_goes_pending_then_done(tmp_path: Path) -> None:
    clock = [1_000_000.0]
    store = LocalStore(tmp_path / "objects", restore_delay_s=3600.0, clock=lambda: clock[0])
    await archived_session(store, "s1")
    state_path = tmp_path / "restores.json"
    assert await request_session(store, "s1", state_path, now=clock[0]) == "pending"
    states = {await store.restore_state(k) for k in session_keys("s1")}
    assert states == {RestoreState.PENDING}
    asked = [0]
    real_restore = store.restore

    async def counting(key: str, *, hours: int = 24) -> None:
        asked[0] += 1
        await real_restore(key, hours=hours)

    store.restore = counting  # type: ignore[method-assign]
    assert await request_session(store, "s1", state_path, now=clock[0]) == "pending"
    assert asked[0] == 0  # one restore per session: asking again does nothing
    assert restore_counts(state_path).pending == 1
    tracker = RestoreTracker(state_path)
    await tracker.poll(store, clock[0] + 60)
    assert tracker.state("s1") == "pending"
    clock[0] += 3601.0
    counts = await tracker.poll(store, clock[0])
    assert (counts.pending, counts.failed, counts.done) == (0, 0, 1)
    assert tracker.state("s1") == "done"
    assert await store.get("vod/sessions/s1/master.m3u8")


async def test_failing_restore_backs_off_then_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "objects")
    await archived_session(store, "s2")

    async def refuse(key: str, *, hours: int = 24) -> None:
        raise StorageError("service unavailable")

    store.restore = refuse  # type: ignore[method-assign]
    monkeypatch.setattr(restores, "MAX_ATTEMPTS", 3)
    state_path = tmp_path / "restores.json"
    tracker = RestoreTracker(state_path)
    now = 1000.0
    assert await tracker.request(store, "s2", now) == "pending"
    await tracker.poll(store, now + 1)  # within the back-off: not tried again
    entry = restores._read(state_path)["s2"]
    assert entry["attempts"] == 1 and entry["next_try_at"] == now + 2 * restores.BACKOFF_S
    await tracker.poll(store, entry["next_try_at"])
    assert restores._read(state_path)["s2"]["attempts"] == 2
    await tracker.poll(store, 1e9)
    assert tracker.state("s2") == "failed"
    assert restore_counts(state_path).failed == 1
    metrics = restore_metrics(tmp_path.parent / tmp_path.name / "x")
    assert metrics == {"restores_pending": 0, "restores_failed": 0}
    assert await request_session(store, "nothing", state_path) == "failed"

"""Raw recordings are deleted once their VOD is published and the retention time has passed,
and never before (real folders, a real LocalJobQueue)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sfu.recording.local_queue import LocalJobQueue
from sfu.recording.recovery import hand_off
from sfu.recording.session import HEARTBEAT, RecordingSession
from sfu.vod.retention import PUBLISHED_MARKER, RecordingsRetention

HOUR = 3600.0


async def _queued(root: Path, queue: LocalJobQueue, session_id: str) -> Path:
    """A finalised session handed to the queue (with its queued.json), and a track file."""
    session = RecordingSession(root, session_id, "room-1")
    (session.dir / "tracks").mkdir(exist_ok=True)
    (session.dir / "tracks" / "cam.mkv").write_bytes(b"x" * 1000)
    await session.finalise()
    await hand_off(root, queue, session_id)
    return session.dir


async def _published(root: Path, queue: LocalJobQueue, session_id: str) -> Path:
    """A session whose job a worker took and acknowledged (its VOD published)."""
    session_dir = await _queued(root, queue, session_id)
    job = await queue.claim("worker", block_s=0)
    assert job is not None and job.session_id == session_id
    await queue.ack(job)
    return session_dir


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


async def test_retention_zero_deletes_the_recording_once_published(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    queue = LocalJobQueue(tmp_path / "queue")
    session_dir = await _published(root, queue, "SE_now")
    retention = RecordingsRetention(root, queue, 0.0)
    assert await retention.published("SE_now")
    assert not session_dir.exists()
    assert not await retention.published("SE_now")  # twice: nothing left to do


async def test_a_published_recording_is_kept_for_the_retention_time(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    queue = LocalJobQueue(tmp_path / "queue")
    session_dir = await _published(root, queue, "SE_kept")
    retention = RecordingsRetention(root, queue, 24 * HOUR)
    assert not await retention.published("SE_kept")
    assert (session_dir / PUBLISHED_MARKER).exists()
    assert await retention.sweep() == []
    _age(session_dir / PUBLISHED_MARKER, 23 * HOUR)
    assert await retention.sweep() == []
    assert (session_dir / "tracks" / "cam.mkv").exists()
    _age(session_dir / PUBLISHED_MARKER, 25 * HOUR)
    assert await retention.sweep() == ["SE_kept"]
    assert not session_dir.exists()


async def test_only_published_sessions_are_ever_deleted(tmp_path: Path) -> None:
    """Recording, queued, dead: all stay, however old. A session the queue knows as done but
    without a marker (the worker died after the ack) gets one, and its retention starts."""
    root = tmp_path / "recordings"
    queue = LocalJobQueue(tmp_path / "queue", max_attempts=1)
    live = RecordingSession(root, "SE_live", "room-1")
    _age(live.dir / HEARTBEAT, 100 * HOUR)
    await _queued(root, queue, "SE_dead")
    job = await queue.claim("worker", block_s=0)
    assert job is not None and await queue.fail(job, "broken track")  # dead after 1 attempt
    done = await _published(root, queue, "SE_done_unmarked")
    waiting = await _queued(root, queue, "SE_waiting")
    for session_dir in root.iterdir():
        for path in session_dir.rglob("*"):
            _age(path, 100 * HOUR)
    retention = RecordingsRetention(root, queue, 0.5 * HOUR)
    assert await retention.sweep() == []
    assert (done / PUBLISHED_MARKER).exists()  # its retention starts now
    assert {p.name for p in root.iterdir()} == {
        "SE_live",
        "SE_dead",
        "SE_waiting",
        "SE_done_unmarked",
    }
    assert (waiting / "tracks" / "cam.mkv").exists()
    _age(done / PUBLISHED_MARKER, HOUR)
    assert await retention.sweep() == ["SE_done_unmarked"]
    assert {p.name for p in root.iterdir()} == {"SE_live", "SE_dead", "SE_waiting"}


async def test_sweeps_are_spaced_and_a_missing_folder_is_no_error(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    queue = LocalJobQueue(tmp_path / "queue")
    retention = RecordingsRetention(root, queue, 0.0)
    assert await retention.sweep() == []  # no recordings folder yet
    await _published(root, queue, "SE_a")
    (root / "SE_a" / PUBLISHED_MARKER).write_text("{}")
    assert await retention.sweep_if_due() == ["SE_a"]
    await _published(root, queue, "SE_b")
    (root / "SE_b" / PUBLISHED_MARKER).write_text("{}")
    assert await retention.sweep_if_due() == []  # too soon after the last one
    assert await retention.sweep() == ["SE_b"]

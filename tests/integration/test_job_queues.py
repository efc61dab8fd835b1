"""The VOD job queues (local files, Redis Stream) and crash recovery of recording sessions."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from sfu.recording.job_queue import DeadJob, Job, JobQueue, JobState
from sfu.recording.local_queue import LocalJobQueue
from sfu.recording.manifest import SessionManifest
from sfu.recording.recovery import hand_off, recover_unfinished, recover_unqueued
from sfu.recording.redis_queue import RedisJobQueue
from sfu.recording.session import QUEUED_MARKER, RecordingSession
from sfu.testing.process import redis_server

MakeQueue = Callable[..., JobQueue]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as port:
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture(params=["local", "redis"])
async def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeQueue]:
    """A factory: every queue it makes shares one store (a folder, or a Redis stream)."""
    made: list[JobQueue] = []
    stream = f"test:{uuid.uuid4().hex[:8]}"

    def make(max_attempts: int = 3) -> JobQueue:
        queue: JobQueue
        if request.param == "local":
            queue = LocalJobQueue(tmp_path / "queue", max_attempts=max_attempts)
        else:
            url = request.getfixturevalue("redis_url")
            queue = RedisJobQueue(url, stream=stream, max_attempts=max_attempts)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await queue.close()


async def test_enqueue_is_idempotent_per_session(make_queue: MakeQueue) -> None:
    queue = make_queue()
    await queue.enqueue("s1")
    await queue.enqueue("s1")
    await queue.enqueue("s2")
    assert await queue.pending_count() == 2
    job = await queue.claim("a", block_s=0.1)
    assert job is not None
    await queue.enqueue(job.session_id)  # claimed: still no duplicate
    assert await queue.pending_count() == 2
    other = await queue.claim("a", block_s=0.1)
    assert other is not None and other.session_id != job.session_id
    assert await queue.claim("a", block_s=0.1) is None


async def test_claim_is_exclusive(make_queue: MakeQueue) -> None:
    first, second = make_queue(), make_queue()
    await first.enqueue("only")
    jobs = await asyncio.gather(first.claim("a", block_s=0.3), second.claim("b", block_s=0.3))
    taken = [j for j in jobs if j is not None]
    assert len(taken) == 1 and taken[0].session_id == "only" and taken[0].attempts == 0


async def test_claim_waits_a_bounded_time(make_queue: MakeQueue) -> None:
    queue = make_queue()
    began = time.monotonic()
    assert await queue.claim("a", block_s=0.3) is None
    assert 0.25 <= time.monotonic() - began < 3


async def test_ack_removes_and_allows_a_new_job(make_queue: MakeQueue) -> None:
    queue = make_queue()
    await queue.enqueue("s1")
    job = await queue.claim("a", block_s=0.1)
    assert job is not None
    await queue.ack(job)
    assert await queue.pending_count() == 0
    assert await queue.claim("a", block_s=0.1) is None
    await queue.enqueue("s1")  # published sessions may be queued again
    again = await queue.claim("a", block_s=0.1)
    assert again is not None and again.session_id == "s1" and again.attempts == 0


async def test_fail_retries_then_dead(make_queue: MakeQueue) -> None:
    queue = make_queue(max_attempts=2)
    await queue.enqueue("bad")
    job = await queue.claim("a", block_s=0.1)
    assert job is not None
    assert await queue.fail(job, "boom") is False
    retry = await queue.claim("a", block_s=0.1)
    assert retry is not None and retry.session_id == "bad" and retry.attempts == 1
    assert await queue.fail(retry, "boom again") is True
    assert await queue.claim("a", block_s=0.1) is None
    assert await queue.pending_count() == 0


async def test_stale_claim_is_reclaimed(make_queue: MakeQueue) -> None:
    queue = make_queue()
    await queue.enqueue("s1")
    job = await queue.claim("dead-worker", block_s=0.1)
    assert job is not None
    assert await queue.reclaim("b", idle_s=5) == []  # not stale yet
    await asyncio.sleep(0.6)
    taken = await queue.reclaim("b", idle_s=0.5)
    assert [(j.session_id, j.attempts) for j in taken] == [("s1", 1)]
    assert await queue.reclaim("c", idle_s=0.5) == []  # b holds it freshly now
    await queue.ack(taken[0])
    assert await queue.pending_count() == 0


async def test_heartbeat_keeps_a_claim(make_queue: MakeQueue) -> None:
    queue = make_queue()
    await queue.enqueue("s1")
    job = await queue.claim("a", block_s=0.1)
    assert job is not None
    for _ in range(4):
        await asyncio.sleep(0.2)
        await queue.heartbeat(job, "a")
    assert await queue.reclaim("b", idle_s=0.5) == []


async def test_durable_across_instances(make_queue: MakeQueue) -> None:
    first = make_queue()
    await first.enqueue("s1")
    await first.enqueue("s2")
    claimed = await first.claim("a", block_s=0.1)
    assert claimed is not None
    await first.close()
    second = make_queue()
    assert await second.pending_count() == 2
    other = await second.claim("b", block_s=0.1)
    assert other is not None and other.session_id != claimed.session_id
    await asyncio.sleep(0.3)
    await second.heartbeat(other, "b")  # b is alive; a's claim is stale
    assert [j.session_id for j in await second.reclaim("c", idle_s=0.2)] == [claimed.session_id]


def test_local_queue_files(tmp_path: Path) -> None:
    queue = LocalJobQueue(tmp_path)

    async def scenario() -> None:
        await queue.enqueue("s1")
        assert (tmp_path / "pending/s1.json").is_file()
        job = await queue.claim("w1", block_s=0)
        assert job is not None
        assert (tmp_path / "claimed/w1/s1.json").is_file()
        assert not (tmp_path / "pending/s1.json").exists()
        await queue.ack(job)
        assert (tmp_path / "done/s1.json").is_file()
        with pytest.raises(ValueError):
            await queue.enqueue("../escape")

    asyncio.run(scenario())


async def test_recover_unfinished(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    session = root / "crashed"
    (session / "tracks").mkdir(parents=True)
    started = int(time.time()) - 100
    track = session / "tracks/p1-camera-0.mkv"
    track.write_bytes(b"x")
    os.utime(track, (started + 42.5, started + 42.5))
    closed = session / "tracks/p1-microphone-0.mkv"
    closed.write_bytes(b"x")
    manifest = {
        "session_id": "crashed",
        "room_id": "room-9",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)) + "Z",
        "status": "recording",
        "participants": [
            {"participant_id": "p1", "user_id": "u1", "name": "Kim", "role": "mentor",
             "joined_at_s": 0.0, "left_at_s": None},
        ],
        "tracks": [
            {"track_id": "t1", "participant_id": "p1", "kind": "video", "source": "camera",
             "codec": "vp8", "file": "tracks/p1-camera-0.mkv", "start_s": 1.0, "end_s": None,
             "segment": 0},
            {"track_id": "t2", "participant_id": "p1", "kind": "audio",
             "source": "microphone", "codec": "opus", "file": "tracks/p1-microphone-0.mkv",
             "start_s": 0.0, "end_s": 30.0, "segment": 0},
        ],
    }  # fmt: skip
    (session / "manifest.json").write_text(json.dumps(manifest))
    done = root / "fine"
    done.mkdir()
    (done / "manifest.json").write_text(json.dumps({**manifest, "session_id": "fine",
                                                    "status": "finalised"}))  # fmt: skip
    queue = LocalJobQueue(tmp_path / "queue")
    assert await recover_unfinished(root, queue) == ["crashed"]
    fixed = SessionManifest.read(session / "manifest.json")
    assert fixed.status == "finalised"
    ends = {t.track_id: t.end_s for t in fixed.tracks}
    assert ends["t2"] == 30.0
    assert ends["t1"] is not None and abs(ends["t1"] - 42.5) < 1.01
    assert fixed.participants[0].left_at_s == ends["t1"]
    assert fixed.ended_at is not None and fixed.ended_at.startswith(
        time.strftime("%Y-%m-%dT%H:%M", time.gmtime(started + ends["t1"]))
    )
    job = await queue.claim("w", block_s=0)
    assert job is not None and job.session_id == "crashed"
    assert (session / QUEUED_MARKER).is_file()  # handed off: not queued again at next start
    assert not (done / QUEUED_MARKER).exists()  # finalised before: recover_unqueued's business
    assert await recover_unfinished(root, queue) == []  # nothing left "recording"


async def test_publish_never_replaces_a_segment(tmp_path: Path) -> None:
    from sfu.storage import LocalStore
    from sfu.vod.publish import SegmentConflict, publish_dir

    out = tmp_path / "out"
    (out / "720p").mkdir(parents=True)
    (out / "720p/seg0.ts").write_bytes(b"segment-0")
    (out / "720p/index.m3u8").write_text("#EXTM3U\nseg0.ts\n")
    (out / "master.m3u8").write_text("#EXTM3U\n720p/index.m3u8\n")
    store = LocalStore(tmp_path / "objects")
    first = await publish_dir(store, "s1", out)
    assert first.uploaded[-1] == "vod/sessions/s1/master.m3u8"  # the master goes last
    assert first.uploaded[0] == "vod/sessions/s1/720p/seg0.ts"  # segments first
    info = await store.head("vod/sessions/s1/720p/seg0.ts")
    assert info.content_type == "video/mp2t" and "immutable" in (info.cache_control or "")
    again = await publish_dir(store, "s1", out)
    assert again.uploaded == () and len(again.unchanged) == 3
    (out / "720p/seg0.ts").write_bytes(b"segment-X")  # same size, other bytes
    with pytest.raises(SegmentConflict):
        await publish_dir(store, "s1", out)
    assert await store.get("vod/sessions/s1/720p/seg0.ts") == b"segment-0"


# --- dead letters an operator can act on ---------------------------------------------------


async def _kill(queue: JobQueue, session_id: str, reason: str) -> None:
    """Enqueue the session and fail its job until it is dead."""
    await queue.enqueue(session_id)
    for _ in range(queue.max_attempts):
        job = await queue.claim("w", block_s=0.1)
        assert job is not None and job.session_id == session_id
        if await queue.fail(job, reason):
            return
    raise AssertionError(f"{session_id} did not die")


async def test_state_follows_the_job(make_queue: MakeQueue) -> None:
    queue = make_queue(max_attempts=1)
    assert await queue.state("s1") is None
    await queue.enqueue("s1")
    assert await queue.state("s1") == "queued"
    job = await queue.claim("a", block_s=0.1)
    assert job is not None
    assert await queue.state("s1") == "queued"  # claimed is still queued
    await queue.ack(job)
    assert await queue.state("s1") == "done"
    await _kill(queue, "s2", "boom")
    assert await queue.state("s2") == "dead"
    assert await queue.state("s3") is None


async def test_dead_jobs_are_listed_and_requeued(make_queue: MakeQueue) -> None:
    queue = make_queue(max_attempts=2)
    before = time.time()
    await _kill(queue, "bad-1", "RenderError: no video")
    await _kill(queue, "bad-2", "OSError: disk full")
    await queue.enqueue("fine")
    dead = await queue.list_dead()
    assert [(d.session_id, d.attempts, d.reason) for d in dead] == [
        ("bad-1", 2, "RenderError: no video"),
        ("bad-2", 2, "OSError: disk full"),
    ]
    for d in dead:
        failed_at = datetime.fromisoformat(d.failed_at.replace("Z", "+00:00")).timestamp()
        assert before - 1 <= failed_at <= time.time() + 1
        assert d.job_id
        assert set(json.loads(json.dumps(d.to_json()))) == {
            "session_id", "job_id", "attempts", "reason", "failed_at"
        }  # fmt: skip

    assert await queue.requeue("nope") is False
    assert await queue.requeue("fine") is False  # queued, not dead
    assert await queue.requeue("bad-1") is True
    assert await queue.requeue("bad-1") is False  # no longer dead
    assert [d.session_id for d in await queue.list_dead()] == ["bad-2"]
    assert await queue.state("bad-1") == "queued"
    assert await queue.pending_count() == 2
    jobs = {}
    for _ in range(2):
        job = await queue.claim("w", block_s=0.1)
        assert job is not None
        jobs[job.session_id] = job
    assert set(jobs) == {"fine", "bad-1"}
    assert jobs["bad-1"].attempts == 0  # a fresh start: max_attempts more tries
    assert await queue.fail(jobs["bad-1"], "again") is False
    retry = await queue.claim("w", block_s=0.1)
    assert retry is not None and retry.session_id == "bad-1" and retry.attempts == 1
    await queue.ack(retry)
    assert await queue.state("bad-1") == "done"
    assert [d.session_id for d in await queue.list_dead()] == ["bad-2"]


async def test_a_session_dead_twice_is_listed_once(make_queue: MakeQueue) -> None:
    queue = make_queue(max_attempts=1)
    await _kill(queue, "s1", "first")
    await queue.enqueue("s1")  # queued again (not requeued): its dead letter stays
    await _kill(queue, "s1", "second")
    assert [(d.session_id, d.reason) for d in await queue.list_dead()] == [("s1", "second")]
    assert await queue.requeue("s1") is True
    assert await queue.list_dead() == []
    assert await queue.pending_count() == 1


async def test_concurrent_requeues_enqueue_once(make_queue: MakeQueue) -> None:
    first, second = make_queue(max_attempts=1), make_queue(max_attempts=1)
    await _kill(first, "s1", "boom")
    results = await asyncio.gather(first.requeue("s1"), second.requeue("s1"))
    assert sorted(results) == [False, True]
    assert await first.pending_count() == 1
    assert await first.list_dead() == []


def test_local_dead_letter_of_an_unreadable_job(tmp_path: Path) -> None:
    queue = LocalJobQueue(tmp_path)
    (tmp_path / "pending/broken.json").write_text("{not json")

    async def scenario() -> None:
        assert await queue.claim("w", block_s=0) is None  # moved to dead/
        [dead] = await queue.list_dead()
        assert dead.session_id == "broken" and "unreadable" in dead.reason
        assert await queue.requeue("broken") is True
        job = await queue.claim("w", block_s=0)
        assert job is not None and job.session_id == "broken" and job.attempts == 0

    asyncio.run(scenario())


def test_local_requeue_interrupted_by_a_crash(tmp_path: Path) -> None:
    queue = LocalJobQueue(tmp_path, max_attempts=1)

    async def scenario() -> None:
        await _kill(queue, "s1", "boom")
        # a requeue took the dead letter (its rename) and the process died before enqueueing
        leftover = tmp_path / "dead/s1.json.requeue-0123"
        os.rename(tmp_path / "dead/s1.json", leftover)
        assert [(d.session_id, d.reason) for d in await queue.list_dead()] == [("s1", "boom")]
        assert await queue.state("s1") == "dead"
        assert await queue.requeue("s1") is False  # may still be in progress: left alone
        old = time.time() - 120
        os.utime(leftover, (old, old))  # that requeue is long dead
        assert await queue.requeue("s1") is True
        assert await queue.list_dead() == [] and list((tmp_path / "dead").iterdir()) == []
        job = await queue.claim("w", block_s=0)
        assert job is not None and job.session_id == "s1" and job.attempts == 0

    asyncio.run(scenario())


# --- finalised but never queued ------------------------------------------------------------


async def _finalised(root: Path, session_id: str) -> Path:
    """A real session, finalised on disk (what RoomRecording.finish does before the hand-off)."""
    session = RecordingSession(root, session_id, "room-1")
    session.participant_joined("p1", "u1", "Kim", "mentor")
    await session.finalise()
    assert SessionManifest.read(session.manifest_path).status == "finalised"
    return session.dir


async def test_crash_before_enqueue_is_recovered(make_queue: MakeQueue, tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    lost = await _finalised(root, "lost")  # the SFU died here: finalised, never enqueued
    queue = make_queue()
    assert await recover_unqueued(root, queue) == ["lost"]
    assert (lost / QUEUED_MARKER).is_file()
    job = await queue.claim("w", block_s=0.1)
    assert job is not None and job.session_id == "lost"
    assert await recover_unqueued(root, queue) == []  # marked: not again at the next start
    await queue.ack(job)
    assert await recover_unqueued(root, make_queue()) == []  # a restart: published, not again
    assert await queue.pending_count() == 0


async def test_recovery_never_requeues_what_the_queue_knows(
    make_queue: MakeQueue, tmp_path: Path
) -> None:
    root = tmp_path / "recordings"
    queue = make_queue(max_attempts=1)
    for name in ("queued", "published", "dead", "marked", "unknown"):
        await _finalised(root, name)
    RecordingSession(root, "live", "room-2")  # still "recording": recover_unfinished's business
    # crashes after the enqueue, before the marker: the queue holds each at another stage
    await queue.enqueue("queued")
    await queue.enqueue("published")
    job = await queue.claim("w", block_s=0.1)
    assert job is not None and job.session_id == "queued"
    other = await queue.claim("w", block_s=0.1)
    assert other is not None and other.session_id == "published"
    await queue.ack(other)
    await _kill(queue, "dead", "boom")
    await hand_off(root, queue, "marked")
    marked = await queue.claim("w", block_s=0.1)
    assert marked is not None and marked.session_id == "marked"
    await queue.ack(marked)
    await queue.enqueue("marked-again")  # a job whose session folder is gone: ignored

    assert await recover_unqueued(root, queue) == ["unknown"]
    for name in ("queued", "published", "dead", "marked", "unknown"):
        assert (root / name / QUEUED_MARKER).is_file(), name
    assert not (root / "live" / QUEUED_MARKER).exists()
    assert await queue.state("published") == "done"  # not rendered a second time
    assert [d.session_id for d in await queue.list_dead()] == ["dead"]
    assert await queue.pending_count() == 3  # queued (claimed), marked-again, unknown
    assert await recover_unqueued(root, queue) == []


def _refused() -> Exception:
    from redis.exceptions import ConnectionError as RedisConnectionError

    return RedisConnectionError("Connection refused")


class _Unreachable:
    """A queue on a Redis that is down: every call is refused (closing has nothing to do)."""

    max_attempts = 3

    async def enqueue(self, session_id: str) -> None:
        raise _refused()

    async def claim(self, consumer: str, *, block_s: float) -> Job | None:
        raise _refused()

    async def ack(self, job: Job) -> None:
        raise _refused()

    async def fail(self, job: Job, reason: str) -> bool:
        raise _refused()

    async def heartbeat(self, job: Job, consumer: str) -> None:
        raise _refused()

    async def reclaim(self, consumer: str, *, idle_s: float) -> list[Job]:
        raise _refused()

    async def pending_count(self) -> int:
        raise _refused()

    async def state(self, session_id: str) -> JobState | None:
        raise _refused()

    async def list_dead(self) -> list[DeadJob]:
        raise _refused()

    async def requeue(self, session_id: str) -> bool:
        raise _refused()

    async def close(self) -> None:
        pass


async def test_failed_hand_off_leaves_no_marker(make_queue: MakeQueue, tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    session = await _finalised(root, "s1")
    with pytest.raises(ConnectionError, match="vod queue unavailable"):
        await hand_off(root, _Unreachable(), "s1")
    assert not (session / QUEUED_MARKER).exists()
    queue = make_queue()
    assert await recover_unqueued(root, queue) == ["s1"]  # the next start queues it
    await hand_off(root, queue, "s1")  # a late retry of the hand-off: still one job
    assert await queue.pending_count() == 1

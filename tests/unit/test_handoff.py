"""The VOD job queues (local files, Redis Stream) and crash recovery of recording sessions."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from sfu.recording.handoff import JobQueue, LocalJobQueue, RedisJobQueue, recover_unfinished
from sfu.recording.session import SessionManifest
from tests.sfu_process import redis_server

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

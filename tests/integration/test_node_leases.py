"""Node leases in a real Redis, and the watch that spares a node holding one: a node whose
writes to the shared recordings volume stall (stale heartbeats) keeps its live sessions, and
loses them to adoption only once its lease has expired too."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sfu.recording.leases import NoNodeLeases, RedisNodeLeases, node_leases
from sfu.recording.local_queue import LocalJobQueue
from sfu.recording.manifest import MANIFEST
from sfu.recording.session import RecordingSession
from sfu.recording.watch import RecordingWatch
from sfu.testing.process import free_tcp_port, redis_server
from tests.support.recordings import ORPHAN_S, stale_session


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as port:
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def key() -> str:
    return f"test:nodes:{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def opened() -> AsyncIterator[list[RedisNodeLeases]]:
    made: list[RedisNodeLeases] = []
    yield made
    for leases in made:
        await leases.close()


def _leases(
    opened: list[RedisNodeLeases], url: str, node: str, key: str, ttl_s: float = ORPHAN_S
) -> RedisNodeLeases:
    leases = RedisNodeLeases(url, node, ttl_s, key=key)
    opened.append(leases)
    return leases


def _stale_session(root: Path, session_id: str, node_id: str) -> RecordingSession:
    """A session in "recording" whose heartbeat has been silent for longer than the orphan
    time, as one on a volume its node cannot write to."""
    return stale_session(root, session_id, node_id, age_s=ORPHAN_S + 5)


def _status(root: Path, session_id: str) -> str:
    return str(json.loads((root / session_id / MANIFEST).read_text())["status"])


async def test_a_lease_is_held_until_it_expires_or_is_released(
    redis_url: str, key: str, opened: list[RedisNodeLeases]
) -> None:
    a = _leases(opened, redis_url, "node-a", key, ttl_s=0.4)
    b = _leases(opened, redis_url, "node-b", key)
    assert await a.alive() == frozenset()
    await a.renew()
    await b.renew()
    assert await b.alive() == {"node-a", "node-b"}
    await asyncio.sleep(0.6)  # a's ttl passes without a renewal
    assert await b.alive() == {"node-b"}
    await a.renew()
    assert await a.alive() == {"node-a", "node-b"}
    await b.release()
    await b.release()  # twice is harmless
    assert await a.alive() == {"node-a"}


async def test_an_unreachable_redis_is_a_connection_error(opened: list[RedisNodeLeases]) -> None:
    leases = _leases(opened, f"redis://127.0.0.1:{free_tcp_port()}/0", "node-a", "k", ttl_s=3)
    with pytest.raises(ConnectionError):
        await leases.renew()
    with pytest.raises(ConnectionError):
        await leases.alive()
    await leases.release()  # logged, never raised: the lease expires by itself


async def test_without_redis_nobody_holds_a_lease() -> None:
    leases = node_leases(None, "node-a", ORPHAN_S)
    assert isinstance(leases, NoNodeLeases)
    await leases.renew()
    assert await leases.alive() == frozenset()


async def test_a_stalled_node_keeps_its_sessions_until_its_lease_expires(
    tmp_path: Path, redis_url: str, key: str, opened: list[RedisNodeLeases]
) -> None:
    root = tmp_path / "recordings"
    _stale_session(root, "SE_stalled", "node-b")
    _stale_session(root, "SE_gone", "node-c")
    queue = LocalJobQueue(tmp_path / "queue")
    stalled = _leases(opened, redis_url, "node-b", key, ttl_s=0.5)
    await stalled.renew()
    watch = RecordingWatch(
        root,
        queue,
        list,
        node_id="node-a",
        orphan_s=ORPHAN_S,
        leases=_leases(opened, redis_url, "node-a", key),
    )
    # node-b's heartbeats are stale but it holds its lease: only node-c's session is taken.
    assert await watch.scan() == ["SE_gone"]
    assert _status(root, "SE_stalled") == "recording"
    assert await queue.state("SE_stalled") is None
    # node-b stops renewing (it died): once the lease has expired, its session is adopted.
    await asyncio.sleep(0.7)
    assert await watch.scan() == ["SE_stalled"]
    assert _status(root, "SE_stalled") == "finalised"
    assert await queue.state("SE_stalled") is not None
    await watch.close()
    await queue.close()


async def test_a_nodes_own_stale_session_that_is_not_live_is_taken(
    tmp_path: Path, redis_url: str, key: str, opened: list[RedisNodeLeases]
) -> None:
    """A room of this node closed but its session could not be finalised (a full disk): it is
    no longer live here, so this node's own scan takes it once stale, lease or not."""
    root = tmp_path / "recordings"
    _stale_session(root, "SE_unfinished", "node-a")
    live = _stale_session(root, "SE_live", "node-a")
    queue = LocalJobQueue(tmp_path / "queue")
    leases = _leases(opened, redis_url, "node-a", key)
    await leases.renew()
    watch = RecordingWatch(
        root, queue, lambda: [live], node_id="node-a", orphan_s=ORPHAN_S, leases=leases
    )
    assert await watch.scan() == ["SE_unfinished"]
    assert _status(root, "SE_live") == "recording"
    await watch.close()
    await queue.close()


async def test_unreadable_leases_mean_no_adoption(
    tmp_path: Path, opened: list[RedisNodeLeases]
) -> None:
    """Redis down: a scan adopts nothing (it cannot tell a stalled node from a dead one), and
    a node that starts takes only its own leftovers."""
    root = tmp_path / "recordings"
    _stale_session(root, "SE_other", "node-b")
    _stale_session(root, "SE_mine", "node-a")
    queue = LocalJobQueue(tmp_path / "queue")
    down = _leases(opened, f"redis://127.0.0.1:{free_tcp_port()}/0", "node-a", "k", ttl_s=3)
    watch = RecordingWatch(root, queue, list, node_id="node-a", orphan_s=ORPHAN_S, leases=down)
    assert await watch.recover_at_start() == (["SE_mine"], [])
    assert await watch.scan() == []
    assert _status(root, "SE_other") == "recording"
    await watch.close()
    await queue.close()


async def test_the_watch_holds_its_lease_while_it_runs_and_gives_it_up(
    tmp_path: Path, redis_url: str, key: str, opened: list[RedisNodeLeases]
) -> None:
    observer = _leases(opened, redis_url, "observer", key)
    watch = RecordingWatch(
        tmp_path,
        LocalJobQueue(tmp_path / "queue"),
        list,
        node_id="node-a",
        orphan_s=0.6,  # renewed every 0.1 s, expires after 0.6 s
        leases=_leases(opened, redis_url, "node-a", key, ttl_s=0.6),
    )
    await watch.recover_at_start()
    watch.start()
    try:
        for _ in range(5):  # well past one ttl: held because it is renewed
            await asyncio.sleep(0.3)
            assert await observer.alive() == {"node-a"}
    finally:
        await watch.close()
    assert await observer.alive() == frozenset()

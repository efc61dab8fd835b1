"""Several SFU nodes as one service (issue 14): real `sfu serve` processes sharing a real
`redis-server` on loopback, driven by the backend's REST calls and headless clients."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web

from sfu.client.client import SfuClient
from sfu.client.model import JoinRefused
from sfu.client.remote import RemoteTrackInfo
from sfu.testing.process import RedisProcess, SfuProcess
from tests.support.cluster import (
    HEARTBEAT_S,
    NODE_TTL_S,
    call,
    make_node,
    node_ids,
    until,
)
from tests.support.hook_server import serving_hooks
from tests.support.rooms import LOOPBACK, camera, connect, microphone

FRAMES = 30
_pairs = itertools.count()


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisProcess]:
    server = RedisProcess()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def trio(redis: RedisProcess) -> Iterator[list[SfuProcess]]:
    """Three nodes, A, B and C, for the tests that leave them running."""
    nodes = [make_node(redis, f"node-{name}") for name in "abc"]
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def by_id(nodes: list[SfuProcess], node_id: str) -> SfuProcess:
    return next(n for n in nodes if n.env["SFU_NODE_ID"] == node_id)


async def wait_registered(via: SfuProcess, count: int) -> None:
    async def registered() -> bool:
        return len(await node_ids(via)) == count

    await until(registered, 10, f"{count} nodes registered")


async def exchange_media(one: SfuClient, other: SfuClient) -> None:
    """Both publish camera and microphone; each decodes the other's video and audio."""
    await one.publish({camera(): "camera", microphone(): "microphone"})
    await other.publish({camera(): "camera", microphone(): "microphone"})
    for viewer, sender in ((one, other), (other, one)):

        def video(i: RemoteTrackInfo, s: SfuClient = sender) -> bool:
            return i.participant_id == s.participant_id and i.kind == "video"

        def audio(i: RemoteTrackInfo, s: SfuClient = sender) -> bool:
            return i.participant_id == s.participant_id and i.kind == "audio"

        frame = await viewer.wait_frames(video, FRAMES, timeout=30)
        assert (frame.width, frame.height) == (640, 480)
        assert (await viewer.wait_frames(audio, 25, timeout=30)).samples > 0


# --- three nodes as one SFU ------------------------------------------------------------------


async def test_every_node_lists_the_live_nodes(trio: list[SfuProcess]) -> None:
    await wait_registered(trio[2], 3)
    nodes = await node_ids(trio[2])
    assert set(nodes) == {"node-a", "node-b", "node-c"}
    for node in trio:
        entry = nodes[node.env["SFU_NODE_ID"]]
        assert entry["internal_url"] == node.url
        assert entry["draining"] is False and entry["free_ports"] > 0
        assert entry["media_address"] == "127.0.0.1"
    status, body = await call(trio[0], "GET", "/nodes", headers={"Authorization": "Bearer x"})
    assert (status, body["error"]["code"]) == (401, "unauthorized")


async def test_a_room_is_joined_through_another_node_and_media_flows_both_ways(
    trio: list[SfuProcess], clients: list[SfuClient]
) -> None:
    await wait_registered(trio[0], 3)
    status, room = await call(trio[0], "POST", "/rooms", json={"room_id": "relayed"})
    assert status == 201, room
    owner = by_id(trio, room["node_id"])
    relay, third = (n for n in trio if n is not owner)
    mentor = await connect(clients, owner, "relayed", "mentor", "mentor-1")
    mentee = await connect(clients, relay, "relayed", "mentee", "mentee-1")
    assert mentee.messages[0]["room"]["node_id"] == owner.env["SFU_NODE_ID"]
    await exchange_media(mentor, mentee)
    assert await mentee.ping() < 5

    status, listed = await call(third, "GET", "/rooms")
    assert status == 200
    (entry,) = [r for r in listed["rooms"] if r["room_id"] == "relayed"]
    assert entry["node_id"] == owner.env["SFU_NODE_ID"]
    assert sorted(p["role"] for p in entry["participants"]) == ["mentee", "mentor"]
    for node in trio:  # the same body through every node
        status, body = await call(node, "GET", "/rooms/relayed")
        assert status == 200 and body["room_id"] == "relayed"
        assert body["node_id"] == owner.env["SFU_NODE_ID"]

    # the owner's close code reaches the relayed socket: removed through a third node
    status, _ = await call(third, "DELETE", f"/rooms/relayed/participants/{mentee.participant_id}")
    assert status == 204
    assert await mentee.wait_closed(timeout=10) == 1000
    status, body = await call(third, "DELETE", "/rooms/relayed")
    assert (status, body["room_id"]) == (200, "relayed")
    assert await mentor.wait_closed(timeout=10) == 1000
    for node in trio:
        status, body = await call(node, "GET", "/rooms/relayed")
        assert (status, body["error"]["code"]) == (404, "room_not_found")


async def test_the_same_room_id_created_on_two_nodes_at_once_is_created_once(
    trio: list[SfuProcess],
) -> None:
    await wait_registered(trio[0], 3)
    for attempt in range(5):
        room_id = f"race-{attempt}"
        answers = await asyncio.gather(
            *(call(node, "POST", "/rooms", json={"room_id": room_id}) for node in trio[:2])
        )
        assert sorted(status for status, _ in answers) == [201, 409], answers
        (conflict,) = [body for status, body in answers if status == 409]
        assert conflict["error"]["code"] == "room_exists"
        assert (await call(trio[2], "DELETE", f"/rooms/{room_id}"))[0] == 200


async def test_a_burst_of_creations_spreads_over_the_nodes(trio: list[SfuProcess]) -> None:
    await wait_registered(trio[0], 3)
    placed: dict[str, int] = {}
    for index in range(10):
        status, room = await call(trio[0], "POST", "/rooms", json={"room_id": f"burst-{index}"})
        assert status == 201, room
        placed[room["node_id"]] = placed.get(room["node_id"], 0) + 1
        assert room["ws_url"] == trio[0].ws_url  # where the backend's call came in
    assert set(placed) == {"node-a", "node-b", "node-c"}, placed
    assert min(placed.values()) >= 2, placed
    status, listed = await call(trio[1], "GET", "/rooms")
    assert sorted(r["room_id"] for r in listed["rooms"] if r["room_id"].startswith("burst-")) == (
        sorted(f"burst-{i}" for i in range(10))
    )
    for index in range(10):
        assert (await call(trio[2], "DELETE", f"/rooms/burst-{index}"))[0] == 200


async def test_auth_holds_through_the_relay_and_the_forwarding(
    trio: list[SfuProcess], clients: list[SfuClient]
) -> None:
    await wait_registered(trio[0], 3)
    status, room = await call(trio[0], "POST", "/rooms", json={"room_id": "guarded"})
    assert status == 201
    owner = by_id(trio, room["node_id"])
    other = next(n for n in trio if n is not owner)
    # a bad token is refused by the node the socket reaches; so is a token for another room
    with pytest.raises(JoinRefused) as refused:
        await SfuClient.connect(other.ws_url, "not-a-token", ice=LOOPBACK, timeout=10)
    assert refused.value.close_code == 4401
    with pytest.raises(JoinRefused) as refused:
        await connect(clients, other, "no-such-room", "mentee", "m")
    assert refused.value.close_code == 4404
    # REST through a node that forwards: no service token, no answer from the owner
    status, body = await call(other, "GET", "/rooms/guarded", headers={"Authorization": "x"})
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    # a made-up node token does not make a client's call an internal one
    forged = {"X-SFU-Node": "eyJhbGciOiJIUzI1NiJ9.e30.x"}
    status, listed = await call(other, "GET", "/rooms", headers=forged)
    assert status == 200 and "guarded" in [r["room_id"] for r in listed["rooms"]]
    status, body = await call(other, "GET", "/rooms/guarded", headers=forged)
    assert (status, body["node_id"]) == (200, owner.env["SFU_NODE_ID"])
    assert (await call(other, "DELETE", "/rooms/guarded"))[0] == 200


# --- drain, node loss, Redis loss ------------------------------------------------------------


@pytest.fixture
async def hooks() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(json.loads(await request.read()))
        return web.Response(status=204)

    async with serving_hooks(handle) as url:
        yield url, received


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    """A Redis of the test's own: the test stops it, or its nodes must be alone on it."""
    server = RedisProcess()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pair(
    own_redis: RedisProcess, hooks: tuple[str, list[dict[str, Any]]]
) -> Iterator[list[SfuProcess]]:
    """Two nodes of their own (each test stops or kills one), sending webhooks."""
    round_ = next(_pairs)
    nodes = [
        make_node(
            own_redis, f"pair{round_}-{name}", SFU_WEBHOOK_URL=hooks[0], SFU_DRAIN_TIMEOUT_S="4"
        )
        for name in "xy"
    ]
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.kill()
                node.proc.wait(5)


async def room_on(nodes: list[SfuProcess], room_id: str) -> tuple[SfuProcess, SfuProcess]:
    """Create `room_id` (placed by the cluster); (the node that holds it, the other)."""
    status, room = await call(nodes[0], "POST", "/rooms", json={"room_id": room_id})
    assert status == 201, room
    owner = by_id(nodes, room["node_id"])
    return owner, next(n for n in nodes if n is not owner)


async def exit_code(node: SfuProcess, timeout: float) -> int:
    """The node's exit status, waited for off the event loop (which serves the webhooks). A
    node that does not exit is asked to log its asyncio tasks (SIGUSR1), for the failure."""
    assert node.proc is not None
    try:
        return await asyncio.to_thread(node.proc.wait, timeout)
    except subprocess.TimeoutExpired:
        node.proc.send_signal(signal.SIGUSR1)
        await asyncio.sleep(2)
        tail = node.log_path.read_text(errors="replace")[-6000:]
        raise AssertionError(f"{node.log_path} did not exit within {timeout} s:\n{tail}") from None


async def test_a_draining_owner_keeps_its_room_until_the_drain_timeout(
    pair: list[SfuProcess], clients: list[SfuClient]
) -> None:
    await wait_registered(pair[0], 2)
    owner, other = await room_on(pair, "draining")
    mentor = await connect(clients, owner, "draining", "mentor", "mentor-d")
    mentee = await connect(clients, other, "draining", "mentee", "mentee-d")
    assert owner.proc is not None
    owner.proc.send_signal(15)  # SIGTERM: drain

    async def marked_draining() -> bool:
        entry = (await node_ids(other)).get(owner.env["SFU_NODE_ID"])
        return entry is not None and entry["draining"] is True

    await until(marked_draining, 5, "the owner marked draining in the registry")
    for index in range(3):  # new rooms go to the node that is not draining, via either node
        for via in pair:
            status, room = await call(
                via, "POST", "/rooms", json={"room_id": f"d{via.port}{index}"}
            )
            assert (status, room.get("node_id")) == (201, other.env["SFU_NODE_ID"]), room
    assert await mentee.ping() < 5  # the draining room still runs, relayed socket included
    closed = await mentor.wait_for("room_closed", timeout=15)
    assert closed["reason"] == "node_shutdown"
    relayed_closed = await mentee.wait_for("room_closed", timeout=15)
    assert relayed_closed["reason"] == "node_shutdown"
    assert await exit_code(owner, 20) == 0

    async def gone() -> bool:  # removed on exit, not left to expire
        return owner.env["SFU_NODE_ID"] not in await node_ids(other)

    await until(gone, NODE_TTL_S / 2, "the stopped node's entry removed")


async def test_a_killed_node_s_rooms_finish_once_and_joins_fail_at_once(
    pair: list[SfuProcess],
    clients: list[SfuClient],
    hooks: tuple[str, list[dict[str, Any]]],
) -> None:
    _, received = hooks
    await wait_registered(pair[0], 2)
    owner, survivor = await room_on(pair, "doomed")
    await connect(clients, owner, "doomed", "mentor", "mentor-k")
    assert owner.proc is not None
    owner.proc.kill()  # kill -9: no drain, no goodbye
    await asyncio.to_thread(owner.proc.wait, 5)

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(JoinRefused) as refused:  # before the entry expires: the owner is gone
        await connect(clients, survivor, "doomed", "mentee", "mentee-k")
    assert refused.value.close_code in (4503, 4404)
    assert loop.time() - started < 5

    def finished() -> list[dict[str, Any]]:
        return [
            e
            for e in received
            if e["event"] == "room_finished" and e["room"]["room_id"] == "doomed"
        ]

    async def reported() -> bool:
        return bool(finished())

    await until(reported, NODE_TTL_S + 4 * HEARTBEAT_S + 3, "room_finished for the lost room")
    await asyncio.sleep(3 * HEARTBEAT_S)  # a second report would have come by now
    (event,) = finished()
    assert event["reason"] == "node_lost"
    status, body = await call(survivor, "GET", "/rooms/doomed")
    assert (status, body["error"]["code"]) == (404, "room_not_found")
    with pytest.raises(JoinRefused) as refused:
        await connect(clients, survivor, "doomed", "mentee", "mentee-k2")
    assert refused.value.close_code == 4404
    assert set(await node_ids(survivor)) == {survivor.env["SFU_NODE_ID"]}


async def test_rooms_go_on_while_redis_is_down_for_five_seconds(
    own_redis: RedisProcess, pair: list[SfuProcess], clients: list[SfuClient]
) -> None:
    redis = own_redis
    await wait_registered(pair[0], 2)
    owner, other = await room_on(pair, "weathered")
    mentor = await connect(clients, owner, "weathered", "mentor", "mentor-r")
    mentee = await connect(clients, other, "weathered", "mentee", "mentee-r")
    await exchange_media(mentor, mentee)
    redis.stop()
    try:

        async def unready() -> bool:
            statuses = [(await call(n, "GET", "/ready"))[0] for n in pair]
            return statuses == [503, 503]

        await until(unready, 5, "/ready 503 on both nodes")
        status, body = await call(other, "POST", "/rooms", json={"room_id": "not-now"})
        assert (status, body["error"]["code"]) == (503, "directory_unavailable")
        # the room goes on: more frames both ways, a new join on the owner itself works
        before = mentee.stats()
        await asyncio.sleep(2)
        assert sum(t.frames for t in mentee.stats().remote.values()) > sum(
            t.frames for t in before.remote.values()
        )
        observer = await connect(clients, owner, "weathered", "observer", "observer-r")
        assert observer.messages[0]["type"] == "joined"
        await asyncio.sleep(max(0.0, 5 - 2))
    finally:
        redis.start()

    async def whole_again() -> bool:
        ready = [(await call(n, "GET", "/ready"))[0] for n in pair]
        found = (await call(other, "GET", "/rooms/weathered"))[0]
        return ready == [200, 200] and found == 200

    await until(whole_again, 4 * HEARTBEAT_S + 5, "the directory whole again after the restart")
    assert await mentee.ping() < 5
    for node in pair:
        lines = node.log_path.read_text(errors="replace").splitlines()
        went = [line for line in lines if "room directory unavailable" in line]
        back = [line for line in lines if "room directory available again" in line]
        assert len(went) == 1 and len(back) == 1, (node.log_path, went, back)
        assert not [line for line in lines if "Traceback" in line], node.log_path

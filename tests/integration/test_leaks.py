"""A long-lived room stays as cheap as a fresh one: sessions come and go (a publisher and two
observers join, media flows, all leave) while one observer stays, and after each session the
SFU holds what it held after the first: the same objects of every aiortc, aioice and SFU type,
the same tasks and file descriptors (GET /debug/memory, after a collection)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sfu.client.client import SfuClient
from sfu.testing.process import SfuProcess, make_sfu
from tests.support.rooms import LOOPBACK, camera, create_room, microphone

SESSIONS = 6
SETTLE_S = 1.5


@pytest.fixture
async def server() -> AsyncIterator[SfuProcess]:
    started = make_sfu(46720, 46760, name="sfu-leaks", SFU_DEBUG_ENDPOINTS="true")
    started.start()
    yield started
    started.stop()


async def memory(server: SfuProcess, collect: bool = True) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        response = await http.get(
            f"{server.url}/debug/memory?gc={int(collect)}", headers=server.service_headers()
        )
        assert response.status == 200, await response.text()
        found: dict[str, Any] = await response.json()
        return found


async def participants(server: SfuProcess, room_id: str) -> int:
    async with aiohttp.ClientSession() as http:
        response = await http.get(f"{server.url}/rooms/{room_id}", headers=server.service_headers())
        room: dict[str, Any] = await response.json()
        return len(room["participants"])


def ours(objects: dict[str, int]) -> dict[str, int]:
    """The counts of this package's and the WebRTC stack's types, less the recording's
    manifest entries (the room is recorded, and its metadata.json lists everyone who took
    part: one entry per participant and track, by design), STUN messages (the anchor's
    consent checks, one in flight now and then) and RTCStats (the anchor's senders keep the
    latest receiver report's, 0 to 2 by when the reports come)."""
    return {
        name: n
        for name, n in objects.items()
        if name.startswith(("sfu.", "aiortc.", "aioice."))
        and not name.startswith(("sfu.recording.manifest.", "aioice.stun.", "aiortc.stats."))
    }


def _video_of(track: Any, participant_id: str) -> bool:
    return bool(track.kind == "video" and track.active and track.participant_id == participant_id)


async def one_session(server: SfuProcess, room_id: str, n: int, anchor: SfuClient) -> None:
    def join(user: str, role: str) -> Any:
        token = server.token(room_id, user, role)  # type: ignore[arg-type]
        return SfuClient.connect(server.ws_url, token, ice=LOOPBACK, decode=False)

    mentor = await join(f"mentor-{n}", "mentor")
    observers = [await join(f"observer-{n}-{i}", "observer") for i in range(2)]
    try:
        await mentor.publish({camera(): "camera", microphone(): "microphone"})
        for client in (*observers, anchor):
            await client.wait_frames(lambda t, m=mentor.participant_id: _video_of(t, m), 10, 30)
        for client in (mentor, *observers):
            await client.leave()
    finally:
        for client in (mentor, *observers):
            await client.close()


async def test_repeated_sessions_leave_nothing_behind(server: SfuProcess) -> None:
    room = await create_room(server)
    room_id = room["room_id"]
    anchor = await SfuClient.connect(
        server.ws_url, server.token(room_id, "anchor", "observer"), ice=LOOPBACK, decode=False
    )
    try:
        after: list[dict[str, Any]] = []
        for n in range(SESSIONS):
            await one_session(server, room_id, n, anchor)
            for _ in range(50):
                if await participants(server, room_id) == 1:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(SETTLE_S)  # transports finish closing
            after.append(await memory(server))
        # two sessions warm up (codecs, SRTP, imports; the anchor's first receiver reports)
        baseline = after[1]
        # what is left is the anchor's: send-only sections, whose unused receivers hold no
        # bitrate estimator (a thousand buckets each), and no departed sender's history
        assert baseline["objects"].get("aiortc.rate.RateBucket", 0) == 0, baseline["objects"]
        for n, now in enumerate(after[2:], start=3):
            grown = {
                name: (baseline_n, count)
                for name, count in ours(now["objects"]).items()
                if count != (baseline_n := ours(baseline["objects"]).get(name, 0))
            }
            assert not grown, f"after session {n}: (after 2, now) by type: {grown}"
            assert now["tasks"] == baseline["tasks"], (n, now["tasks"], baseline["tasks"])
            assert now["fds"] == baseline["fds"], (n, now["fds"], baseline["fds"])
            assert now["threads"] == baseline["threads"], (n, now["threads"])
        # the anchor still receives nothing but is alive and answered
        assert anchor.participant_id
        await anchor.ping()
    finally:
        await anchor.close()


async def test_debug_memory_needs_the_setting_and_a_service_token(
    server: SfuProcess, sfu: SfuProcess
) -> None:
    async with aiohttp.ClientSession() as http:
        response = await http.get(f"{server.url}/debug/memory")
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "unauthorized"
        # the shared SFU runs without SFU_DEBUG_ENDPOINTS: the route does not exist
        response = await http.get(f"{sfu.url}/debug/memory", headers=sfu.service_headers())
        assert response.status == 404

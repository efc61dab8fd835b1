"""Garbage of every kind while a 1:1 room is live: the room keeps forwarding, the SFU's memory
stays bounded, and nothing prints a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import time
from collections.abc import Iterator

import aiohttp
import psutil
import pytest

from sfu.testing.process import SfuProcess, make_sfu
from tests.support.rooms import Join, camera, create_room, microphone

FLOOD_SECONDS = 6.0


@pytest.fixture
def target() -> Iterator[SfuProcess]:
    server = make_sfu(
        47300, 47330, name="sfu-hostile", SFU_WS_MESSAGES_PER_S="200", SFU_WS_MESSAGE_BURST="400"
    )
    server.start()
    yield server
    server.stop()


def _junk(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return b""
    if kind == 1:  # STUN-looking, broken
        return (
            bytes([0, 1])
            + rng.randbytes(2)
            + b"\x21\x12\xa4\x42"
            + rng.randbytes(rng.randrange(40))
        )
    if kind == 2:  # DTLS-looking
        return bytes([22, 254, 253]) + rng.randbytes(rng.randrange(200))
    if kind == 3:  # RTP-looking, not decryptable
        return bytes([0x80, rng.randrange(128)]) + rng.randbytes(rng.randrange(1200))
    if kind == 4:
        return rng.randbytes(rng.randrange(1, 1400))
    return bytes([rng.randrange(4)]) + rng.randbytes(rng.randrange(3))


async def _udp_flood(ports: list[int], deadline: float, rng: random.Random) -> int:
    sent = 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        while time.monotonic() < deadline and sent < 200_000:
            for port in ports:
                with contextlib.suppress(BlockingIOError):
                    sock.sendto(_junk(rng), ("127.0.0.1", port))
                    sent += 1
            await asyncio.sleep(0.002)
    finally:
        sock.close()
    return sent


async def _ws_garbage(server: SfuProcess, room_id: str, deadline: float, rng: random.Random) -> int:
    """A participant with a valid token sending everything but valid messages, plus sockets
    without one; reconnects whenever the SFU closes it (rate limit, size limit)."""
    sent = 0
    frames = [
        "{not json",
        "[]",
        "null",
        "1e999",
        '{"type": 7}',
        '{"type": "dance"}',
        '{"type": "subscribe_answer", "sdp": "v=0\\r\\n"}',
        '{"type": "publish_offer", "sdp": "garbage", "sources": {}}',
        '{"type": "candidate", "target": "publisher", "candidate": {"candidate": "x"}}',
        '{"type": "request_keyframe", "track_id": "' + "x" * 300 + '"}',
        "[" * 5000,
        "x" * (70 * 1024),
    ]
    async with aiohttp.ClientSession() as http:
        attempts = 0
        while time.monotonic() < deadline and attempts < 200:
            attempts += 1
            token = server.token(room_id, "attacker", "observer") if attempts % 2 else "junk"
            try:
                async with asyncio.timeout(5):
                    ws = await http.ws_connect(server.ws_url, params={"token": token})
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.05)
                continue
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                for _ in range(50):
                    if ws.closed or time.monotonic() >= deadline:
                        break
                    if rng.random() < 0.1:
                        await ws.send_bytes(rng.randbytes(100))
                    else:
                        await ws.send_str(rng.choice(frames))
                    sent += 1
                    await asyncio.sleep(0)
            await ws.close()
    return sent


async def test_flood_does_not_stop_a_live_room(target: SfuProcess, join: Join) -> None:
    room = await create_room(target)
    room_id = str(room["room_id"])
    mentor = await join(room_id, "mentor", server=target)
    mentee = await join(room_id, "mentee", server=target)
    await mentor.publish({camera(): "camera", microphone(): "microphone"})
    await mentee.publish({camera(): "camera", microphone(): "microphone"})
    for viewer in (mentor, mentee):
        await viewer.wait_frames(lambda i: i.kind == "video", 30, timeout=30)
    process = psutil.Process(target.pid)
    rss_before = process.memory_info().rss
    log_before = len(target.log_path.read_text())
    frames_before = [
        next(i for i in c.remote_tracks.values() if i.kind == "video").frames
        for c in (mentor, mentee)
    ]

    rng = random.Random(1234)
    deadline = time.monotonic() + FLOOD_SECONDS
    ports = [*range(target.rtc_min, target.rtc_max + 1), int(target.env["SFU_STUN_PORT"])]
    udp, ws = await asyncio.gather(
        _udp_flood(ports, deadline, rng), _ws_garbage(target, room_id, deadline, rng)
    )
    assert udp > 10_000 and ws > 100

    frames_after = [
        next(i for i in c.remote_tracks.values() if i.kind == "video").frames
        for c in (mentor, mentee)
    ]
    for before, after in zip(frames_before, frames_after, strict=True):
        assert after - before >= FLOOD_SECONDS * 20, (before, after)
    for viewer in (mentor, mentee):
        assert viewer.closed_code is None
        await viewer.ping()
    growth = process.memory_info().rss - rss_before
    assert growth < 64 * 1024 * 1024, f"RSS grew by {growth / 2**20:.0f} MiB"
    added = target.log_path.read_text()[log_before:]
    assert "Traceback" not in added
    async with aiohttp.ClientSession() as http:
        body = await (
            await http.get(f"{target.url}/rooms/{room_id}", headers=target.service_headers())
        ).json()
    assert sorted(p["role"] for p in body["participants"]) == ["mentee", "mentor"]
    assert json.dumps(body)  # the room object is intact
    assert os.path.exists(target.log_path)

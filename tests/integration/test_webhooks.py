"""Webhooks from a real SFU process to a receiver in the test process (127.0.0.1 only):
signed room, participant and track events in order; a dead backend slows nothing down."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sfu.client.client import SfuClient
from sfu.testing.process import TEST_SECRET, SfuProcess, free_tcp_port, make_sfu
from sfu.webhooks.payload import SIGNATURE_HEADER, verify_signature
from tests.support.hook_server import serving_hooks
from tests.support.rooms import camera, connect, create_room


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.05)


@dataclass
class Receiver:
    url: str = ""
    hang: bool = False
    bodies: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def events(self, room_id: str) -> list[dict[str, Any]]:
        decoded = [json.loads(body) for body, _ in self.bodies]
        return [b for b in decoded if b["room"]["room_id"] == room_id]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.hang:
            await asyncio.wait_for(self.release.wait(), 60)
            return web.Response(status=503)
        self.bodies.append((body, dict(request.headers)))
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    async with serving_hooks(rec.handle) as url:
        rec.url = url
        try:
            yield rec
        finally:
            rec.release.set()  # a handler told to hang returns before the server stops


async def delete_room(server: SfuProcess, room_id: str) -> None:
    async with aiohttp.ClientSession() as http:
        response = await http.delete(
            f"{server.url}/rooms/{room_id}", headers=server.service_headers()
        )
        assert response.status in (200, 204), await response.text()


async def webhook_counts(server: SfuProcess) -> dict[str, float]:
    async with aiohttp.ClientSession() as http:
        text = await (await http.get(server.url + "/metrics")).text()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith('sfu_webhook_events_total{result="'):
            result = line.split('"')[1]
            counts[result] = float(line.split()[-1])
    return counts


async def test_room_participant_and_track_events_are_signed_and_ordered(
    receiver: Receiver, clients: list[SfuClient]
) -> None:
    server = make_sfu(47200, 47220, name="sfu-webhooks", SFU_WEBHOOK_URL=receiver.url)
    await asyncio.to_thread(server.start)
    try:
        room_id = str((await create_room(server))["room_id"])
        left_open = str((await create_room(server))["room_id"])
        mentor = await connect(clients, server, room_id, "mentor", "alice")
        mentee = await connect(clients, server, room_id, "mentee", "bob")
        await mentee.publish({camera(): "camera"})
        await mentor.wait_frames(lambda i: i.kind == "video", 10, timeout=30)
        await mentee.leave()
        await delete_room(server, room_id)
        await wait_until(
            lambda: any(b["event"] == "room_finished" for b in receiver.events(room_id)),
            20,
            "room_finished delivered",
        )
    finally:
        await asyncio.to_thread(server.stop)

    events = receiver.events(room_id)
    assert [b["event"] for b in events] == [
        "room_started",
        "participant_joined",
        "participant_joined",
        "track_published",
        "track_unpublished",
        "participant_left",
        "participant_left",
        "room_finished",
    ]
    joined = [b["participant"]["participant_id"] for b in events[1:3]]
    assert joined == [mentor.participant_id, mentee.participant_id]
    published = events[3]
    assert published["participant_id"] == mentee.participant_id
    assert published["track"]["source"] == "camera" and published["track"]["kind"] == "video"
    assert events[4]["track"] == published["track"]
    assert events[5]["participant"]["participant_id"] == mentee.participant_id
    assert events[6]["participant"]["participant_id"] == mentor.participant_id
    assert "reason" in events[5] and "reason" in events[7]
    stamps = [b["created_at"] for b in events]
    assert stamps == sorted(stamps) and all(s.endswith("Z") for s in stamps)

    for body, headers in receiver.bodies:
        assert headers["Content-Type"] == "application/json"
        assert verify_signature(TEST_SECRET, body, headers[SIGNATURE_HEADER])
        assert not verify_signature("some-other-secret", body, headers[SIGNATURE_HEADER])
    ids = [json.loads(body)["id"] for body, _ in receiver.bodies]
    assert len(set(ids)) == len(ids)
    # A room still open at SIGTERM is finished during shutdown, and that is delivered too.
    finished = [b for b in receiver.events(left_open) if b["event"] == "room_finished"]
    assert [b["reason"] for b in finished] == ["node_shutdown"]


@pytest.mark.parametrize("backend", ["closed", "hanging"])
async def test_a_dead_backend_slows_neither_signalling_nor_media(
    backend: str, receiver: Receiver, clients: list[SfuClient]
) -> None:
    if backend == "closed":
        url = f"http://127.0.0.1:{free_tcp_port()}/hook"  # nothing listens there
        rtc = (47230, 47250)
    else:
        receiver.hang = True
        url = receiver.url
        rtc = (47260, 47280)
    server = make_sfu(
        *rtc, name=f"sfu-webhooks-{backend}", SFU_WEBHOOK_URL=url, SFU_WEBHOOK_TIMEOUT_S="1"
    )
    await asyncio.to_thread(server.start)  # starts a fresh log file
    try:
        room_id = str((await create_room(server))["room_id"])
        for _ in range(3):  # events pile up while the backend fails
            await create_room(server)
        started = time.monotonic()
        mentor = await connect(clients, server, room_id, "mentor", "alice")
        mentee = await connect(clients, server, room_id, "mentee", "bob")
        assert time.monotonic() - started < 5.0
        await mentee.publish({camera(): "camera"})
        await mentor.wait_frames(lambda i: i.kind == "video", 30, timeout=20)
        assert await mentor.ping(timeout=5) < 0.5
        retried: dict[str, float] = {}

        async def check() -> None:
            retried.update(await webhook_counts(server))

        deadline = time.monotonic() + 15
        while retried.get("retried", 0) == 0 and time.monotonic() < deadline:
            await check()
            await asyncio.sleep(0.2)
        assert retried.get("retried", 0) > 0, retried
        assert retried.get("delivered", 0) == 0
        await delete_room(server, room_id)
    finally:
        code = await asyncio.to_thread(server.stop)
    added = server.log_path.read_bytes().decode(errors="replace")
    assert "Traceback" not in added
    assert "webhook" in added and "retrying" in added
    assert TEST_SECRET not in added
    assert code == 0

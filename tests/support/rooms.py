"""Rooms on a running SFU for the integration tests: create one, read /metrics, paced camera
and microphone tracks, predicates on signalling messages, and the loopback ICE configuration
the test clients use."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from sfu.client.client import Message, SfuClient
from sfu.client.clips import PacedPacketTrack
from sfu.core.vocabulary import Role
from sfu.ice.connection import IceConfig
from sfu.testing.process import SfuProcess

LOOPBACK = IceConfig(addresses=("127.0.0.1",))


Join = Callable[..., Awaitable[SfuClient]]


async def create_room(sfu: SfuProcess, **body: object) -> dict[str, Any]:
    room_id = str(body.pop("room_id", f"it-{uuid.uuid4().hex[:10]}"))
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            sfu.url + "/rooms", json={"room_id": room_id, **body}, headers=sfu.service_headers()
        )
        assert response.status == 201, await response.text()
        room: dict[str, Any] = await response.json()
        return room


async def metric(sfu: SfuProcess, name: str) -> float:
    """A value read from the SFU's /metrics (summed over labels)."""
    async with aiohttp.ClientSession() as http:
        text = await (await http.get(sfu.url + "/metrics")).text()
    values = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    ]
    if not values:
        raise AssertionError(f"{name} is not in /metrics")
    return sum(values)


def camera() -> PacedPacketTrack:
    return PacedPacketTrack.from_codec("vp8", seconds=4)


def microphone() -> PacedPacketTrack:
    return PacedPacketTrack.from_codec("opus", seconds=4)


def offers(track_id: str) -> Callable[[Message], bool]:
    """A subscribe_offer that carries this track."""
    return lambda m: track_id in m["tracks"]


def offers_no(track_id: str) -> Callable[[Message], bool]:
    """A subscribe_offer that no longer carries this track."""
    return lambda m: track_id not in m["tracks"]


def unpublished(track_id: str) -> Callable[[Message], bool]:
    """The track_unpublished message of this track."""
    return lambda m: m["track"]["track_id"] == track_id


async def connect(
    made: list[SfuClient],
    via: SfuProcess,
    room_id: str,
    role: Role,
    user: str,
    timeout: float = 15,
) -> SfuClient:
    """A client joined to `room_id` through `via` (any node), added to `made` (the `clients`
    fixture closes them)."""
    client = await SfuClient.connect(
        via.ws_url, via.token(room_id, user, role), ice=LOOPBACK, timeout=timeout
    )
    made.append(client)
    return client


@pytest.fixture(params=["port range", "one port"], name="sfu")
def sfu_on_both(
    request: pytest.FixtureRequest, sfu: SfuProcess, sfu_one_port: SfuProcess
) -> SfuProcess:
    """Imported by a test module, runs each of its tests on the shared SFU with a port range
    and on the one with all media on one UDP port (tests/conftest.py)."""
    return sfu if request.param == "port range" else sfu_one_port

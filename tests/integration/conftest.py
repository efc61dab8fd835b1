from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sfu.client.client import SfuClient
from sfu.core.vocabulary import Role
from sfu.testing.process import SfuProcess
from tests.support.media_files import write_opus_tone, write_vp8_track
from tests.support.rooms import LOOPBACK, Join
from tests.support.vod_worker import (
    SESSION_S,
)

_users = itertools.count()


@pytest.fixture
async def join(sfu: SfuProcess) -> AsyncIterator[Join]:
    """join(room_id, role="mentee", user=None, server=sfu) → a connected SfuClient, closed
    at the end of the test."""
    clients: list[SfuClient] = []

    async def _join(
        room_id: str,
        role: Role = "mentee",
        user: str | None = None,
        server: SfuProcess | None = None,
        decode: bool = True,
        count_headers: bool = False,
    ) -> SfuClient:
        target = server or sfu
        user = user or f"user{next(_users)}"
        client = await SfuClient.connect(
            target.ws_url,
            target.token(room_id, user, role),
            ice=LOOPBACK,
            decode=decode,
            count_headers=count_headers,
        )
        clients.append(client)
        return client

    yield _join
    for client in clients:
        await client.close()


@pytest.fixture(scope="module")
def tracks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The media of one session, written once and copied into each test's recordings dir."""
    root = tmp_path_factory.mktemp("tracks")
    write_vp8_track(root / "cam-a.mkv", (210, 40, 40), SESSION_S)
    write_vp8_track(root / "cam-b.mkv", (40, 40, 210), SESSION_S)
    write_opus_tone(root / "mic-a.mkv", 440.0, SESSION_S)
    return root


@pytest.fixture
async def clients() -> AsyncIterator[list[SfuClient]]:
    """Clients a test connects (tests.support.rooms.connect); closed at its end."""
    made: list[SfuClient] = []
    yield made
    for client in made:
        await client.close()

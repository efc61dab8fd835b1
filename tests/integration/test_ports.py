"""Media ports as the operating system sees them: inside the configured range, refused cleanly
when exhausted, and all given back when rooms end."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import psutil
import pytest

from sfu.client.client import SfuClient
from sfu.client.model import JoinRefused
from sfu.testing.process import SfuProcess, make_sfu
from tests.support.rooms import LOOPBACK, Join, camera, create_room, microphone


def udp_ports(pid: int) -> set[int]:
    return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="udp")}


@pytest.fixture
def small_sfu() -> Iterator[SfuProcess]:
    server = make_sfu(46400, 46401, name="sfu-2ports")
    server.start()
    yield server
    server.stop()


async def earlier_media_ports(sfu: SfuProcess, timeout: float = 15.0) -> set[int]:
    """Media ports of the shared SFU still bound by earlier tests' peer connections, after
    waiting up to `timeout` for them to close (a client gone without a goodbye leaves its
    connection until ICE times out)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = {p for p in udp_ports(sfu.pid) if sfu.rtc_min <= p <= sfu.rtc_max}
        if not left or loop.time() > deadline:
            return left
        await asyncio.sleep(0.2)


async def test_every_media_socket_is_in_range(sfu: SfuProcess, join: Join) -> None:
    earlier = await earlier_media_ports(sfu)
    room = await create_room(sfu)
    clients = [await join(room["room_id"], role) for role in ("mentor", "mentee", "observer")]
    for client in clients[:2]:
        await client.publish({camera(): "camera", microphone(): "microphone"})
    await clients[2].wait_frames(lambda i: i.kind == "video", 10, timeout=30)
    await clients[0].wait_frames(lambda i: i.kind == "video", 10, timeout=30)

    ports = udp_ports(sfu.pid)
    media = {p for p in ports if sfu.rtc_min <= p <= sfu.rtc_max} - earlier
    stun = {int(sfu.env["SFU_STUN_PORT"])}
    outside = ports - stun - earlier - media
    assert not outside, f"UDP sockets outside {sfu.rtc_min}-{sfu.rtc_max}: {outside}"
    # one socket per peer connection (BUNDLE + rtcp-mux): 2 publishers x 2 + observer x 1
    assert len(media) == 5

    async with aiohttp.ClientSession() as http:
        await http.delete(f"{sfu.url}/rooms/{room['room_id']}", headers=sfu.service_headers())
    for client in clients:
        assert await client.wait_closed(10) == 1000
    remaining = media
    for _ in range(50):
        remaining = udp_ports(sfu.pid) & media
        if not remaining:
            break
        await asyncio.sleep(0.1)
    assert not remaining, f"ports still bound after DELETE /rooms: {remaining}"


async def test_exhausted_range_refuses_join_with_4503(small_sfu: SfuProcess, join: Join) -> None:
    room = await create_room(small_sfu)
    first = await join(room["room_id"], "mentor", server=small_sfu)
    with pytest.raises(JoinRefused) as refused:
        late = await SfuClient.connect(
            small_sfu.ws_url, small_sfu.token(str(room["room_id"]), "late", "mentee"), ice=LOOPBACK
        )
        await late.close()
    assert refused.value.close_code == 4503
    # the first participant is unaffected and can use its two ports
    await first.publish({camera(): "camera"})
    assert udp_ports(small_sfu.pid) & {46400, 46401}
    await first.ping()
    # once it leaves, the ports are free for the next join
    await first.leave()
    again = await join(room["room_id"], "mentee", server=small_sfu)
    await again.publish({camera(): "camera"})


async def test_public_ip_is_announced_while_bound_locally(join: Join) -> None:
    server = make_sfu(46800, 46810, name="sfu-public-ip", SFU_PUBLIC_IP="127.0.0.2")
    server.start()
    try:
        room = await create_room(server)
        client = await join(room["room_id"], "mentor", server=server)
        await client.publish({camera(): "camera"})
        assert client.publisher is not None
        answer = client.publisher.remoteDescription.sdp
        candidates = [line for line in answer.splitlines() if line.startswith("a=candidate:")]
        assert candidates
        assert all(" 127.0.0.2 " in line for line in candidates), candidates
        bound = {
            c.laddr.ip
            for c in psutil.Process(server.pid).net_connections(kind="udp")
            if server.rtc_min <= c.laddr.port <= server.rtc_max
        }
        assert bound == {"127.0.0.1"}
    finally:
        server.stop()

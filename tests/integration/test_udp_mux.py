"""One UDP port for all media (SFU_RTC_UDP_PORT): ICE connections over a real shared socket on
loopback, then a real SFU holding several rooms on one port with a two-port range."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import psutil
import pytest
from aioice import stun
from prometheus_client import REGISTRY

from sfu.ice.connection import IceConfig, SfuConnection
from sfu.ice.udp_mux import UdpMux
from sfu.testing.process import make_sfu
from tests.support.rooms import Join, camera, create_room, metric, microphone

LOCAL = ("127.0.0.1",)
CLIENT = IceConfig(addresses=LOCAL)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unrouted(reason: str) -> float:
    return REGISTRY.get_sample_value("sfu_ice_mux_unrouted_total", {"reason": reason}) or 0.0


@pytest.fixture
async def mux() -> AsyncIterator[UdpMux]:
    opened = UdpMux(free_udp_port(), LOCAL)
    await opened.open()
    yield opened
    opened.close()


async def connected_pair(mux: UdpMux) -> tuple[SfuConnection, SfuConnection]:
    """An SFU-side connection on the shared port and a client with a socket of its own."""
    sfu = SfuConnection(ice_controlling=False, ice_config=IceConfig(udp_mux=mux))
    client = SfuConnection(ice_controlling=True, ice_config=CLIENT)
    await sfu.gather_candidates()
    await client.gather_candidates()
    assert [(c.host, c.port) for c in sfu.local_candidates] == [("127.0.0.1", mux.port)]
    for side, other in ((sfu, client), (client, sfu)):
        side.remote_username, side.remote_password = other.local_username, other.local_password
        for candidate in other.local_candidates:
            await side.add_remote_candidate(candidate)
        await side.add_remote_candidate(None)
    await asyncio.wait_for(asyncio.gather(sfu.connect(), client.connect()), 15)
    return sfu, client


def binding_request(to: SfuConnection, sender: SfuConnection) -> bytes:
    """What `sender` sends as an ICE check to `to` (USERNAME, integrity with to's password)."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{to.local_username}:{sender.local_username}"
    request.attributes["PRIORITY"] = 1853824767
    request.attributes["ICE-CONTROLLING"] = 1
    request.add_message_integrity(to.local_password.encode())
    request.add_fingerprint()
    return bytes(request)


async def test_connections_share_one_socket_and_junk_disturbs_none(mux: UdpMux) -> None:
    pairs = [await connected_pair(mux) for _ in range(6)]
    assert len({sfu.local_username for sfu, _ in pairs}) == 6
    assert all(len(sfu.local_username) == 16 for sfu, _ in pairs)
    before = {r: unrouted(r) for r in ("not stun", "unknown ufrag", "bad integrity")}
    stranger = pairs[0][0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
        junk.sendto(b"\x80" + b"\0" * 40, ("127.0.0.1", mux.port))  # "RTP" from nobody
        nobody = SfuConnection(ice_controlling=True, ice_config=CLIENT)
        junk.sendto(binding_request(nobody, nobody), ("127.0.0.1", mux.port))
        # a known ufrag, the wrong password
        forged = SfuConnection(
            ice_controlling=True, local_username=stranger.local_username, ice_config=CLIENT
        )
        junk.sendto(binding_request(forged, nobody), ("127.0.0.1", mux.port))
        await asyncio.sleep(0.2)
    assert unrouted("not stun") == before["not stun"] + 1
    assert unrouted("unknown ufrag") == before["unknown ufrag"] + 1
    assert unrouted("bad integrity") == before["bad integrity"] + 1
    for n, (sfu, client) in enumerate(pairs):
        await client.send(b"\x80up-%d" % n)
        assert await asyncio.wait_for(sfu.recv(), 5) == b"\x80up-%d" % n
        await sfu.send(b"\x80down-%d" % n)
        assert await asyncio.wait_for(client.recv(), 5) == b"\x80down-%d" % n
    table = mux.sockets["127.0.0.1"].table
    assert len(table) == 6
    for sfu, client in pairs:
        await sfu.close()
        await client.close()
    assert len(table) == 0 and table.bound == 0


async def test_a_new_remote_address_is_bound_by_a_checked_request(mux: UdpMux) -> None:
    """A client whose address changes (Wi-Fi to 4G, a NAT rebinding) checks again from the
    new address: the shared port sends it there and takes its media from there."""
    sfu, client = await connected_pair(mux)
    loop = asyncio.get_running_loop()
    moved = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    moved.bind(("127.0.0.1", 0))
    moved.setblocking(False)
    try:
        moved.sendto(binding_request(sfu, client), ("127.0.0.1", mux.port))
        answer = stun.parse_message(await asyncio.wait_for(loop.sock_recv(moved, 1500), 5))
        assert answer.message_class == stun.Class.RESPONSE
        assert answer.attributes["XOR-MAPPED-ADDRESS"] == moved.getsockname()
        moved.sendto(b"\x80from-the-new-address", ("127.0.0.1", mux.port))
        assert await asyncio.wait_for(sfu.recv(), 5) == b"\x80from-the-new-address"
        await client.send(b"\x80old-address-too")  # until it goes, the old one still works
        assert await asyncio.wait_for(sfu.recv(), 5) == b"\x80old-address-too"
    finally:
        moved.close()
        await sfu.close()
        await client.close()


async def test_a_port_in_use_is_a_clear_error_and_close_is_idempotent() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        mux = UdpMux(port, LOCAL)
        with pytest.raises(OSError, match=f"SFU_RTC_UDP_PORT {port} on 127.0.0.1"):
            await mux.open()
    mux = UdpMux(free_udp_port(), LOCAL)
    await mux.open()
    sfu, client = await connected_pair(mux)
    mux.close()  # the node stops: its connections lose their transport
    mux.close()
    await asyncio.wait_for(sfu.close(), 5)
    await client.close()


async def test_rooms_on_one_port_with_a_two_port_range(join: Join) -> None:
    """Three 1:1 rooms (12 peer connections) on a node whose range has 2 ports: without the
    shared port the second join would be refused (4503); with it, every subscription decodes
    and the node holds one media socket."""
    shared = free_udp_port()
    server = make_sfu(46520, 46521, name="sfu-udp-mux", SFU_RTC_UDP_PORT=str(shared))
    server.start()
    try:
        clients = []
        for _ in range(3):
            room = await create_room(server)
            for role in ("mentor", "mentee"):
                client = await join(room["room_id"], role, server=server)
                await client.publish({camera(): "camera", microphone(): "microphone"})
                clients.append(client)
        for client in clients:
            await client.wait_frames(lambda i: i.kind == "video", 10, timeout=30)
        ports = {c.laddr.port for c in psutil.Process(server.pid).net_connections(kind="udp")}
        assert ports == {shared, int(server.env["SFU_STUN_PORT"])}
        assert await metric(server, "sfu_ice_mux_connections") == 12
        for client in clients:
            await client.leave()
        for _ in range(50):
            if await metric(server, "sfu_ice_mux_connections") == 0:
                break
            await asyncio.sleep(0.1)
        assert await metric(server, "sfu_ice_mux_connections") == 0
        assert await metric(server, "sfu_ice_mux_addresses") == 0
    finally:
        server.stop()

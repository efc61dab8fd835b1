"""SfuConnection on 127.0.0.1: port range, public IP, exhaustion, mDNS, junk, and via aiortc."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable

import aioice
import aiortc.rtcicetransport
import pytest
from aioice import stun
from aioice.candidate import Candidate
from aiortc import RTCConfiguration, RTCPeerConnection
from prometheus_client import REGISTRY

from sfu.ice.connection import IceConfig, SfuConnection, SfuStunProtocol, make_connection_factory
from sfu.ice.ports import PortAllocator, PortsExhausted
from sfu.media.internals import internal

LOCALHOST = "127.0.0.1"
WAIT = 10.0


def _config(low: int, high: int, public_ip: str | None = None) -> IceConfig:
    return IceConfig(
        addresses=(LOCALHOST,), allocator=PortAllocator(low, high), public_ip=public_ip
    )


def _sockets(conn: aioice.Connection) -> list[tuple[str, int]]:
    """The local address of every socket the connection holds."""
    return [p.transport.get_extra_info("sockname")[:2] for p in internal(conn, "_protocols")]


def _counter(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    assert value is not None
    return value


async def _connect(a: aioice.Connection, b: aioice.Connection) -> None:
    await asyncio.wait_for(asyncio.gather(a.gather_candidates(), b.gather_candidates()), WAIT)
    for x, y in ((a, b), (b, a)):
        for candidate in x.local_candidates:
            await y.add_remote_candidate(candidate)
        await y.add_remote_candidate(None)
        y.remote_username = x.local_username
        y.remote_password = x.local_password
    await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), WAIT)


class Pair:
    def __init__(self, controlling: SfuConnection, controlled: SfuConnection) -> None:
        self.controlling = controlling
        self.controlled = controlled

    async def close(self) -> None:
        await asyncio.wait_for(
            asyncio.gather(self.controlling.close(), self.controlled.close()), WAIT
        )


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    result = Pair(
        SfuConnection(ice_controlling=True, ice_config=_config(41100, 41104)),
        SfuConnection(ice_controlling=False, ice_config=_config(41110, 41114)),
    )
    yield result
    await result.close()


def _allocator(conn: SfuConnection) -> PortAllocator:
    assert conn.ice_config.allocator is not None
    return conn.ice_config.allocator


async def test_connects_and_binds_inside_the_range(pair: Pair) -> None:
    await _connect(pair.controlling, pair.controlled)

    for conn, low, high in ((pair.controlling, 41100, 41104), (pair.controlled, 41110, 41114)):
        sockets = _sockets(conn)
        assert sockets
        for host, port in sockets:
            assert host == LOCALHOST
            assert low <= port <= high
        assert [(c.host, c.port, c.type) for c in conn.local_candidates] == [
            (LOCALHOST, port, "host") for _, port in sockets
        ]
        assert _allocator(conn).in_use == len(sockets)

    await pair.controlling.send(b"ping")
    assert await asyncio.wait_for(pair.controlled.recv(), WAIT) == b"ping"
    await pair.controlled.send(b"pong")
    assert await asyncio.wait_for(pair.controlling.recv(), WAIT) == b"pong"


async def test_close_releases_every_port(pair: Pair) -> None:
    await _connect(pair.controlling, pair.controlled)
    allocators = [_allocator(pair.controlling), _allocator(pair.controlled)]
    assert all(a.in_use == 1 for a in allocators)

    await pair.close()
    assert [a.in_use for a in allocators] == [0, 0]
    assert _sockets(pair.controlling) == []


async def test_never_contacts_ice_servers() -> None:
    factory = make_connection_factory(_config(41120, 41121))
    conn = factory(
        ice_controlling=False,
        stun_server=("stun.l.google.com", 19302),
        turn_server=("turn.example.com", 3478),
        turn_username="u",
        turn_password="p",
    )
    assert isinstance(conn, SfuConnection)
    assert conn.stun_server is None
    assert conn.turn_server is None
    try:
        started = time.monotonic()
        await asyncio.wait_for(conn.gather_candidates(), WAIT)
        assert time.monotonic() - started < 1.0
        assert [c.type for c in conn.local_candidates] == ["host"]
    finally:
        await conn.close()


async def test_public_ip_is_announced_while_bound_locally() -> None:
    conn = SfuConnection(
        ice_controlling=False, ice_config=_config(41130, 41131, public_ip="203.0.113.7")
    )
    try:
        await asyncio.wait_for(conn.gather_candidates(), WAIT)
        [candidate] = conn.local_candidates
        [(host, port)] = _sockets(conn)
        assert candidate.host == "203.0.113.7"
        assert host == LOCALHOST
        assert candidate.port == port
    finally:
        await conn.close()


async def test_public_ip_of_the_other_version_is_not_announced() -> None:
    conn = SfuConnection(
        ice_controlling=False, ice_config=_config(41132, 41133, public_ip="2001:db8::7")
    )
    try:
        await asyncio.wait_for(conn.gather_candidates(), WAIT)
        assert [c.host for c in conn.local_candidates] == [LOCALHOST]
    finally:
        await conn.close()


async def test_without_allocator_binds_any_port() -> None:
    conn = SfuConnection(ice_controlling=True, ice_config=IceConfig(addresses=(LOCALHOST,)))
    try:
        await asyncio.wait_for(conn.gather_candidates(), WAIT)
        [(host, port)] = _sockets(conn)
        assert host == LOCALHOST
        assert port > 0
    finally:
        await conn.close()


async def test_one_port_range_refuses_the_second_connection() -> None:
    config = _config(41140, 41140)
    first = SfuConnection(ice_controlling=False, ice_config=config)
    second = SfuConnection(ice_controlling=False, ice_config=config)
    try:
        await asyncio.wait_for(first.gather_candidates(), WAIT)
        with pytest.raises(PortsExhausted) as caught:
            await asyncio.wait_for(second.gather_candidates(), WAIT)
        assert caught.value.code == "no_capacity"
        assert second.local_candidates == []
        assert _allocator(first).in_use == 1
    finally:
        await first.close()
        await second.close()
    assert _allocator(first).in_use == 0


async def test_an_unbindable_address_is_skipped() -> None:
    allocator = PortAllocator(41150, 41152)
    config = IceConfig(addresses=("192.0.2.1", LOCALHOST), allocator=allocator)
    conn = SfuConnection(ice_controlling=False, ice_config=config)
    try:
        await asyncio.wait_for(conn.gather_candidates(), WAIT)
        assert [c.host for c in conn.local_candidates] == [LOCALHOST]
    finally:
        await conn.close()
    assert allocator.in_use == 0

    only_bad = IceConfig(addresses=("192.0.2.1",), allocator=allocator)
    conn = SfuConnection(ice_controlling=False, ice_config=only_bad)
    with pytest.raises(PortsExhausted):
        await asyncio.wait_for(conn.gather_candidates(), WAIT)
    await conn.close()


def test_config_and_policy_are_validated() -> None:
    with pytest.raises(ValueError):
        IceConfig(addresses=("not-an-address",))
    with pytest.raises(ValueError):
        IceConfig(public_ip="sfu.example.com")
    with pytest.raises(ValueError):
        SfuConnection(
            ice_controlling=False,
            transport_policy=aioice.TransportPolicy.RELAY,
            ice_config=IceConfig(),
        )


async def test_mdns_candidate_is_dropped_without_resolving() -> None:
    conn = SfuConnection(ice_controlling=True, ice_config=_config(41160, 41161))
    dropped = _counter("sfu_ice_mdns_candidates_dropped_total")
    try:
        await asyncio.wait_for(conn.gather_candidates(), WAIT)
        for host in ("0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7.local", "Peer.LOCAL."):
            candidate = Candidate(
                foundation="1",
                component=1,
                transport="udp",
                priority=2122260223,
                host=host,
                port=54321,
                type="host",
            )
            started = time.monotonic()
            await asyncio.wait_for(conn.add_remote_candidate(candidate), WAIT)
            assert time.monotonic() - started < 0.5
        assert conn.remote_candidates == []
        assert _counter("sfu_ice_mdns_candidates_dropped_total") == dropped + 2

        # Ordinary candidates and end-of-candidates still go through.
        plain = Candidate("2", 1, "udp", 2122260223, LOCALHOST, 54321, "host")
        await conn.add_remote_candidate(plain)
        await conn.add_remote_candidate(None)
        assert [c.host for c in conn.remote_candidates] == [LOCALHOST]
        with pytest.raises(ValueError):
            await conn.add_remote_candidate(plain)  # after end-of-candidates, as aioice
    finally:
        await conn.close()


def _junk_datagrams() -> list[bytes]:
    rng = random.Random(7983)
    junk = [bytes([rng.randint(0, 3)]) + rng.randbytes(rng.randint(0, 60)) for _ in range(50)]
    junk += [b"", b"\x00\x01\x00", b"\x01"]
    # A STUN header with the magic cookie and a PRIORITY attribute 2 bytes long.
    attribute = struct.pack("!HH", 0x0024, 2) + b"\x00\x01\x00\x00"
    header = struct.pack("!HHI12s", 0x0001, len(attribute), 0x2112A442, rng.randbytes(12))
    truncated = header + attribute
    with pytest.raises(struct.error):
        stun.parse_message(truncated)
    junk.append(truncated)
    # Valid length, cookie and fingerprint attribute that does not match.
    bad_fingerprint = struct.pack("!HH", 0x8028, 4) + b"\x00\x00\x00\x00"
    header = struct.pack("!HHI12s", 0x0001, len(bad_fingerprint), 0x2112A442, rng.randbytes(12))
    junk.append(header + bad_fingerprint)
    return junk


async def test_junk_datagrams_are_dropped_quietly(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await _connect(pair.controlling, pair.controlled)
    [(_, target_port)] = _sockets(pair.controlled)
    before = _counter("sfu_ice_junk_datagrams_total")
    junk = _junk_datagrams()

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
        for datagram in junk:
            attacker.sendto(datagram, (LOCALHOST, target_port))
        # Sent after the junk on the same path: had junk reached the queue, recv() would
        # return it first.
        await pair.controlling.send(b"after junk")
        assert await asyncio.wait_for(pair.controlled.recv(), WAIT) == b"after junk"

    async def counted() -> None:
        while _counter("sfu_ice_junk_datagrams_total") < before + len(junk):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(counted(), WAIT)
    assert _counter("sfu_ice_junk_datagrams_total") == before + len(junk)
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert loud == []

    await pair.controlled.send(b"still alive")
    assert await asyncio.wait_for(pair.controlling.recv(), WAIT) == b"still alive"


async def test_non_stun_first_byte_skips_the_stun_parser(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _connect(pair.controlling, pair.controlled)
    [(_, target_port)] = _sockets(pair.controlled)

    def refuse(data: bytes) -> stun.Message:
        raise AssertionError("parsed a non-STUN datagram")

    monkeypatch.setattr(stun, "parse_message", refuse)
    rtp = b"\x80\x60" + bytes(30)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(rtp, (LOCALHOST, target_port))
        assert await asyncio.wait_for(pair.controlled.recv(), WAIT) == rtp
    assert all(isinstance(p, SfuStunProtocol) for p in internal(pair.controlled, "_protocols"))


# --- through aiortc ---------------------------------------------------------------------------

_CANDIDATE_PORT = re.compile(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) (\d+) typ", re.MULTILINE)


async def _wait_for(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.05)


async def test_aiortc_peer_connections_use_the_range(monkeypatch: pytest.MonkeyPatch) -> None:
    allocator = PortAllocator(41200, 41209)
    config = IceConfig(addresses=(LOCALHOST,), allocator=allocator)
    monkeypatch.setattr(aiortc.rtcicetransport, "Connection", make_connection_factory(config))

    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    received: asyncio.Queue[str] = asyncio.Queue()
    try:
        offerer.addTransceiver("audio", direction="sendrecv")
        channel = offerer.createDataChannel("chat")

        @answerer.on("datachannel")
        def on_datachannel(remote: aiortc.RTCDataChannel) -> None:
            remote.on("message", received.put_nowait)

        await asyncio.wait_for(offerer.setLocalDescription(await offerer.createOffer()), WAIT)
        await asyncio.wait_for(answerer.setRemoteDescription(offerer.localDescription), WAIT)
        await asyncio.wait_for(answerer.setLocalDescription(await answerer.createAnswer()), WAIT)
        await asyncio.wait_for(offerer.setRemoteDescription(answerer.localDescription), WAIT)

        await asyncio.wait_for(
            _wait_for(
                lambda: (
                    offerer.connectionState == "connected"
                    and answerer.connectionState == "connected"
                )
            ),
            15,
        )
        for description in (offerer.localDescription, answerer.localDescription):
            found = _CANDIDATE_PORT.findall(description.sdp)
            assert found
            for host, port in found:
                assert host == LOCALHOST
                assert 41200 <= int(port) <= 41209

        await asyncio.wait_for(_wait_for(lambda: channel.readyState == "open"), WAIT)
        channel.send("hello")
        assert await asyncio.wait_for(received.get(), WAIT) == "hello"
    finally:
        await asyncio.wait_for(asyncio.gather(offerer.close(), answerer.close()), WAIT)
    assert allocator.in_use == 0

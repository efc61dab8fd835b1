"""The embedded STUN responder over real UDP on 127.0.0.1: StunServer and the app's stun_ctx in this
process, then the SFU process answering on SFU_STUN_PORT (needs `stun_ctx` in create_app)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import aiohttp
import aioice
import aioice.ice
import pytest
from aiohttp import web
from aioice import stun
from prometheus_client import REGISTRY

from sfu.app.contexts import stun_ctx
from sfu.app.keys import SETTINGS
from sfu.config.settings import load_settings
from sfu.ice.source_limiter import RateConfig, SourceRateLimiter
from sfu.ice.stun_server import StunResponder, StunServer
from sfu.testing.process import SfuProcess, make_sfu

LOCALHOST = "127.0.0.1"
REPLY_TIMEOUT = 2.0


class Client(asyncio.DatagramProtocol):
    """A UDP socket on 127.0.0.1 that queues what it receives."""

    def __init__(self) -> None:
        self.replies: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.replies.put_nowait((data, (addr[0], addr[1])))

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, (LOCALHOST, port))

    async def binding(self, port: int) -> stun.Message:
        """One aioice Binding request; the parsed response (same transaction id)."""
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        self.send(bytes(request), port)
        data, addr = await asyncio.wait_for(self.replies.get(), REPLY_TIMEOUT)
        assert addr == (LOCALHOST, port)
        response = stun.parse_message(data)
        assert response.message_class == stun.Class.RESPONSE
        assert response.transaction_id == request.transaction_id
        return response

    async def drain(self, quiet: float = 0.5) -> list[bytes]:
        """Everything received until nothing more came for `quiet` seconds."""
        received: list[bytes] = []
        while True:
            try:
                data, _ = await asyncio.wait_for(self.replies.get(), quiet)
            except TimeoutError:
                return received
            received.append(data)


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Client, local_addr=(LOCALHOST, 0))
    yield protocol
    transport.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def udp_port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((LOCALHOST, port))
        except OSError:
            return False
        return True


def counter(result: str) -> float:
    return REGISTRY.get_sample_value("sfu_stun_requests_total", {"result": result}) or 0.0


def junk(i: int) -> bytes:
    """Datagrams that must never be answered: random, STUN-shaped, and near-misses."""
    request = bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST))
    kinds = [
        os.urandom(1 + i % 300),
        bytes(stun.Message(stun.Method.BINDING, stun.Class.RESPONSE)),
        bytes(stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST)),
        request[:4] + b"\x00\x00\x00\x00" + request[8:],  # no cookie
        request + b"\x00" * 4,  # length mismatch
        b"\x80\x60" + os.urandom(40),  # RTP
    ]
    return kinds[i % len(kinds)]


async def gather_with_stun(port: int, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """A stock aioice Connection gathering with our STUN server, on 127.0.0.1 only."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: [LOCALHOST])
    connection = aioice.Connection(
        ice_controlling=True, stun_server=(LOCALHOST, port), use_ipv6=False
    )
    try:
        await asyncio.wait_for(connection.gather_candidates(), 10)
        return list(connection.local_candidates)
    finally:
        await connection.close()


def check_srflx(candidates: list[Any]) -> None:
    hosts = [c for c in candidates if c.type == "host"]
    srflx = [c for c in candidates if c.type == "srflx"]
    assert len(hosts) == 1, candidates
    # aioice keeps a server-reflexive candidate equal to its host candidate (on loopback
    # there is no NAT): it proves the Binding transaction with our server succeeded.
    assert len(srflx) == 1, f"no server-reflexive candidate: {candidates}"
    assert (srflx[0].host, srflx[0].port) == (hosts[0].host, hosts[0].port)
    assert (srflx[0].related_address, srflx[0].related_port) == (hosts[0].host, hosts[0].port)


# --- StunServer and stun_ctx in this process -------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[StunServer]:
    config = RateConfig(rate_per_source=20, burst_per_source=40, rate_total=2000)
    stun_server = StunServer(StunResponder(SourceRateLimiter(config, time.monotonic())))
    await stun_server.start(LOCALHOST, 0)
    yield stun_server
    stun_server.close()


async def test_server_answers_with_the_client_address(server: StunServer, client: Client) -> None:
    assert server.address is not None
    port = server.address[1]
    for _ in range(3):
        response = await client.binding(port)
        assert response.attributes["XOR-MAPPED-ADDRESS"] == client.address


async def test_server_close_is_idempotent_and_frees_the_port(client: Client) -> None:
    stun_server = StunServer(StunResponder(SourceRateLimiter(RateConfig(), 0.0)))
    host, port = await stun_server.start(LOCALHOST, 0)
    assert (host, port) == stun_server.address
    with pytest.raises(RuntimeError):
        await stun_server.start(LOCALHOST, 0)
    stun_server.close()
    stun_server.close()
    assert stun_server.address is None
    await asyncio.sleep(0)  # the transport closes on the next loop iteration
    assert udp_port_is_free(port)
    client.send(bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST)), port)
    assert await client.drain(0.2) == []


async def test_server_flood_is_rate_limited_and_silent(
    server: StunServer, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    assert server.address is not None
    port = server.address[1]
    before = {r: counter(r) for r in ("answered", "ignored", "rate_limited")}
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    for i in range(300):
        client.send(junk(i), port)
        client.send(bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST)), port)
        if i % 25 == 0:
            await asyncio.sleep(0.001)
    replies = await client.drain()
    elapsed = time.monotonic() - started
    assert 40 <= len(replies) <= 40 + 20 * elapsed + 1
    for reply in replies:
        parsed = stun.parse_message(reply)
        assert parsed.attributes["XOR-MAPPED-ADDRESS"] == client.address
    assert counter("answered") - before["answered"] == len(replies)
    assert counter("ignored") - before["ignored"] == 300
    assert counter("rate_limited") - before["rate_limited"] == 300 - len(replies)
    assert [r for r in caplog.records if r.name.startswith("sfu.")] == []


async def test_stun_ctx_runs_the_server_while_the_app_runs(client: Client) -> None:
    port = free_udp_port()
    app = web.Application()
    app[SETTINGS] = load_settings(stun_bind=LOCALHOST, stun_port=port, stun_enabled=True)
    ctx = stun_ctx(app)
    await ctx.__anext__()
    assert not udp_port_is_free(port)
    response = await client.binding(port)
    assert response.attributes["XOR-MAPPED-ADDRESS"] == client.address
    with pytest.raises(StopAsyncIteration):
        await ctx.__anext__()
    await asyncio.sleep(0)
    assert udp_port_is_free(port)


async def test_stun_ctx_disabled_binds_nothing() -> None:
    port = free_udp_port()
    app = web.Application()
    app[SETTINGS] = load_settings(stun_bind=LOCALHOST, stun_port=port, stun_enabled=False)
    ctx = stun_ctx(app)
    await ctx.__anext__()
    assert udp_port_is_free(port)
    with pytest.raises(StopAsyncIteration):
        await ctx.__anext__()


async def test_stun_ctx_refuses_to_start_on_a_taken_port() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((LOCALHOST, 0))
        app = web.Application()
        app[SETTINGS] = load_settings(stun_bind=LOCALHOST, stun_port=taken.getsockname()[1])
        with pytest.raises(OSError):
            await stun_ctx(app).__anext__()


async def test_aioice_gathers_a_server_reflexive_candidate_in_process(
    server: StunServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert server.address is not None
    before = counter("answered")
    check_srflx(await gather_with_stun(server.address[1], monkeypatch))
    assert counter("answered") == before + 1


# --- the SFU process (needs stun_ctx in create_app) ------------------------------------------


@pytest.fixture
def stun_sfu() -> Iterator[SfuProcess]:
    server = make_sfu(46900, 46910, name="sfu-stun")
    server.start()
    yield server
    server.stop()


def stun_port(sfu: SfuProcess) -> int:
    return int(sfu.env["SFU_STUN_PORT"])


async def sfu_counters(sfu: SfuProcess) -> dict[str, float]:
    async with aiohttp.ClientSession() as http:
        text = await (await http.get(sfu.url + "/metrics")).text()
    counts = {}
    for line in text.splitlines():
        if line.startswith("sfu_stun_requests_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            counts[result] = float(line.split()[-1])
    return counts


async def test_sfu_answers_binding_requests(stun_sfu: SfuProcess, client: Client) -> None:
    response = await client.binding(stun_port(stun_sfu))
    assert response.attributes["XOR-MAPPED-ADDRESS"] == client.address
    assert "FINGERPRINT" in response.attributes
    assert (await sfu_counters(stun_sfu))["answered"] == 1


async def test_sfu_flood_is_rate_limited_counted_and_not_logged(
    stun_sfu: SfuProcess, client: Client
) -> None:
    port = stun_port(stun_sfu)
    request = bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST))
    started = time.monotonic()
    for i in range(2000):  # 2000 junk and 1000 requests, paced so the kernel drops nothing
        client.send(junk(i), port)
        if i % 2:
            client.send(request, port)
        if i % 50 == 0:
            await asyncio.sleep(0.002)
    replies = await client.drain()
    elapsed = time.monotonic() - started
    # default limits: a burst of 40, then 20/s
    assert 40 <= len(replies) <= 40 + 20 * elapsed + 1, (len(replies), elapsed)
    counts = await sfu_counters(stun_sfu)
    assert counts == {
        "answered": len(replies),
        "ignored": 2000,
        "rate_limited": 1000 - len(replies),
    }
    # still answering once the bucket refills
    await asyncio.sleep(0.2)
    await client.binding(port)

    assert stun_sfu.stop() == 0
    log = stun_sfu.log_path.read_text(errors="replace")
    assert "Traceback" not in log
    assert len(log.splitlines()) < 50, "per-packet log lines?"


async def test_aioice_gathers_a_server_reflexive_candidate_from_the_sfu(
    stun_sfu: SfuProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_srflx(await gather_with_stun(stun_port(stun_sfu), monkeypatch))
    assert (await sfu_counters(stun_sfu))["answered"] == 1

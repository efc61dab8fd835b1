"""The HTTP edge on a real SFU: CORS, per-IP limits, X-Forwarded-For from trusted proxies
only, audit lines, 405 with Allow, and bodies read whole."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import aiohttp
import pytest

from sfu.client.client import SfuClient
from sfu.client.model import JoinRefused
from sfu.testing.process import SfuProcess, make_sfu
from tests.support.rooms import LOOPBACK, create_room


@pytest.fixture
def strict_sfu() -> Iterator[SfuProcess]:
    server = make_sfu(
        46950,
        46990,
        name="sfu-strict",
        SFU_REST_RATE_PER_IP="5",
        SFU_REST_BURST_PER_IP="10",
        SFU_WS_PER_IP="3",
        SFU_TRUSTED_PROXIES="127.0.0.2/32",
        SFU_LOG_JSON="true",
    )
    server.start()
    yield server
    server.stop()


async def test_cors_allow_list_and_preflight(sfu: SfuProcess) -> None:
    async with aiohttp.ClientSession() as http:
        for origin in ("https://www.cotept.com", "https://cotept.com", "https://dev.cotept.com"):
            pre = await http.options(
                sfu.url + "/rooms",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "Content-Type, Authorization",
                },
            )
            assert pre.status == 204
            assert pre.headers["Access-Control-Allow-Origin"] == origin
            assert pre.headers["Access-Control-Allow-Credentials"] == "true"
            assert pre.headers["Access-Control-Allow-Methods"] == "GET, POST, DELETE, OPTIONS"
            assert pre.headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization"
        listed = await http.get(
            sfu.url + "/rooms",
            headers={"Origin": "https://www.cotept.com", **sfu.service_headers()},
        )
        assert listed.status == 200
        assert listed.headers["Access-Control-Allow-Origin"] == "https://www.cotept.com"
        refused = await http.get(sfu.url + "/rooms", headers={"Origin": "https://www.cotept.com"})
        assert refused.status == 401  # errors carry CORS headers too, so the page can read them
        assert refused.headers["Access-Control-Allow-Origin"] == "https://www.cotept.com"

        for origin in ("https://evil.example", "http://www.cotept.com", "null"):
            pre = await http.options(
                sfu.url + "/rooms",
                headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
            )
            other = await http.get(
                sfu.url + "/rooms", headers={"Origin": origin, **sfu.service_headers()}
            )
            for response in (pre, other):
                assert not any(h.startswith("Access-Control-") for h in response.headers), origin


async def test_rest_rate_limit_per_ip(strict_sfu: SfuProcess) -> None:
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(30):
            response = await http.get(
                strict_sfu.url + "/rooms", headers=strict_sfu.service_headers()
            )
            statuses.append(response.status)
            if response.status == 429:
                body = await response.json()
                assert body["error"]["code"] == "rate_limited"
        assert statuses[:10] == [200] * 10
        assert 429 in statuses
        # probes are never limited
        for _ in range(20):
            assert (await http.get(strict_sfu.url + "/health")).status == 200
        # an address behind the trusted proxy is limited on its own
        behind = await http.get(
            strict_sfu.url + "/rooms",
            headers={"X-Forwarded-For": "203.0.113.9", **strict_sfu.service_headers()},
        )
        assert behind.status == 429  # the peer 127.0.0.1 is not the trusted 127.0.0.2


async def test_forwarded_for_is_believed_only_from_trusted_proxies(
    strict_sfu: SfuProcess,
) -> None:
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as proxy:
        for _ in range(10):
            await proxy.get(strict_sfu.url + "/rooms", headers=strict_sfu.service_headers())
        # the proxy's own address is exhausted, but the client behind it is not
        own = await proxy.get(strict_sfu.url + "/rooms", headers=strict_sfu.service_headers())
        assert own.status == 429
        forwarded = await proxy.get(
            strict_sfu.url + "/rooms",
            headers={"X-Forwarded-For": "198.51.100.7, 127.0.0.2", **strict_sfu.service_headers()},
        )
        assert forwarded.status == 200
    await asyncio.sleep(0.2)
    lines = [
        json.loads(x) for x in strict_sfu.log_path.read_text().splitlines() if x.startswith("{")
    ]
    audits = [x for x in lines if x.get("logger") == "sfu.audit"]
    assert any(a["ip"] == "198.51.100.7" and a["outcome"] == "200" for a in audits)
    assert any(a["ip"] == "127.0.0.2" and a["outcome"] == "rate_limited" for a in audits)


async def test_websockets_per_ip_limit_and_audit(strict_sfu: SfuProcess) -> None:
    room = await create_room(strict_sfu, max_participants=16)
    room_id = str(room["room_id"])
    clients = [
        await SfuClient.connect(strict_sfu.ws_url, strict_sfu.token(room_id, f"u{i}"), ice=LOOPBACK)
        for i in range(3)
    ]
    try:
        with pytest.raises(JoinRefused) as refused:
            extra = await SfuClient.connect(
                strict_sfu.ws_url, strict_sfu.token(room_id, "u9"), ice=LOOPBACK
            )
            await extra.close()
        assert refused.value.close_code == 4429
        await clients[0].ping()
        await clients[0].leave()
        with pytest.raises(JoinRefused) as bad_token:
            bad = await SfuClient.connect(strict_sfu.ws_url, "garbage", ice=LOOPBACK)
            await bad.close()
        assert bad_token.value.close_code == 4401
        again = await SfuClient.connect(
            strict_sfu.ws_url, strict_sfu.token(room_id, "u10"), ice=LOOPBACK
        )
        clients.append(again)
    finally:
        for client in clients:
            await client.close()
    await asyncio.sleep(0.2)
    lines = [
        json.loads(x) for x in strict_sfu.log_path.read_text().splitlines() if x.startswith("{")
    ]
    audits = [x for x in lines if x.get("logger") == "sfu.audit"]
    outcomes = {(a["action"], a["outcome"]) for a in audits}
    assert ("GET /ws", "too_many_sockets") in outcomes
    assert ("GET /ws", "joined") in outcomes
    assert ("POST /rooms", "201") in outcomes
    joined = [a for a in audits if a["outcome"] == "joined"]
    assert all(a["room_id"] == room_id and a["actor"].startswith("user:") for a in joined)
    refused_token = [
        a for a in audits if a["action"] == "GET /ws" and a["outcome"] == "unauthorized"
    ]
    assert refused_token and refused_token[0]["ip"] == "127.0.0.1"


async def _raw_request(sfu: SfuProcess, parts: list[bytes], pause: float = 0.2) -> bytes:
    """Sends `parts` as separate TCP segments, `pause` s apart; returns the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", sfu.port)
    try:
        for index, part in enumerate(parts):
            if index:
                await asyncio.sleep(pause)
            writer.write(part)
            await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_a_body_in_several_tcp_segments_is_read_whole(sfu: SfuProcess) -> None:
    room_id = f"split-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"room_id": room_id, "record": False, "metadata": {"n": "x" * 3000}})
    raw = body.encode()
    head = (
        f"POST /rooms HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {sfu.service_token()}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    answer = await _raw_request(sfu, [head + raw[:1000], raw[1000:2000], raw[2000:]])
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 201 Created", answer[:300]
    room = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert room["room_id"] == room_id
    assert room["metadata"] == {"n": "x" * 3000}
    async with aiohttp.ClientSession() as http:
        await http.delete(f"{sfu.url}/rooms/{room_id}", headers=sfu.service_headers())


async def test_method_not_allowed_names_the_allowed_methods(sfu: SfuProcess) -> None:
    async with aiohttp.ClientSession() as http:
        for method, path, allowed in (
            ("PUT", "/rooms", "GET, HEAD, POST"),
            ("TRACE", "/health", "GET, HEAD"),
            ("POST", "/rooms/r1", "DELETE, GET, HEAD"),
            ("GET", "/rooms/r1/participants/p1", "DELETE"),
        ):
            response = await http.request(method, sfu.url + path, headers=sfu.service_headers())
            assert response.status == 405, (method, path)
            assert response.headers.get("Allow") == allowed, (method, path)
            body = await response.json()
            assert body["error"]["code"] == "method_not_allowed"

"""Process-level behaviour: draining on SIGTERM, handshake timeouts, junk on media ports,
no decoder threads, nothing left behind, Redis readiness."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from sfu.client.client import SfuClient
from sfu.media.seams import client_peer_connection
from sfu.testing.process import SfuProcess, make_sfu, redis_server
from tests.support.rooms import LOOPBACK, Join, camera, create_room, metric, microphone


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


@pytest.fixture
def quick_sfu() -> Iterator[SfuProcess]:
    server = make_sfu(46500, 46520, name="sfu-quick", SFU_ICE_TIMEOUT_S="2")
    server.start()
    yield server
    server.stop()


async def test_no_decoder_or_encoder_threads_and_nothing_left_behind(
    sfu: SfuProcess, join: Join
) -> None:
    # Recording muxes in worker threads of its own (no decoding either); this test is about
    # the forwarding path, so the room is not recorded.
    room = await create_room(sfu, record=False)
    baseline_threads = thread_count(sfu.pid)
    baseline_tasks = await metric(sfu, "sfu_asyncio_tasks")
    clients = [await join(room["room_id"], role) for role in ("mentor", "mentee", "observer")]
    for client in clients[:2]:
        await client.publish({camera(): "camera", microphone(): "microphone"})
    for client in clients:
        await client.wait_frames(lambda i: i.kind == "video", 30, timeout=30)
    # 4 received tracks and 8 forwarded ones: stock aiortc would run a decoder thread per
    # received track and encode in executor threads for each forwarded video.
    assert thread_count(sfu.pid) <= baseline_threads + 1

    async with aiohttp.ClientSession() as http:
        await http.delete(f"{sfu.url}/rooms/{room['room_id']}", headers=sfu.service_headers())
    for client in clients:
        await client.wait_closed(10)
    tasks = baseline_tasks + 100
    for _ in range(50):
        tasks = await metric(sfu, "sfu_asyncio_tasks")
        if tasks <= baseline_tasks:
            break
        await asyncio.sleep(0.1)
    assert tasks <= baseline_tasks, f"{tasks} tasks alive, {baseline_tasks} before the room"
    assert await metric(sfu, "sfu_media_ports_in_use") == 0


async def test_handshake_that_never_completes_is_torn_down(quick_sfu: SfuProcess) -> None:
    room = await create_room(quick_sfu)
    client = await SfuClient.connect(
        quick_sfu.ws_url, quick_sfu.token(str(room["room_id"]), "ghost", "mentor"), ice=LOOPBACK
    )
    try:
        # Offer, then vanish: the SFU's ICE checks are never answered.
        pc = client_peer_connection(LOOPBACK)
        pc.addTransceiver(camera(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        offer_sdp = pc.localDescription.sdp
        track_id = pc.getTransceivers()[0].sender.track.id
        await pc.close()
        await client.send(
            {"type": "publish_offer", "sdp": offer_sdp, "sources": {track_id: "camera"}}
        )
        await client.wait_for("publish_answer", timeout=10)
        started = time.monotonic()
        error = await client.wait_for("error", timeout=20)
        assert error["error"]["code"] == "ice_failed"
        assert await client.wait_closed(10) == 1011
        assert time.monotonic() - started < 15
        assert await metric(quick_sfu, "sfu_media_ports_in_use") == 0
    finally:
        await client.close()


async def test_junk_on_media_ports_is_dropped_quietly(quick_sfu: SfuProcess, join: Join) -> None:
    room = await create_room(quick_sfu)
    mentor = await join(room["room_id"], "mentor", server=quick_sfu)
    mentee = await join(room["room_id"], "mentee", server=quick_sfu)
    await mentor.publish({camera(): "camera"})
    info = await mentee.wait_frames(lambda i: i.kind == "video", 10, timeout=30)
    log_before = quick_sfu.log_path.read_text()
    junk = [
        b"",
        b"\x00",
        b"\x00\x01\x00",
        b"\x01\x01\x00\x08" + b"\x21\x12\xa4\x42" + b"x" * 12,
        b"\x16\xfe\xfd" + b"\x00" * 40,
        b"\x80\x60" + os.urandom(30),
        os.urandom(200),
    ]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for port in range(quick_sfu.rtc_min, quick_sfu.rtc_max + 1):
            for _ in range(20):
                for datagram in junk:
                    sock.sendto(datagram, ("127.0.0.1", port))
            await asyncio.sleep(0)
    finally:
        sock.close()
    await mentee.wait_frames(lambda i: i.kind == "video", info.frames + 60, timeout=20)
    added = quick_sfu.log_path.read_text()[len(log_before) :]
    assert "Traceback" not in added
    assert await metric(quick_sfu, "sfu_ice_junk_datagrams_total") > 0


async def test_first_sigterm_drains_second_forces(join: Join) -> None:
    server = make_sfu(46600, 46610, name="sfu-drain", SFU_DRAIN_TIMEOUT_S="30")
    server.start()
    try:
        room = await create_room(server)
        client = await join(room["room_id"], "mentor", server=server)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        async with aiohttp.ClientSession() as http:
            status = 200
            for _ in range(50):
                status = (await http.get(server.url + "/ready")).status
                if status == 503:
                    break
                await asyncio.sleep(0.1)
            assert status == 503
            assert (await http.get(server.url + "/health")).status == 200
            refused = await http.post(
                server.url + "/rooms", json={}, headers=server.service_headers()
            )
            assert refused.status == 503
            assert (await refused.json())["error"]["code"] == "draining"
        await client.ping()  # the room in progress goes on
        assert server.proc.poll() is None
        server.proc.send_signal(signal.SIGTERM)
        closed = await client.wait_for("room_closed", timeout=10)
        assert closed["reason"] == "node_shutdown"
        assert server.proc.wait(10) == 0
    finally:
        server.stop()


@pytest.fixture
def redis_port() -> Iterator[int]:
    with redis_server() as port:
        yield port


async def test_ready_follows_redis(redis_port: int) -> None:
    server = make_sfu(46700, 46710, name="sfu-redis", REDIS_URL=f"redis://127.0.0.1:{redis_port}/0")
    server.start()
    try:
        async with aiohttp.ClientSession() as http:
            assert (await http.get(server.url + "/ready")).status == 200
            # stop Redis: readiness must drop, liveness must not
            subprocess.run(["redis-cli", "-p", str(redis_port), "shutdown", "nosave"], check=False)
            response = await http.get(server.url + "/ready")
            assert response.status == 503
            assert "redis" in (await response.json())["error"]["message"]
            assert (await http.get(server.url + "/health")).status == 200
    finally:
        server.stop()


def test_sfu_token_cli_mints_working_tokens(tmp_path: Path) -> None:
    env = {**os.environ, "SFU_JWT_SECRET": "cli-test-secret-0123456789abcdefghij"}
    out = subprocess.run(
        ["sfu", "token", "--room", "r1", "--user", "u1", "--role", "mentor", "--name", "Kim"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.strip()
    from sfu.api.tokens import verify_participant_token, verify_service_token

    grant = verify_participant_token("cli-test-secret-0123456789abcdefghij", out)
    assert (grant.room_id, grant.user_id, grant.role, grant.name) == ("r1", "u1", "mentor", "Kim")
    service = subprocess.run(
        ["sfu", "token", "--service"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.strip()
    verify_service_token("cli-test-secret-0123456789abcdefghij", service)
    bad = subprocess.run(
        ["sfu", "serve"],
        env={**env, "SFU_RTC_PORT_MIN": "abc"},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert bad.returncode == 2
    assert "SFU_RTC_PORT_MIN" in bad.stderr

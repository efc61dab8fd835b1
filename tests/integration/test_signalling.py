"""The messages, errors and close codes of docs/api.md §3, each with its trigger, on a real SFU."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import jwt
import pytest

from sfu.client.client import SfuClient
from sfu.client.model import JoinRefused, SfuErrorReply
from sfu.testing.process import TEST_SECRET, SfuProcess
from tests.support.rooms import LOOPBACK, Join, camera, create_room


async def _refused(sfu: SfuProcess, token: str) -> int | None:
    with pytest.raises(JoinRefused) as refused:
        client = await SfuClient.connect(sfu.ws_url, token, ice=LOOPBACK)
        await client.close()
    return refused.value.close_code


async def test_join_refusals_have_contract_close_codes(sfu: SfuProcess) -> None:
    room = await create_room(sfu)
    room_id = str(room["room_id"])
    now = int(time.time())
    expired = jwt.encode(
        {"sub": "u", "room": room_id, "role": "mentee", "exp": now - 60}, TEST_SECRET, "HS256"
    )
    wrong_key = jwt.encode(
        {"sub": "u", "room": room_id, "role": "mentee", "exp": now + 60}, "x" * 40, "HS256"
    )
    assert await _refused(sfu, "not-a-jwt") == 4401
    assert await _refused(sfu, "") == 4401
    assert await _refused(sfu, expired) == 4401
    assert await _refused(sfu, wrong_key) == 4401
    assert await _refused(sfu, sfu.service_token()) == 4403
    assert await _refused(sfu, sfu.token("no-such-room", "u1", "mentee")) == 4404


async def test_message_errors_keep_the_socket_and_room_alive(sfu: SfuProcess, join: Join) -> None:
    room = await create_room(sfu)
    mentor = await join(room["room_id"], "mentor")
    mentee = await join(room["room_id"], "mentee")
    await mentor.publish({camera(): "camera"})
    await mentee.wait_frames(lambda i: i.kind == "video", 10, timeout=30)

    cases: list[tuple[str, str]] = [
        ("{not json", "invalid_message"),
        ("[1, 2]", "invalid_message"),
        (json.dumps({"type": "dance"}), "unknown_type"),
        (json.dumps({"type": "publish_offer"}), "invalid_message"),
        (
            json.dumps({"type": "publish_offer", "sdp": "v=0\r\n", "sources": {"a": "tv"}}),
            "invalid_message",
        ),
        (json.dumps({"type": "publish_offer", "sdp": "garbage", "sources": {}}), "invalid_sdp"),
        (json.dumps({"type": "subscribe_answer", "sdp": "v=0\r\n"}), "out_of_order"),
        (
            json.dumps({"type": "candidate", "target": "nowhere", "candidate": None}),
            "invalid_message",
        ),
        (json.dumps({"type": "request_keyframe", "track_id": "nope"}), "track_not_found"),
    ]
    for raw, code in cases:
        mark = len(mentee.messages)
        await mentee.send_raw(raw)
        reply = await mentee.wait_for("error", timeout=10, since=mark)
        assert reply["error"]["code"] == code, raw
        assert reply["error"]["message"]
    assert mentee.closed_code is None
    await mentee.ping()
    info = await mentee.wait_frames(lambda i: i.kind == "video", 1, timeout=5)
    await mentee.wait_frames(lambda i: i.kind == "video", info.frames + 30, timeout=15)


async def test_observer_publish_is_forbidden(sfu: SfuProcess, join: Join) -> None:
    room = await create_room(sfu)
    observer = await join(room["room_id"], "observer")
    with pytest.raises(SfuErrorReply) as refused:
        await observer.publish({camera(): "camera"})
    assert refused.value.code == "forbidden"


async def test_oversized_message_closes_with_4413(sfu: SfuProcess, join: Join) -> None:
    room = await create_room(sfu)
    client = await join(room["room_id"])
    await client.send_raw(json.dumps({"type": "ping", "pad": "x" * (65 * 1024)}))
    assert await client.wait_closed(10) == 4413


async def test_very_large_frame_closes_with_4413(sfu: SfuProcess, join: Join) -> None:
    room = await create_room(sfu)
    client = await join(room["room_id"])
    await client.send_raw("x" * (2 * 1024 * 1024))
    assert await client.wait_closed(10) == 4413


async def test_message_flood_closes_with_4429(sfu: SfuProcess, join: Join) -> None:
    room = await create_room(sfu)
    other = await join(room["room_id"], "mentor")
    client = await join(room["room_id"])
    for _ in range(200):
        await client.send({"type": "ping"})
        if client.closed_code is not None:
            break
    assert await client.wait_closed(10) == 4429
    await other.ping()


async def test_reconnect_replaces_older_socket_with_4409(sfu: SfuProcess, join: Join) -> None:
    room = await create_room(sfu)
    mentor = await join(room["room_id"], "mentor", user="alice")
    watcher = await join(room["room_id"], "mentee")
    await mentor.publish({camera(): "camera"})
    await watcher.wait_frames(lambda i: i.kind == "video", 10, timeout=30)

    again = await join(room["room_id"], "mentor", user="alice")
    assert await mentor.wait_closed(10) == 4409
    assert (await mentor.wait_for("error", timeout=5))["error"]["code"] == "replaced"
    left = await watcher.wait_for("participant_left", timeout=10)
    assert left["participant_id"] == mentor.participant_id
    assert again.participant_id != mentor.participant_id
    await again.publish({camera(): "camera"})
    await watcher.wait_frames(lambda i: i.participant_id == again.participant_id, 30, timeout=30)


async def test_leave_kick_and_delete(sfu: SfuProcess, join: Join) -> None:
    room = await create_room(sfu)
    room_id = str(room["room_id"])
    a = await join(room_id, "mentor")
    b = await join(room_id, "mentee")
    c = await join(room_id, "observer")
    await a.publish({camera(): "camera"})
    await c.wait_frames(lambda i: i.kind == "video", 5, timeout=30)

    assert await b.leave() == 1000
    left = await a.wait_for("participant_left", timeout=10)
    assert left["participant_id"] == b.participant_id

    async with aiohttp.ClientSession() as http:
        headers = sfu.service_headers()
        kicked = await http.delete(
            f"{sfu.url}/rooms/{room_id}/participants/{c.participant_id}", headers=headers
        )
        assert kicked.status == 204
        assert await c.wait_closed(10) == 1000
        removed = await c.wait_for("error", timeout=5)
        assert removed["error"]["code"] == "removed"
        missing = await http.delete(
            f"{sfu.url}/rooms/{room_id}/participants/{c.participant_id}", headers=headers
        )
        assert missing.status == 404
        assert (await missing.json())["error"]["code"] == "participant_not_found"

        deleted = await http.delete(f"{sfu.url}/rooms/{room_id}", headers=headers)
        assert deleted.status == 200
        assert (await deleted.json())["room_id"] == room_id
        closed = await a.wait_for("room_closed", timeout=10)
        assert closed["reason"] == "deleted"
        assert await a.wait_closed(10) == 1000
        gone = await http.get(f"{sfu.url}/rooms/{room_id}", headers=headers)
        assert gone.status == 404
        assert (await gone.json())["error"]["code"] == "room_not_found"


async def test_empty_room_closes_itself(sfu: SfuProcess, join: Join) -> None:
    room = await create_room(sfu, empty_timeout_s=1)
    room_id = str(room["room_id"])
    client = await join(room_id)
    await asyncio.sleep(1.5)
    await client.ping()  # occupied: still open
    await client.leave()
    async with aiohttp.ClientSession() as http:
        status = 200
        for _ in range(40):
            response = await http.get(f"{sfu.url}/rooms/{room_id}", headers=sfu.service_headers())
            status = response.status
            if status == 404:
                break
            await asyncio.sleep(0.1)
    assert status == 404


async def test_joined_advertises_the_embedded_stun_server(sfu: SfuProcess, join: Join) -> None:
    room = await create_room(sfu)
    client = await join(room["room_id"])
    port = sfu.env["SFU_STUN_PORT"]
    assert client.ice_servers == [{"urls": [f"stun:sfu.cotept.com:{port}"]}]

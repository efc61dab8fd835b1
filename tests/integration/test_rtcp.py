"""What keeps browsers' congestion control, loss recovery and lip-sync working through the SFU:
H.264 forwarding, receiver reports and REMB to the publisher, sender reports to subscribers,
and NACKs from subscribers answered from the SFU's history."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtcpRrPacket, unpack_remb_fci

from sfu.client.client import SfuClient
from sfu.client.clips import PacedPacketTrack
from sfu.media.client_seams import drop_incoming_rtp, observe_received_rtcp, sender_ssrcs
from sfu.media.seams import transceiver_codecs
from sfu.testing.process import SfuProcess
from tests.support.rooms import (
    Join,
    camera,
    create_room,
    metric,
    microphone,
    sfu_on_both,  # noqa: F401 (the `sfu` fixture: both SFUs)
)


async def test_h264_is_forwarded(sfu: SfuProcess, join: Join) -> None:
    room = await create_room(sfu)
    mentor = await join(room["room_id"], "mentor")
    mentee = await join(room["room_id"], "mentee")
    await mentor.publish({PacedPacketTrack.from_codec("h264", seconds=4): "camera"})
    info = await mentee.wait_frames(lambda i: i.kind == "video", 60, timeout=30)
    assert (info.width, info.height) == (640, 480)
    pc = mentee.subscriber
    assert pc is not None
    sdp = pc.remoteDescription.sdp
    assert "H264/90000" in sdp and "VP8/90000" not in sdp


async def test_publisher_gets_receiver_reports_and_remb(sfu: SfuProcess, join: Join) -> None:
    room = await create_room(sfu)
    mentor = await join(room["room_id"], "mentor")
    await join(room["room_id"], "mentee")
    await mentor.publish({camera(): "camera"})
    assert mentor.publisher is not None
    sender = next(s for s in mentor.publisher.getSenders() if s.kind == "video")
    seen: list[Any] = []
    observe_received_rtcp(sender, seen.append)
    ssrc = sender_ssrcs(sender).media
    deadline = time.monotonic() + 15
    remb: list[int] = []
    reports: list[Any] = []
    while time.monotonic() < deadline and not (remb and reports):
        await asyncio.sleep(0.2)
        reports = [
            r for p in seen if isinstance(p, RtcpRrPacket) for r in p.reports if r.ssrc == ssrc
        ]
        remb = [
            unpack_remb_fci(p.fci)[0]
            for p in seen
            if isinstance(p, RtcpPsfbPacket)
            and p.fmt == RTCP_PSFB_APP
            and ssrc in unpack_remb_fci(p.fci)[1]
        ]
    assert reports, "no receiver report for the published stream"
    assert reports[-1].highest_sequence > 0
    assert remb and remb[-1] > 100_000, f"REMB estimates: {remb}"


async def test_subscriber_gets_sender_reports(sfu: SfuProcess, join: Join) -> None:
    room = await create_room(sfu)
    mentor = await join(room["room_id"], "mentor")
    mentee = await join(room["room_id"], "mentee")
    await mentor.publish({camera(): "camera", microphone(): "microphone"})
    await mentee.wait_frames(lambda i: i.kind == "video", 30, timeout=30)
    pc = mentee.subscriber
    assert pc is not None
    found: dict[str, Any] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(found) < 2:
        await asyncio.sleep(0.5)
        for receiver in pc.getReceivers():
            for stat in (await receiver.getStats()).values():
                if stat.type == "remote-outbound-rtp":
                    found[stat.kind] = stat
    assert set(found) == {"audio", "video"}
    for kind, stat in found.items():
        inbound = [
            s
            for r in pc.getReceivers()
            for s in (await r.getStats()).values()
            if s.type == "inbound-rtp" and s.kind == kind
        ]
        received = max(s.packetsReceived for s in inbound)
        # The SR counts what the SFU sent; it was sent up to ~1.5 s before this read.
        assert 0 < stat.packetsSent <= received + 5, (kind, stat.packetsSent, received)
        assert stat.bytesSent > 0
        age = time.time() - stat.remoteTimestamp.timestamp()
        assert -1.0 < age < 5.0, f"{kind} SR NTP time is {age:.1f} s off"


def _drop_first_arrivals(client: SfuClient, fraction: float) -> list[int]:
    """Drop a fraction of the video RTP packets reaching the subscriber (first arrivals only,
    so the SFU's retransmissions get through)."""
    pc = client.subscriber
    assert pc is not None
    video = next(t for t in pc.getTransceivers() if t.kind == "video")
    video_pt = transceiver_codecs(video)[0].payloadType  # the primary codec, not its RTX
    rng = random.Random(11)
    seen: set[tuple[int, int]] = set()
    dropped: list[int] = []

    def lossy(data: bytes) -> bool:
        if len(data) > 12 and (data[1] & 0x7F) == video_pt:
            key = (int.from_bytes(data[8:12], "big"), int.from_bytes(data[2:4], "big"))
            if key not in seen:
                seen.add(key)
                if rng.random() < fraction:
                    dropped.append(key[1])
                    return True
        return False

    drop_incoming_rtp(video.receiver.transport, lossy)
    return dropped


async def test_subscriber_nacks_are_answered_from_history(sfu: SfuProcess, join: Join) -> None:
    room = await create_room(sfu)
    mentor = await join(room["room_id"], "mentor")
    mentee = await join(room["room_id"], "mentee")
    await mentor.publish({camera(): "camera"})
    info = await mentee.wait_frames(lambda i: i.kind == "video", 10, timeout=30)
    answered = await metric(sfu, "sfu_nacks_answered_total")
    dropped = _drop_first_arrivals(mentee, 0.03)
    start_frames, started = info.frames, time.monotonic()
    await mentee.wait_frames(lambda i: i.kind == "video", start_frames + 150, timeout=30)
    assert len(dropped) > 10
    assert await metric(sfu, "sfu_nacks_answered_total") > answered
    assert 150 / (time.monotonic() - started) > 25

"""Media through the real SFU: frames decoded on the other side, screen share, observer, NACK."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from sfu.client.client import SfuClient
from sfu.client.model import RemoteTrackStats, SfuErrorReply
from sfu.client.remote import RemoteTrackInfo
from sfu.media.client_seams import socket_rtp_handler
from sfu.testing.process import SfuProcess
from tests.support.rooms import (
    Join,
    camera,
    create_room,
    metric,
    microphone,
    offers,
    offers_no,
    sfu_on_both,  # noqa: F401 (the `sfu` fixture: both SFUs)
    unpublished,
)

FRAMES = 60


async def test_mentor_and_mentee_exchange_video_and_audio(sfu: SfuProcess, join: Join) -> None:
    room = await create_room(sfu)
    mentor = await join(room["room_id"], "mentor")
    mentee = await join(room["room_id"], "mentee")
    await mentor.publish({camera(): "camera", microphone(): "microphone"})
    await mentee.publish({camera(): "camera", microphone(): "microphone"})

    for viewer, other in ((mentor, mentee), (mentee, mentor)):

        def other_video(i: RemoteTrackInfo, o: SfuClient = other) -> bool:
            return i.participant_id == o.participant_id and i.kind == "video"

        def other_audio(i: RemoteTrackInfo, o: SfuClient = other) -> bool:
            return i.participant_id == o.participant_id and i.kind == "audio"

        video = await viewer.wait_frames(other_video, FRAMES, timeout=30)
        assert (video.width, video.height) == (640, 480)
        audio = await viewer.wait_frames(other_audio, 50, timeout=30)
        assert audio.source == "microphone"
        assert audio.samples > 0

    async with aiohttp.ClientSession() as http:
        response = await http.get(
            f"{sfu.url}/rooms/{room['room_id']}", headers=sfu.service_headers()
        )
        body = await response.json()
    sources = sorted((p["role"], t["source"]) for p in body["participants"] for t in p["tracks"])
    assert sources == [
        ("mentee", "camera"),
        ("mentee", "microphone"),
        ("mentor", "camera"),
        ("mentor", "microphone"),
    ]


async def test_screen_share_appears_and_disappears(sfu: SfuProcess, join: Join) -> None:
    room = await create_room(sfu)
    mentor = await join(room["room_id"], "mentor")
    mentee = await join(room["room_id"], "mentee")
    await mentee.publish({camera(): "camera"})
    await mentor.wait_frames(lambda i: i.source == "camera", 10, timeout=30)

    screen = camera()
    await mentee.publish({screen: "screen"})
    published = await mentor.wait_for(
        "track_published", lambda m: m["track"]["source"] == "screen", timeout=15
    )
    assert published["participant_id"] == mentee.participant_id
    assert published["track"]["track_id"] == screen.id
    shared = await mentor.wait_frames(screen.id, FRAMES, timeout=30)
    assert shared.source == "screen"

    await mentee.unpublish(screen)
    gone = await mentor.wait_for("track_unpublished", timeout=15)
    assert gone["track"] == {"track_id": screen.id, "kind": "video", "source": "screen"}
    offer = await mentor.wait_for(
        "subscribe_offer", lambda m: screen.id not in m["tracks"], timeout=15
    )
    assert any(t["source"] == "camera" for t in offer["tracks"].values())
    camera_info = await mentor.wait_frames(lambda i: i.source == "camera", 1, timeout=5)
    before = camera_info.frames
    await mentor.wait_frames(lambda i: i.source == "camera", before + 30, timeout=15)


async def test_screen_share_many_times_reuses_one_section(sfu: SfuProcess, join: Join) -> None:
    """A share started and stopped again and again: every share reaches the viewer as a new
    track with frames, and the viewer's SDP keeps one section for it instead of growing by
    one per share (a long session would otherwise outgrow the 32 KiB SDP limit)."""
    room = await create_room(sfu)
    mentor = await join(room["room_id"], "mentor")
    mentee = await join(room["room_id"], "mentee")
    await mentee.publish({camera(): "camera"})
    await mentor.wait_frames(lambda i: i.source == "camera", 10, timeout=30)
    shares = 4
    mids: set[str] = set()
    for _ in range(shares):
        screen = camera()
        await mentee.publish({screen: "screen"})
        shared = await mentor.wait_frames(screen.id, 10, timeout=30)
        assert shared.source == "screen"
        offer = await mentor.wait_for("subscribe_offer", offers(screen.id), timeout=5)
        mids.add(offer["tracks"][screen.id]["mid"])
        await mentee.unpublish(screen)
        await mentor.wait_for("track_unpublished", unpublished(screen.id))
        await mentor.wait_for("subscribe_offer", offers_no(screen.id), timeout=15)
    assert len(mids) == 1, mids  # one section, reused by every share
    pc = mentor.subscriber
    assert pc is not None and pc.remoteDescription is not None
    assert len(pc.remoteDescription.sdp.split("\nm=")) - 1 == 2  # the camera and one share
    camera_info = await mentor.wait_frames(lambda i: i.source == "camera", 1, timeout=5)
    before = camera_info.frames
    await mentor.wait_frames(lambda i: i.source == "camera", before + 30, timeout=15)


async def test_observer_receives_both_and_cannot_publish(sfu: SfuProcess, join: Join) -> None:
    room = await create_room(sfu)
    mentor = await join(room["room_id"], "mentor")
    mentee = await join(room["room_id"], "mentee")
    observer = await join(room["room_id"], "observer")
    await mentor.publish({camera(): "camera"})
    await mentee.publish({camera(): "camera"})
    for publisher in (mentor, mentee):

        def published_by(i: RemoteTrackInfo, p: SfuClient = publisher) -> bool:
            return i.participant_id == p.participant_id

        await observer.wait_frames(published_by, FRAMES, timeout=30)
    with pytest.raises(SfuErrorReply) as refused:
        await observer.publish({camera(): "camera"})
    assert refused.value.code == "forbidden"
    assert observer.closed_code is None
    await observer.ping()


async def test_upstream_loss_is_recovered_by_nack(sfu: SfuProcess, join: Join) -> None:
    room = await create_room(sfu)
    mentor = await join(room["room_id"], "mentor")
    mentee = await join(room["room_id"], "mentee")
    nacks_before = await metric(sfu, "sfu_nacks_sent_total")
    dropper = mentor.drop_outgoing_video(fraction=0.03, seed=7)
    await mentor.publish({camera(): "camera"})
    info = await mentee.wait_frames(lambda i: i.kind == "video", 150, timeout=40)
    assert dropper.dropped_packets > 10
    assert await metric(sfu, "sfu_nacks_sent_total") > nacks_before
    # Every frame got through: with ~3% of packets dropped and no recovery, the jitter buffer
    # would stall or skip on every loss.
    assert info.last_frame_at is not None and info.first_frame_at is not None
    elapsed = info.last_frame_at - info.first_frame_at
    assert info.frames / elapsed > 25


async def test_counting_subscriber_counts_packets_and_bytes(sfu: SfuProcess, join: Join) -> None:
    """A subscriber that does not decode (the load tester's kind) still counts every RTP packet
    and payload byte, whichever receive path (queued or socket-callback) the packets took."""
    room = await create_room(sfu)
    mentor = await join(room["room_id"], "mentor")
    observer = await join(room["room_id"], "observer", decode=False)
    await mentor.publish({camera(): "camera"})
    info = await observer.wait_frames(
        lambda i: i.participant_id == mentor.participant_id, FRAMES, timeout=30
    )
    (remote,) = observer.stats().remote.values()
    (sent,) = mentor.stats().published.values()
    assert remote.frames >= FRAMES
    assert remote.packets >= remote.frames  # at least one packet per frame
    assert remote.octets >= remote.packets * 100  # ~1 Mbit/s VP8: full-size packets
    assert remote.frames <= sent.packets_sent  # packets_sent counts encoded frames handed out
    assert info.width == 0  # nothing was decoded


async def test_header_counting_subscriber_counts_what_a_decrypting_one_counts(
    sfu: SfuProcess, join: Join
) -> None:
    """The load tester's receivers count from SRTP headers without decrypting: they must see
    the same frames, packets and payload bytes as a subscriber that decrypts every packet."""
    room = await create_room(sfu)
    mentor = await join(room["room_id"], "mentor")
    decrypting = await join(room["room_id"], "observer", decode=False)
    headers = await join(room["room_id"], "observer", decode=False, count_headers=True)
    await mentor.publish({camera(): "camera", microphone(): "microphone"})
    for client in (decrypting, headers):
        await client.wait_frames(lambda i: i.kind == "video", FRAMES, timeout=30)
    camera_track = next(p for p in mentor.published.values() if p.source == "camera")
    await mentor.unpublish(camera_track.track)
    await asyncio.sleep(1.0)  # what is in flight arrives; the camera has stopped

    def video(client: SfuClient) -> RemoteTrackStats:
        stats = client.stats().remote.values()
        return next(s for s in stats if s.kind == "video")

    a, b = video(decrypting), video(headers)
    assert b.frames >= FRAMES and b.packets > b.frames
    # Both joined before the camera started and saw it stop: the same stream, give or take
    # the first keyframe wait of each subscription.
    assert abs(a.frames - b.frames) <= 60
    assert abs(a.octets / a.packets - b.octets / b.packets) < 2  # bytes per packet agree
    assert headers.subscriber is not None
    paths = {
        type(socket_rtp_handler(t.receiver.transport)).__name__
        for t in headers.subscriber.getTransceivers()
    }
    assert paths == {"HeaderCountingPath"}

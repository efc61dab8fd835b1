"""The direct publisher (``publish_mode="direct"``: clips packetized once, paced into the SFU's
ForwardingSender) against the real SFU process, received by real aiortc subscribers."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from aiortc.sdp import MediaDescription, SessionDescription

from sfu.client.client import SfuClient
from sfu.client.clips import Codec, PacedPacketTrack
from sfu.client.direct_publish import DirectPacer
from sfu.client.remote import RemoteTrackInfo
from sfu.core.vocabulary import Role
from sfu.media.clock import NTP_EPOCH_OFFSET_S
from sfu.media.forwarding_sender import ForwardingSender
from sfu.media.seams import RtpSink, TapReceiver
from sfu.testing.process import SfuProcess
from tests.support.rooms import LOOPBACK, create_room, metric, offers, offers_no, unpublished

JoinAs = Callable[..., Awaitable[SfuClient]]


@pytest.fixture
async def join_as(sfu: SfuProcess) -> AsyncIterator[JoinAs]:
    """join_as(room_id, role, mode="direct", decode=True) → a connected SfuClient."""
    clients: list[SfuClient] = []

    async def _join(
        room_id: str, role: Role, mode: str = "direct", decode: bool = True
    ) -> SfuClient:
        client = await SfuClient.connect(
            sfu.ws_url,
            sfu.token(room_id, f"{role}-{len(clients)}", role),
            ice=LOOPBACK,
            decode=decode,
            publish_mode="direct" if mode == "direct" else "stock",
        )
        clients.append(client)
        return client

    yield _join
    for client in clients:
        await client.close()


def pacer_of(client: SfuClient, track: PacedPacketTrack) -> DirectPacer:
    pacer = client.published[track.id].pacer
    assert pacer is not None
    return pacer


async def rate_over(info: RemoteTrackInfo, seconds: float) -> float:
    """Frames per second the subscriber got over the next ``seconds``."""
    frames, started = info.frames, time.monotonic()
    await asyncio.sleep(seconds)
    return (info.frames - frames) / (time.monotonic() - started)


async def test_vp8_and_opus_decode_across_clip_loops(sfu: SfuProcess, join_as: JoinAs) -> None:
    room = await create_room(sfu)
    mentor = await join_as(room["room_id"], "mentor")
    mentee = await join_as(room["room_id"], "mentee")
    camera = PacedPacketTrack.from_codec("vp8", seconds=2, gop_frames=30)
    microphone = PacedPacketTrack.from_codec("opus", seconds=2)
    await mentor.publish({camera: "camera", microphone: "microphone"})
    assert mentor.publisher is not None and all(
        isinstance(t.sender, ForwardingSender) for t in mentor.publisher.getTransceivers()
    )
    video = await mentee.wait_frames(lambda i: i.kind == "video", 5, timeout=20)
    audio = await mentee.wait_frames(lambda i: i.kind == "audio", 5, timeout=20)
    fps = await rate_over(video, 5.0)
    assert 27 < fps < 33, fps
    assert (video.width, video.height) == (640, 480)
    assert audio.samples > 48_000 * 4  # > 4 s of decoded Opus
    pacer = pacer_of(mentor, camera)
    assert pacer.loops_completed >= 2 and pacer.send_errors == 0
    assert pacer_of(mentor, microphone).loops_completed >= 2
    assert camera.packets_sent == 0  # aiortc never pulled the track: the pacer sent the clip


async def test_h264_decodes(sfu: SfuProcess, join_as: JoinAs) -> None:
    room = await create_room(sfu)
    mentor = await join_as(room["room_id"], "mentor")
    mentee = await join_as(room["room_id"], "mentee")
    camera = PacedPacketTrack.from_codec("h264", seconds=2, gop_frames=30)
    await mentor.publish({camera: "camera"})
    video = await mentee.wait_frames(lambda i: i.kind == "video", 5, timeout=20)
    fps = await rate_over(video, 3.0)
    assert 27 < fps < 33, fps
    assert (video.width, video.height) == (640, 480)
    assert pacer_of(mentor, camera).loops_completed >= 1


async def test_keyframe_request_makes_the_pacer_jump(sfu: SfuProcess, join_as: JoinAs) -> None:
    """A late subscriber's PLI jumps the pacer to the next keyframe: its first frame comes long
    before the clip's own next keyframe (4 s GOP) would have."""
    room = await create_room(sfu)
    mentor = await join_as(room["room_id"], "mentor")
    camera = PacedPacketTrack.from_codec("vp8", seconds=8, gop_frames=120)
    await mentor.publish({camera: "camera"})
    pacer = pacer_of(mentor, camera)
    async with asyncio.timeout(10):
        while pacer.frames_sent < 30:  # 1 s into the first GOP
            await asyncio.sleep(0.05)
    keyframes_before = pacer.keyframes_sent
    late = await join_as(room["room_id"], "mentee")
    video = await late.wait_frames(lambda i: i.kind == "video", 1, timeout=10)
    assert pacer.keyframe_requests >= 1
    assert pacer.keyframes_sent > keyframes_before
    assert pacer.frames_sent < 120  # the clip's second keyframe is not due yet
    assert video.first_frame_latency_s is not None and video.first_frame_latency_s < 1.5


async def test_upstream_loss_is_recovered_by_nack_and_rtx(sfu: SfuProcess, join_as: JoinAs) -> None:
    room = await create_room(sfu)
    mentor = await join_as(room["room_id"], "mentor")
    mentee = await join_as(room["room_id"], "mentee")
    nacks_before = await metric(sfu, "sfu_nacks_sent_total")
    dropper = mentor.drop_outgoing_video(fraction=0.03, seed=7)
    camera = PacedPacketTrack.from_codec("vp8", seconds=4)
    await mentor.publish({camera: "camera"})
    pacer = pacer_of(mentor, camera)
    video = await mentee.wait_frames(lambda i: i.kind == "video", 10, timeout=20)
    frames, sent = video.frames, pacer.frames_sent
    await asyncio.sleep(5.0)
    assert dropper.dropped_packets > 10
    assert await metric(sfu, "sfu_nacks_sent_total") > nacks_before
    assert pacer.sender is not None and pacer.sender.retransmitted >= dropper.dropped_packets // 2
    # Every frame sent in the window was decoded (a frame in flight at either end aside):
    # without repair, ~3 % packet loss breaks a frame every few frames.
    assert video.frames - frames >= pacer.frames_sent - sent - 3


@dataclass
class SyncRecorder:
    """Wraps a tap receiver's sink: arrival wall time of each frame's RTP timestamp, and SRs."""

    clock_rate: int
    inner: RtpSink
    frames: list[tuple[int, float]] = field(default_factory=list)
    reports: list[tuple[int, int]] = field(default_factory=list)

    def on_rtp(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        if packet.marker or self.clock_rate == 48_000:
            self.frames.append((packet.timestamp, time.time()))
        self.inner.on_rtp(packet, codec)

    def on_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        self.reports.append((ntp_timestamp, rtp_timestamp))

    def offsets(self) -> list[float]:
        """Arrival wall time minus the wall time each SR maps the frame's timestamp to."""
        out = []
        for ntp, rtp in self.reports:
            sr_wall = ntp / (1 << 32) - NTP_EPOCH_OFFSET_S
            for timestamp, arrival in self.frames:
                delta = (timestamp - rtp) & 0xFFFFFFFF
                if delta >= 1 << 31:
                    delta -= 1 << 32
                out.append(arrival - (sr_wall + delta / self.clock_rate))
        return out


async def test_sender_reports_map_rtp_to_wall_time(sfu: SfuProcess, join_as: JoinAs) -> None:
    room = await create_room(sfu)
    mentor = await join_as(room["room_id"], "mentor")
    mentee = await join_as(room["room_id"], "mentee", decode=False)
    await mentor.publish(
        {
            PacedPacketTrack.from_codec("vp8", seconds=2, gop_frames=30): "camera",
            PacedPacketTrack.from_codec("opus", seconds=2): "microphone",
        }
    )
    for kind in ("video", "audio"):

        def of_kind(i: RemoteTrackInfo, k: str = kind) -> bool:
            return i.kind == k

        await mentee.wait_frames(of_kind, 1, timeout=20)
    assert mentee.subscriber is not None
    recorders = []
    for transceiver in mentee.subscriber.getTransceivers():
        receiver = transceiver.receiver
        assert isinstance(receiver, TapReceiver)
        if receiver.sink is not None:
            rate = 90_000 if transceiver.kind == "video" else 48_000
            recorder = SyncRecorder(rate, receiver.sink)
            receiver.sink = recorder
            recorders.append(recorder)
    assert len(recorders) == 2
    await asyncio.sleep(5.0)  # SRs come every 0.5..1.5 s; the clips loop twice
    for recorder in recorders:
        assert len(recorder.reports) >= 2 and len(recorder.frames) > 100
        offsets = recorder.offsets()
        # Loopback and the pacer's timer add a few ms; a wrong mapping is off by far more.
        assert abs(statistics.median(offsets)) < 0.05, statistics.median(offsets)
        inside = sum(1 for o in offsets if abs(o) < 0.05) / len(offsets)
        assert inside > 0.9, inside


async def test_close_leaves_no_timer_or_task(sfu: SfuProcess) -> None:
    room = await create_room(sfu)
    tasks_before = asyncio.all_tasks()
    token = sfu.token(str(room["room_id"]), "closer", "mentor")
    client = await SfuClient.connect(sfu.ws_url, token, ice=LOOPBACK, publish_mode="direct")
    camera = PacedPacketTrack.from_codec("vp8", seconds=2, gop_frames=30)
    microphone = PacedPacketTrack.from_codec("opus", seconds=2)
    await client.publish({camera: "camera", microphone: "microphone"})
    pacers = [pacer_of(client, camera), pacer_of(client, microphone)]
    async with asyncio.timeout(10):
        while not all(p.frames_sent > 10 for p in pacers):
            await asyncio.sleep(0.05)
    assert all(p.running for p in pacers)
    await client.unpublish(microphone)
    assert not pacers[1].running and pacers[1].stopped and pacers[0].running
    await client.close()
    assert all(not p.running and p.stopped for p in pacers)
    sent = [p.frames_sent for p in pacers]
    await asyncio.sleep(0.2)
    assert [p.frames_sent for p in pacers] == sent
    left: set[asyncio.Task[object]] = set()
    for _ in range(100):  # aiortc's own tasks end shortly after close(); bounded wait
        left = {t for t in asyncio.all_tasks() - tasks_before if t is not asyncio.current_task()}
        if not left:
            break
        await asyncio.sleep(0.05)
    assert not left, left


def section(sdp: str, mid: str) -> MediaDescription:
    (media,) = (m for m in SessionDescription.parse(sdp).media if m.rtp.muxId == mid)
    return media


def payload_types(media: MediaDescription) -> dict[str, set[int]]:
    """Lower-case mime type → the payload types a media section gives it (RTX left out)."""
    out: dict[str, set[int]] = {}
    for codec in media.rtp.codecs:
        if codec.mimeType.lower() != "video/rtx" and codec.payloadType is not None:
            out.setdefault(codec.mimeType.lower(), set()).add(codec.payloadType)
    return out


async def test_reused_screen_section_switches_codec(sfu: SfuProcess, join_as: JoinAs) -> None:
    """An observer watches the mentor's VP8 screen share, then (once it stopped) the mentee's
    H.264 one, then the mentor's VP8 one again: each plays as 640x480 video, although all three
    arrive on the one section the observer keeps for screen shares, under the same SSRC, the
    payload type changing with the codec at each switch."""
    room = await create_room(sfu)
    mentor = await join_as(room["room_id"], "mentor")
    mentee = await join_as(room["room_id"], "mentee")
    viewer = await join_as(room["room_id"], "observer")
    shares: tuple[tuple[SfuClient, Codec, str], ...] = (
        (mentor, "vp8", "video/vp8"),
        (mentee, "h264", "video/h264"),
        (mentor, "vp8", "video/vp8"),
    )
    mids: set[str] = set()
    ssrcs: set[int] = set()
    used: list[set[int]] = []
    for publisher, codec, mime in shares:
        screen = PacedPacketTrack.from_codec(codec, seconds=2, gop_frames=30)
        await publisher.publish({screen: "screen"})
        offer = await viewer.wait_for("subscribe_offer", offers(screen.id), timeout=15)
        mid = offer["tracks"][screen.id]["mid"]
        mids.add(mid)
        offered = section(offer["sdp"], mid)
        # The SFU offers the publisher's codec only (subscriber.codec_preferences).
        assert set(payload_types(offered)) == {mime}, offer["sdp"]
        ssrcs.add(offered.ssrc[0].ssrc)
        shared = await viewer.wait_frames(screen.id, 10, timeout=15)
        assert shared.source == "screen" and shared.participant_id == publisher.participant_id
        assert (shared.width, shared.height) == (640, 480)
        pc = viewer.subscriber
        assert pc is not None and pc.localDescription is not None
        answered = payload_types(section(pc.localDescription.sdp, mid))  # the viewer's answer
        assert set(answered) == {mime}
        used.append(answered[mime])
        await publisher.unpublish(screen)
        await viewer.wait_for("track_unpublished", unpublished(screen.id))
        await viewer.wait_for("subscribe_offer", offers_no(screen.id), timeout=15)
    assert len(mids) == 1 and len(ssrcs) == 1, (mids, ssrcs)  # one section, one stream
    assert used[0] == used[2] and not used[0] & used[1], used  # VP8, H.264, VP8 again
    pc = viewer.subscriber
    assert pc is not None and pc.remoteDescription is not None
    assert len(pc.remoteDescription.sdp.split("\nm=")) - 1 == 1

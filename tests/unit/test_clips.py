"""sfu.client.clips (clips, PacedPacketTrack) and sfu.client.loss, without any SFU."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from dataclasses import field as dc_field
from fractions import Fraction
from pathlib import Path

import av
import pytest
from aioice.ice import get_host_addresses
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.codecs.vpx import vp8_depayload
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket, RtpPacket

from sfu.client.clips import (
    AUDIO_CLOCK_RATE,
    VIDEO_CLOCK_RATE,
    Clip,
    PacedPacketTrack,
    build_h264_clip,
    build_opus_clip,
    build_vp8_clip,
    clip_name,
    codec_preferences,
    get_clip,
    load_clip,
    route_keyframe_requests,
)
from sfu.client.direct_publish import DirectPacer, prepare_clip
from sfu.client.loss import OutgoingVideoDropper
from sfu.ice.connection import IceConfig
from sfu.media.client_seams import deliver_rtcp, observe_received_rtp, sender_ssrcs
from sfu.media.forwarding_sender import ForwardingSender
from sfu.media.keyframes import h264_starts_keyframe, vp8_starts_keyframe
from sfu.media.seams import PeerSetup, SeamPeerConnection

# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def vp8_small(clip_dir: Path) -> Path:
    """1 s, 320x240, a keyframe every 10 frames."""
    return build_vp8_clip(clip_dir / "small.ivf", width=320, height=240, seconds=1, gop_frames=10)


@pytest.fixture(scope="module")
def vp8_short(clip_dir: Path) -> Clip:
    """0.5 s (15 frames), keyframes at 0, 5, 10: loops quickly."""
    path = build_vp8_clip(
        clip_dir / "short.ivf", width=160, height=120, seconds=0.5, gop_frames=5, kbps=200
    )
    return load_clip(path)


@pytest.fixture(scope="module")
def vp8_vga(clip_dir: Path) -> Clip:
    return load_clip(build_vp8_clip(clip_dir / "vga.ivf", seconds=2, gop_frames=30))


def _decode_video(path: Path) -> tuple[list[av.VideoFrame], list[bool]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keys: list[bool] = []
        frames: list[av.VideoFrame] = []
        for packet in container.demux(stream):
            if packet.size:
                keys.append(bool(packet.is_keyframe))
            frames.extend(packet.decode())
    return frames, keys


def _digest(frame: av.VideoFrame) -> str:
    return hashlib.sha1(bytes(frame.planes[0])).hexdigest()


# --- clip building -----------------------------------------------------------------------------


def test_vp8_clip_decodes_with_keyframes_on_gop_boundaries(vp8_small: Path) -> None:
    frames, keys = _decode_video(vp8_small)
    assert len(frames) == 30
    assert {(f.width, f.height) for f in frames} == {(320, 240)}
    assert [i for i, key in enumerate(keys) if key] == [0, 10, 20]
    assert len({_digest(f) for f in frames}) == 30  # every frame differs


def test_h264_clip_is_constrained_baseline_annexb_without_b_frames(clip_dir: Path) -> None:
    path = build_h264_clip(clip_dir / "small.h264", width=320, height=240, seconds=1, gop_frames=10)
    frames, keys = _decode_video(path)
    assert len(frames) == 30
    assert {(f.width, f.height) for f in frames} == {(320, 240)}
    assert [i for i, key in enumerate(keys) if key] == [0, 10, 20]
    assert all(f.pict_type != av.video.frame.PictureType.B for f in frames)
    assert len({_digest(f) for f in frames}) == 30
    clip = load_clip(path)
    for unit in clip.units:
        assert unit.data.startswith(b"\x00\x00\x00\x01") or unit.data.startswith(b"\x00\x00\x01")
        nal_types = [b & 0x1F for b in _nal_headers(unit.data)]
        if unit.keyframe:
            # SPS and PPS ahead of every IDR, so a receiver can start at any keyframe.
            assert nal_types[:2] == [7, 8] and 5 in nal_types
        else:
            assert 5 not in nal_types
    sps = clip.units[0].data.split(b"\x00\x00\x01", 2)[1]
    profile_idc, constraints, level_idc = sps[1], sps[2], sps[3]
    assert profile_idc == 66 and constraints & 0x40 and level_idc == 31  # 42x01f, constrained


def _nal_headers(data: bytes) -> list[int]:
    headers: list[int] = []
    index = data.find(b"\x00\x00\x01")
    while index != -1 and index + 3 < len(data):
        headers.append(data[index + 3])
        index = data.find(b"\x00\x00\x01", index + 3)
    return headers


def test_opus_clip_is_stereo_48k_in_20ms_frames(clip_dir: Path) -> None:
    path = build_opus_clip(clip_dir / "tone.ogg", seconds=1)
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "opus"
        durations = [p.duration for p in container.demux(stream) if p.size]
    assert set(durations[:-1]) == {960}  # the last one is trimmed to the end of the signal
    with av.open(str(path)) as container:
        decoded = list(container.decode(audio=0))
    assert decoded[0].sample_rate == AUDIO_CLOCK_RATE
    assert decoded[0].layout.name == "stereo"
    assert abs(sum(f.samples for f in decoded) - AUDIO_CLOCK_RATE) <= 960
    clip = load_clip(path)
    assert clip.kind == "audio" and clip.frame_ticks == 960
    assert all(unit.keyframe for unit in clip.units)


def test_get_clip_builds_once_and_names_every_parameter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SFU_CLIP_CACHE", str(tmp_path / "cache"))
    first = get_clip("opus", seconds=0.2)
    assert first.parent == tmp_path / "cache"
    mtime = first.stat().st_mtime_ns
    assert get_clip("opus", seconds=0.2) == first
    assert first.stat().st_mtime_ns == mtime
    assert get_clip("opus", seconds=0.4) != first
    assert clip_name("vp8") == clip_name("vp8", width=640, gop_frames=60)
    assert clip_name("vp8", kbps=500) != clip_name("vp8")
    assert "640" in clip_name("h264") and "kbps1000" in clip_name("h264")
    with pytest.raises(ValueError, match="unknown"):
        get_clip("vp8", colour=1)


def test_load_clip_units(vp8_short: Clip) -> None:
    assert vp8_short.kind == "video" and vp8_short.codec == "vp8"
    assert len(vp8_short.units) == 15
    assert vp8_short.frame_ticks == VIDEO_CLOCK_RATE // 30
    assert vp8_short.keyframe_indices == (0, 5, 10)
    assert [u.pts_ticks for u in vp8_short.units[:3]] == [0, 3000, 6000]
    assert vp8_short.next_keyframe_index(11) == 0  # wraps around


# --- PacedPacketTrack --------------------------------------------------------------------------


async def test_track_paces_against_wall_clock(vp8_small: Path) -> None:
    track = PacedPacketTrack(load_clip(vp8_small), track_id="cam-1")
    assert track.id == "cam-1" and track.kind == "video"
    started = time.monotonic()
    received = 0
    async with asyncio.timeout(5):
        while time.monotonic() - started < 1.0:
            packet = await track.recv()
            received += 1
            assert packet.time_base == Fraction(1, VIDEO_CLOCK_RATE)
    elapsed = time.monotonic() - started
    # One packet is due immediately, then one every 1/30 s.
    assert 28 <= received <= 33, (received, elapsed)
    assert track.packets_sent == received


async def test_pts_increase_across_loop_boundary(vp8_short: Clip) -> None:
    track = PacedPacketTrack(vp8_short)
    packets = []
    async with asyncio.timeout(5):
        for _ in range(20):
            packets.append(await track.recv())
    pts = [p.pts for p in packets]
    assert all(p.time_base.denominator == VIDEO_CLOCK_RATE for p in packets)
    assert pts == [i * 3000 for i in range(20)]
    assert track.loops_completed == 1
    assert bytes(packets[15]) == vp8_short.units[0].data  # the clip restarted ...
    assert packets[15].is_keyframe  # ... on its first keyframe


async def test_audio_track_timestamps_in_48k(clip_dir: Path) -> None:
    clip = load_clip(build_opus_clip(clip_dir / "short.ogg", seconds=0.1))
    track = PacedPacketTrack(clip)
    assert track.kind == "audio"
    async with asyncio.timeout(5):
        packets = [await track.recv() for _ in range(len(clip.units) + 3)]
    assert [p.pts for p in packets] == [i * 960 for i in range(len(packets))]
    assert packets[0].time_base.denominator == AUDIO_CLOCK_RATE


async def test_request_keyframe_jumps_to_next_keyframe(vp8_short: Clip) -> None:
    track = PacedPacketTrack(vp8_short)
    async with asyncio.timeout(5):
        first, second = await track.recv(), await track.recv()
        track.request_keyframe()
        jumped = await track.recv()
        after = await track.recv()
    assert first.is_keyframe and not second.is_keyframe
    assert jumped.is_keyframe and bytes(jumped) == vp8_short.units[5].data
    assert bytes(after) == vp8_short.units[6].data
    assert [p.pts for p in (first, second, jumped, after)] == [0, 3000, 6000, 9000]
    assert track.keyframe_requests == 1


async def test_stopped_track_raises(vp8_short: Clip) -> None:
    track = PacedPacketTrack(vp8_short, loop=False)
    async with asyncio.timeout(5):
        for _ in range(len(vp8_short.units)):
            await track.recv()
        with pytest.raises(MediaStreamError):
            await track.recv()


# --- in-process aiortc loopback ------------------------------------------------------------------


def _peer_connection() -> RTCPeerConnection:
    if get_host_addresses(use_ipv4=True, use_ipv6=False):
        return RTCPeerConnection(RTCConfiguration(iceServers=[]))
    # A loopback-only network namespace: aioice skips 127.0.0.1 unless told to gather on it.
    from sfu.ice.connection import IceConfig
    from sfu.media.seams import client_peer_connection

    return client_peer_connection(IceConfig(addresses=("127.0.0.1",)))


async def _negotiate(sender_pc: RTCPeerConnection, receiver_pc: RTCPeerConnection) -> None:
    """Offer from `sender_pc`, answer from `receiver_pc`."""
    await sender_pc.setLocalDescription(await sender_pc.createOffer())
    await receiver_pc.setRemoteDescription(sender_pc.localDescription)
    await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
    await sender_pc.setRemoteDescription(receiver_pc.localDescription)


Loopback = tuple[PacedPacketTrack, RTCRtpSender, MediaStreamTrack]


@contextlib.asynccontextmanager
async def _loopback(clip: Clip, track_id: str) -> AsyncIterator[Loopback]:
    """A sender pc playing ``clip`` to a receiver pc; yields (track, sender, remote track)."""
    sender_pc, receiver_pc = _peer_connection(), _peer_connection()
    track = PacedPacketTrack(clip, track_id=track_id)
    transceiver = sender_pc.addTransceiver(track, direction="sendonly")
    transceiver.setCodecPreferences(codec_preferences(clip.codec))
    route_keyframe_requests(transceiver.sender, track)
    remote: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()

    def on_track(received: MediaStreamTrack) -> None:
        if not remote.done():
            remote.set_result(received)

    receiver_pc.on("track", on_track)
    try:
        async with asyncio.timeout(15):
            await _negotiate(sender_pc, receiver_pc)
            received = await remote
        # Packets are only packed, never transcoded: the clip's codec must be the one negotiated.
        rtpmaps = re.findall(r"a=rtpmap:\d+ ([\w-]+)/", receiver_pc.localDescription.sdp)
        assert set(rtpmaps) - {"rtx"} == {clip.codec.upper()}
        yield track, transceiver.sender, received
    finally:
        async with asyncio.timeout(10):
            await sender_pc.close()
            await receiver_pc.close()


@pytest.fixture
async def loopback(vp8_vga: Clip) -> AsyncIterator[Loopback]:
    async with _loopback(vp8_vga, "loop-cam") as parts:
        yield parts


async def _receive_video(remote: MediaStreamTrack, count: int) -> list[av.VideoFrame]:
    frames: list[av.VideoFrame] = []
    async with asyncio.timeout(15):
        while len(frames) < count:
            frame = await remote.recv()
            assert isinstance(frame, av.VideoFrame)
            frames.append(frame)
    return frames


async def test_loopback_decodes_paced_vp8(
    loopback: Loopback,
) -> None:
    track, sender, remote = loopback
    assert remote.id == "loop-cam"  # the msid track id is the track's id
    frames = await _receive_video(remote, 30)
    assert {(f.width, f.height) for f in frames} == {(640, 480)}
    pts = [f.pts for f in frames if f.pts is not None]
    assert len(pts) == len(frames)
    steps = {b - a for a, b in itertools.pairwise(pts)}
    assert steps == {3000}  # RTP timestamps advance one 30 fps frame at a time
    # A PLI from the receiver side reaches the track instead of aiortc's (unused) encoder flag.
    before = track.keyframe_requests
    await deliver_rtcp(sender, _pli(sender_ssrcs(sender).media))
    assert track.keyframe_requests == before + 1


async def test_loopback_decodes_paced_h264(clip_dir: Path) -> None:
    clip = load_clip(build_h264_clip(clip_dir / "vga.h264", seconds=1, gop_frames=15))
    async with _loopback(clip, "loop-h264") as (_track, _sender, remote):
        frames = await _receive_video(remote, 20)
    assert {(f.width, f.height) for f in frames} == {(640, 480)}


def _pli(media_ssrc: int) -> RtcpPsfbPacket:
    return RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=media_ssrc)


async def test_loopback_recovers_dropped_first_transmissions(
    loopback: Loopback,
) -> None:
    _track, sender, remote = loopback
    dropper = OutgoingVideoDropper.fraction(0.05, seed=7)
    media, rtx = sender_ssrcs(sender)
    dropper.video_ssrcs.add(media)
    dropper.rtx_ssrcs.add(rtx)
    dropper.install(sender.transport)
    frames = 0
    async with asyncio.timeout(20):
        while frames < 45 or dropper.dropped_packets == 0:
            await remote.recv()
            frames += 1
    assert dropper.dropped_packets > 0
    assert dropper.first_transmissions > dropper.dropped_packets
    # The receiver NACKed each dropped packet and the sender retransmitted it from its history.
    async with asyncio.timeout(5):
        while dropper.retransmissions < dropper.dropped_packets:
            await remote.recv()
    assert dropper.retransmissions >= dropper.dropped_packets


# --- the direct publisher: clips packetized once, paced into a ForwardingSender ------------------


def test_prepare_clip_packetizes_once_with_aiortc_payloaders(
    vp8_short: Clip, clip_dir: Path
) -> None:
    prepared = prepare_clip(vp8_short)
    assert prepare_clip(vp8_short) is prepared  # memoized: shared by every pacer of the clip
    assert prepared.vp8_picture_id
    assert [f.keyframe for f in prepared.frames] == [u.keyframe for u in vp8_short.units]
    for frame, unit in zip(prepared.frames, vp8_short.units, strict=True):
        assert b"".join(vp8_depayload(p) for p in frame.payloads) == unit.data
        # The SFU's keyframe detection sees the keyframes (and only them) in the payloads.
        assert vp8_starts_keyframe(frame.payloads[0]) == unit.keyframe
        assert all(len(p) <= 1300 for p in frame.payloads)
    h264 = load_clip(build_h264_clip(clip_dir / "prep.h264", width=320, height=240, seconds=1))
    prepared_h264 = prepare_clip(h264)
    assert not prepared_h264.vp8_picture_id
    for frame, unit in zip(prepared_h264.frames, h264.units, strict=True):
        assert h264_starts_keyframe(frame.payloads[0]) == unit.keyframe
    opus = load_clip(build_opus_clip(clip_dir / "prep.ogg", seconds=0.2))
    assert [f.payloads for f in prepare_clip(opus).frames] == [(u.data,) for u in opus.units]


@dataclass
class _Received:
    packets: list[RtpPacket] = dc_field(default_factory=list)


async def test_direct_pacer_loops_with_monotonic_seq_ts_and_picture_id(vp8_short: Clip) -> None:
    """A pacer on a forwarding (seams) peer connection plays a 0.5 s clip three times to a stock
    aiortc receiver that decodes it: sequence numbers, RTP timestamps and VP8 picture ids all
    keep increasing across the loop boundaries; a PLI jumps to the next keyframe."""
    sender_pc = SeamPeerConnection(
        PeerSetup(ice=IceConfig(addresses=("127.0.0.1",)), forwarding=True)
    )
    receiver_pc = _peer_connection()
    track = PacedPacketTrack(vp8_short, track_id="direct-cam")
    transceiver = sender_pc.addTransceiver(track, direction="sendonly")
    transceiver.setCodecPreferences(codec_preferences("vp8"))
    sender = transceiver.sender
    assert isinstance(sender, ForwardingSender)
    pacer = DirectPacer(prepare_clip(vp8_short))
    pacer.attach(sender)
    received = _Received()
    frames: list[av.VideoFrame] = []

    def on_track(remote: MediaStreamTrack) -> None:
        receiver = next(
            t.receiver for t in receiver_pc.getTransceivers() if t.receiver.track is remote
        )
        observe_received_rtp(receiver, received.packets.append)

        async def consume() -> None:
            while True:
                frame = await remote.recv()
                assert isinstance(frame, av.VideoFrame)
                frames.append(frame)

        consumers.append(asyncio.ensure_future(consume()))

    consumers: list[asyncio.Future[None]] = []
    receiver_pc.on("track", on_track)
    try:
        async with asyncio.timeout(15):
            await _negotiate(sender_pc, receiver_pc)
            while pacer.loops_completed < 3:
                await asyncio.sleep(0.05)
        keyframes = pacer.keyframes_sent
        assert keyframes >= 9  # 3 per loop
        pacer.request_keyframe()
        await asyncio.sleep(0.1)
        assert pacer.keyframe_requests == 1
        assert pacer.running and pacer.send_errors == 0
    finally:
        pacer.stop()
        for consumer in consumers:
            consumer.cancel()
        async with asyncio.timeout(10):
            await sender_pc.close()
            await receiver_pc.close()
    assert not pacer.running and pacer.stopped
    assert len(frames) >= 40 and {(f.width, f.height) for f in frames} == {(160, 120)}
    media = [p for p in received.packets if p.payload_type == received.packets[0].payload_type]
    assert len(media) >= pacer.rtp_packets_sent - 5
    seqs = [p.sequence_number for p in media]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    starts = [p for p in media if p.payload[0] & 0x10]  # S bit: one per frame
    ts_steps = {(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in itertools.pairwise(starts)}
    assert ts_steps == {3000}  # one 30 fps frame apart, loops and the jump included
    picture_ids = [int.from_bytes(p.payload[2:4], "big") & 0x7FFF for p in starts]
    assert all((b - a) & 0x7FFF == 1 for a, b in itertools.pairwise(picture_ids))
    assert len(starts) > 2 * len(vp8_short.units)

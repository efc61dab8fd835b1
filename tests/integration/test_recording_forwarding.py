"""A recorded room forwards exactly as an unrecorded one: the recorder never blocks, slows or
changes forwarding.

One SFU, two rooms (one recorded, one not), the same pre-encoded clip (VP8 camera + Opus
microphone, played once) published in each at the same moment, one subscriber per room.
Over loopback nothing is lost, so both subscribers must receive exactly the frames and audio
packets that were sent, byte for byte, and the recorded room's file must hold them too.
Timing is the only thing compared with a tolerance (see `_latencies`).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import av
from aiortc.codecs.vpx import vp8_depayload
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from av.stream import Stream

from sfu.client.client import SfuClient
from sfu.client.clips import Clip, PacedPacketTrack, get_clip, load_clip
from sfu.media.tap_receiver import RtpSink, TapReceiver
from sfu.testing.process import SfuProcess
from tests.support.rooms import Join, create_room

CLIP_S = 4


class GatedTrack(PacedPacketTrack):
    """Plays its clip once, from the moment `gate` opens. Keyframe requests are counted but
    not obeyed, so what is sent is exactly the clip in both rooms (the recorder asks for
    keyframes when it starts; a real encoder would add one, which is not forwarding)."""

    def __init__(self, clip: Clip, gate: asyncio.Event) -> None:
        super().__init__(clip, loop=False)
        self.gate = gate
        self.sent_at: list[float] = []

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1

    async def recv(self) -> av.Packet[Stream]:
        await self.gate.wait()
        packet = await super().recv()
        self.sent_at.append(time.monotonic())
        return packet


@dataclass
class Received:
    """What one subscriber's receiver got for one track, frame by frame."""

    kind: str
    packets: dict[int, RtpPacket] = field(default_factory=dict)  # by sequence number
    frame_done_at: dict[int, float] = field(default_factory=dict)  # by RTP timestamp
    other_packets: int = 0  # padding, or anything not the media codec

    def frames(self) -> list[tuple[int, bytes]]:
        """(RTP timestamp, frame bytes) in sending order: VP8 depayloaded, Opus as is."""
        by_ts: dict[int, list[RtpPacket]] = {}
        order: list[int] = []
        for seq in sorted(self.packets):  # no wrap: the test sends far fewer than 65536
            packet = self.packets[seq]
            if packet.timestamp not in by_ts:
                by_ts[packet.timestamp] = []
                order.append(packet.timestamp)
            by_ts[packet.timestamp].append(packet)
        if self.kind == "audio":
            return [(ts, by_ts[ts][0].payload) for ts in order]
        return [(ts, b"".join(vp8_depayload(p.payload) for p in by_ts[ts])) for ts in order]


class RecordingSink:
    """An `RtpSink` in front of the subscriber's own (which still counts): keeps every media
    packet its TapReceiver delivers (RTX already unwrapped) with its arrival time."""

    def __init__(self, inner: RtpSink, received: Received) -> None:
        self.inner = inner
        self.received = received

    def on_rtp(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        received = self.received
        if codec.mimeType.lower() in ("video/vp8", "audio/opus") and packet.payload:
            assert packet.sequence_number not in received.packets, "duplicate packet"
            received.packets[packet.sequence_number] = packet
            if packet.marker or received.kind == "audio":
                received.frame_done_at.setdefault(packet.timestamp, time.monotonic())
        else:
            received.other_packets += 1
        self.inner.on_rtp(packet, codec)

    def on_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        self.inner.on_sender_report(ssrc, ntp_timestamp, rtp_timestamp)


def tap_receiver(client: SfuClient, track_id: str) -> Received:
    """Record what the subscriber's receiver for `track_id` gets, from now on."""
    pc = client.subscriber
    info = client.remote_tracks[track_id]
    assert pc is not None and info.mid is not None
    transceiver = next(t for t in pc.getTransceivers() if t.mid == info.mid)
    receiver = transceiver.receiver
    assert isinstance(receiver, TapReceiver) and receiver.sink is not None  # decode=False
    received = Received(info.kind)
    receiver.sink = RecordingSink(receiver.sink, received)
    return received


@dataclass
class Room:
    room_id: str
    recorded: bool
    publisher: SfuClient
    subscriber: SfuClient
    camera: GatedTrack
    microphone: GatedTrack
    video: Received | None = None
    audio: Received | None = None


async def _connected(client: SfuClient, *, subscriber: bool, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while True:
            pc = client.subscriber if subscriber else client.publisher
            if pc is not None and pc.connectionState == "connected":
                return
            await asyncio.sleep(0.05)


async def _open_room(sfu: SfuProcess, join: Join, gate: asyncio.Event, recorded: bool) -> Room:
    room = await create_room(sfu, record=recorded)
    assert (room["recording"] is not None) == recorded
    room_id = str(room["room_id"])
    subscriber = await join(room_id, "mentee", decode=False)
    publisher = await join(room_id, "mentor")
    cam = GatedTrack(load_clip(get_clip("vp8", seconds=CLIP_S)), gate)
    mic = GatedTrack(load_clip(get_clip("opus", seconds=CLIP_S)), gate)
    await publisher.publish({cam: "camera", mic: "microphone"})
    return Room(room_id, recorded, publisher, subscriber, cam, mic)


async def _ready(room: Room) -> None:
    """Both connections up and the subscriber's receivers known, before any media is sent."""
    await _connected(room.publisher, subscriber=False)
    async with asyncio.timeout(20):
        while not (
            {room.camera.id, room.microphone.id} <= set(room.subscriber.remote_tracks)
            and all(
                room.subscriber.remote_tracks[t].track is not None
                for t in (room.camera.id, room.microphone.id)
            )
        ):
            await asyncio.sleep(0.05)
    await _connected(room.subscriber, subscriber=True)
    room.video = tap_receiver(room.subscriber, room.camera.id)
    room.audio = tap_receiver(room.subscriber, room.microphone.id)


def _hashes(frames: list[bytes]) -> list[str]:
    return [hashlib.sha256(f).hexdigest()[:16] for f in frames]


def _latencies(room: Room) -> list[float]:
    """Seconds from the publisher handing a video frame to aiortc to the subscriber receiving
    its last packet (both ends in this process, one monotonic clock). This is the only
    figure compared with a tolerance: scheduling on a shared machine makes it vary by a few
    milliseconds from frame to frame whatever the SFU does."""
    assert room.video is not None
    done = [room.video.frame_done_at[ts] for ts, _ in room.video.frames()]
    return [arrival - sent for arrival, sent in zip(done, room.camera.sent_at, strict=True)]


async def test_recorded_room_forwards_exactly_as_an_unrecorded_one(
    sfu: SfuProcess, join: Join
) -> None:
    gate = asyncio.Event()
    rooms = [await _open_room(sfu, join, gate, recorded) for recorded in (True, False)]
    for room in rooms:
        await _ready(room)
    # The SFU starts forwarding to a subscriber when its side of the DTLS handshake is done,
    # a moment after the client's; video to a new subscriber starts at a keyframe anyway, and
    # the clip starts with one. A margin so no packet races that start:
    await asyncio.sleep(1.0)
    gate.set()

    clip_video = rooms[0].camera.clip.units
    clip_audio = rooms[0].microphone.clip.units

    def counts() -> list[tuple[str, int, int, int, int]]:
        return [
            (
                r.room_id,
                r.camera.packets_sent,
                len(r.video.frame_done_at) if r.video else -1,
                r.microphone.packets_sent,
                len(r.audio.frame_done_at) if r.audio else -1,
            )
            for r in rooms
        ]

    deadline = time.monotonic() + CLIP_S + 20
    while any(c[2] < len(clip_video) or c[4] < len(clip_audio) for c in counts()):
        assert time.monotonic() < deadline, f"(room, sent, received, sent, received): {counts()}"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # anything extra (a duplicate, a late packet) would show now

    sent_video = _hashes([u.data for u in clip_video])
    sent_audio = _hashes([u.data for u in clip_audio])
    results: dict[bool, dict[str, Any]] = {}
    for room in rooms:
        assert room.video is not None and room.audio is not None
        assert room.camera.packets_sent == len(clip_video)  # played once, all of it
        assert room.microphone.packets_sent == len(clip_audio)
        video = room.video.frames()
        audio = room.audio.frames()
        assert _hashes([f for _, f in video]) == sent_video, room.room_id
        assert _hashes([f for _, f in audio]) == sent_audio, room.room_id
        assert room.video.other_packets == 0 and room.audio.other_packets == 0
        frame_ticks = room.camera.clip.frame_ticks
        steps = {(b - a) % (1 << 32) for (a, _), (b, _) in itertools.pairwise(video)}
        assert steps == {frame_ticks}  # RTP timestamps advance as sent: one frame per frame
        latencies = _latencies(room)
        results[room.recorded] = {
            "median_ms": 1000 * statistics.median(latencies),
            "p95_ms": 1000 * statistics.quantiles(latencies, n=20)[-1],
            "max_ms": 1000 * max(latencies),
            "keyframe_requests": room.camera.keyframe_requests,
        }
    print("forwarding latency, recorded vs not (noisy, shared machine):", json.dumps(results))
    recorded, plain = results[True], results[False]
    # Timing: the recorder must not add a delay. Generous bounds: the two rooms share one SFU
    # process and one client process, and other tests' processes share the cores.
    assert recorded["median_ms"] < plain["median_ms"] + 20, results
    assert recorded["p95_ms"] < plain["p95_ms"] + 50, results
    assert recorded["max_ms"] < 500, results

    # ... and the recorded room recorded the same frames.
    recorded_room = next(r for r in rooms if r.recorded)
    async with aiohttp.ClientSession() as http:
        deleted = await http.delete(
            f"{sfu.url}/rooms/{recorded_room.room_id}", headers=sfu.service_headers()
        )
        body = await deleted.json()
    session_dir = Path(sfu.env["SFU_DATA_DIR"]) / "recordings" / body["recording"]["session_id"]
    manifest = json.loads((session_dir / "manifest.json").read_text())
    files = {t["kind"]: session_dir / t["file"] for t in manifest["tracks"]}
    assert set(files) == {"video", "audio"}
    for kind, expected in (("video", sent_video), ("audio", sent_audio)):
        with av.open(str(files[kind])) as container:
            stream = container.streams[0]
            data = [bytes(p) for p in container.demux(stream) if p.size]
        assert _hashes(data) == expected, kind

"""Recorder: RTP from real pre-encoded clips → Matroska files, decoded back with PyAV."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import av
import pytest
from aiortc.rtp import RtpPacket
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sfu.client.clips import Clip, Codec, EncodedUnit, get_clip, load_clip
from sfu.recording.assembler import AUDIO_START_HOLD, Frame, FrameAssembler
from sfu.recording.bitstream import annexb_nal_units, frame_dimensions
from sfu.recording.manifest import SessionManifest
from sfu.recording.recorder import TrackRecorder
from sfu.recording.session import RecordingSession, find_unfinished
from sfu.testing.packets import CODECS, packetize


def clip_of(codec: Codec, seconds: float = 2) -> Clip:
    return load_clip(get_clip(codec, seconds=seconds))


def shuffle_within(packets: list[RtpPacket], window: int, seed: int = 7) -> list[RtpPacket]:
    rng = random.Random(seed)
    keyed = [(i + rng.uniform(0, window), p) for i, p in enumerate(packets)]
    return [p for _, p in sorted(keyed, key=lambda kp: kp[0])]


def decode(path: Path) -> tuple[list[av.VideoFrame | av.AudioFrame], float]:
    with av.open(str(path)) as container:
        stream = container.streams[0]
        frames: list[av.VideoFrame | av.AudioFrame] = []
        for frame in container.decode(stream):
            assert isinstance(frame, av.VideoFrame | av.AudioFrame)
            frames.append(frame)
        assert frames, "nothing decoded"
        tb = frames[0].time_base
        assert tb is not None
        last = frames[-1]
        assert last.pts is not None and frames[0].pts is not None
        span = float((last.pts - frames[0].pts) * tb)
        return frames, span


def audio_frame(frame: av.VideoFrame | av.AudioFrame) -> av.AudioFrame:
    assert isinstance(frame, av.AudioFrame), frame
    return frame


def video_frame(frame: av.VideoFrame | av.AudioFrame) -> av.VideoFrame:
    assert isinstance(frame, av.VideoFrame), frame
    return frame


# -- bitstream -------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_keyframe_dimensions(codec: Codec) -> None:
    clip = clip_of(codec)
    assert frame_dimensions(codec, clip.units[0].data) == (clip.width, clip.height)


# -- assembler -------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["vp8", "h264", "opus"])
def test_assembler_reorders_within_window(codec: Codec) -> None:
    clip = clip_of(codec)
    packets = packetize(clip)
    assembler = FrameAssembler(codec, window=100)
    frames = []
    for p in shuffle_within(packets, 20):
        frames += assembler.push(p.sequence_number, p.timestamp, bool(p.marker), p.payload)
    frames += assembler.flush()
    assert len(frames) == len(clip.units)
    assert [f.keyframe for f in frames] == [u.keyframe for u in clip.units]
    if codec != "h264":  # H.264 comes back with 4-byte start codes
        assert [f.data for f in frames] == [u.data for u in clip.units]
    assert assembler.stats.packets_lost == 0


def test_assembler_loss_drops_until_next_keyframe() -> None:
    clip = clip_of("vp8", seconds=4)  # keyframes at 0, 60
    packets = packetize(clip)
    lost_frame_ts = (packets[0].timestamp + 10 * clip.frame_ticks) & 0xFFFFFFFF
    victims = [p for p in packets if p.timestamp == lost_frame_ts]
    survivors = [p for p in packets if p is not victims[0]]
    assembler = FrameAssembler("vp8", window=50)
    frames = []
    for p in survivors:
        frames += assembler.push(p.sequence_number, p.timestamp, bool(p.marker), p.payload)
    frames += assembler.flush()
    assert assembler.keyframe_needed
    assert assembler.stats.packets_lost == 1
    assert len(frames) == 10 + (len(clip.units) - 60)
    assert (
        frames[10].keyframe
        and frames[10].timestamp == (packets[0].timestamp + 60 * 3000) & 0xFFFFFFFF
    )


def test_assembler_late_retransmission_fills_gap() -> None:
    clip = clip_of("h264")
    packets = packetize(clip)
    held = packets[30]
    order = packets[:30] + packets[31:80] + [held] + packets[80:]
    assembler = FrameAssembler("h264", window=100)
    frames = []
    for p in [*order, held]:  # a duplicate at the end is ignored
        frames += assembler.push(p.sequence_number, p.timestamp, bool(p.marker), p.payload)
    assert len(frames) == len(clip.units)
    assert assembler.stats.packets_late == 1


def assert_same_frames(codec: Codec, frames: list[Frame], units: Sequence[EncodedUnit]) -> None:
    """Each assembled frame is its clip unit: same keyframe flag, same bytes (H.264: the same
    NAL units; start codes are 4 bytes after depayloading)."""
    for frame, unit in zip(frames, units, strict=True):
        assert frame.keyframe == unit.keyframe
        if codec == "h264":
            assert annexb_nal_units(frame.data) == annexb_nal_units(unit.data)
        else:
            assert frame.data == unit.data


_PROPERTY_CLIPS: dict[str, tuple[Clip, list[RtpPacket]]] = {}


def _property_clip(codec: Codec) -> tuple[Clip, list[RtpPacket]]:
    if codec not in _PROPERTY_CLIPS:
        clip = clip_of(codec, seconds=4)  # video: keyframes at frames 0 and 60
        _PROPERTY_CLIPS[codec] = (clip, packetize(clip))
    return _PROPERTY_CLIPS[codec]


@settings(max_examples=120, deadline=None)
@example(codec="opus", lost=set(), duplicated={17}, jitter=0, seed=0, batch=1)
@example(codec="vp8", lost={40}, duplicated={3, 90}, jitter=0, seed=0, batch=60)
@given(
    codec=st.sampled_from(["vp8", "h264", "opus"]),
    lost=st.sets(st.integers(0, 10_000), max_size=4),
    duplicated=st.sets(st.integers(0, 10_000), max_size=4),
    jitter=st.integers(0, 30),
    seed=st.integers(0, 1000),
    batch=st.integers(1, 300),
)
def test_assembler_property_whole_frames_in_order(
    codec: Codec, lost: set[int], duplicated: set[int], jitter: int, seed: int, batch: int
) -> None:
    """Whatever the loss, reordering, duplicates and batch sizes: every frame out is exactly
    one of the clip's frames, in order, with its keyframe flag; nothing is lost without loss;
    and video resumes after a gap only on a keyframe."""
    clip, packets = _property_clip(codec)
    if codec == "opus":  # audio starts once AUDIO_START_HOLD packets are in (by design, the
        jitter = min(jitter, AUDIO_START_HOLD)  # first one reordered further comes too late)
    lost = {i % len(packets) for i in lost}
    sent = [p for i, p in enumerate(packets) if i not in lost]
    sent += [packets[i] for i in {i % len(packets) for i in duplicated} - lost]
    order = shuffle_within(sent, jitter, seed)
    assembler = FrameAssembler(codec, window=100)
    items = [
        (p.sequence_number, p.timestamp, bool(p.marker), p.payload, float(i))
        for i, p in enumerate(order)
    ]
    frames = []
    for start in range(0, len(items), batch):
        frames += assembler.feed(items[start : start + batch])
    frames += assembler.flush()
    ts0 = packets[0].timestamp
    index_of = {(ts0 + u.pts_ticks) & 0xFFFFFFFF: i for i, u in enumerate(clip.units)}
    indices = [index_of[f.timestamp] for f in frames]
    assert indices == sorted(set(indices))
    assert_same_frames(codec, frames, [clip.units[i] for i in indices])
    if not lost:
        assert indices == list(range(len(clip.units)))
    if codec != "opus":
        assert not frames or frames[0].keyframe
        for previous, index, frame in zip(indices, indices[1:], frames[1:], strict=False):
            assert index == previous + 1 or frame.keyframe
    else:
        lost_units = {index_of[packets[i].timestamp] for i in lost}
        assert set(indices) == set(range(len(clip.units))) - lost_units


def with_padding(packets: list[RtpPacket], every: int) -> list[RtpPacket]:
    """`packets` with a padding-only packet (as a publisher probing bandwidth on the media
    SSRC sends it: serialized with the P bit and parsed back) after every `every`-th packet
    that ends a frame; sequence numbers renumbered, wrapping."""
    out: list[RtpPacket] = []
    seq = packets[0].sequence_number
    ends = 0
    for packet in packets:
        out.append(RtpPacket.parse(_renumbered(packet, seq).serialize()))
        seq += 1
        if packet.marker or packet.payload_type == CODECS["opus"].payloadType:
            ends += 1
            if ends % every == 0:
                pad = _renumbered(packet, seq, payload=b"")
                pad.marker, pad.padding_size = 0, 200
                parsed = RtpPacket.parse(pad.serialize())
                assert parsed.payload == b"" and parsed.padding_size == 200
                out.append(parsed)
                seq += 1
    return out


def _renumbered(packet: RtpPacket, seq: int, payload: bytes | None = None) -> RtpPacket:
    return RtpPacket(
        payload_type=packet.payload_type,
        marker=packet.marker,
        sequence_number=seq & 0xFFFF,
        timestamp=packet.timestamp,
        ssrc=packet.ssrc,
        payload=packet.payload if payload is None else payload,
    )


@pytest.mark.parametrize("codec", ["vp8", "h264", "opus"])
def test_assembler_padding_is_not_loss(codec: Codec) -> None:
    """Padding-only packets in the media sequence take a sequence number and nothing else:
    every frame comes out, none is dropped, and video never waits for a keyframe."""
    clip, packets = _property_clip(codec)
    padded = shuffle_within(with_padding(packets, every=3), 10)
    assert sum(1 for p in padded if not p.payload) >= len(clip.units) // 3
    assembler = FrameAssembler(codec, window=100)
    items = [
        (p.sequence_number, p.timestamp, bool(p.marker), p.payload, float(i))
        for i, p in enumerate(padded)
    ]
    frames = []
    for start in range(0, len(items), 37):
        frames += assembler.feed(items[start : start + 37])
        assert not assembler.keyframe_needed
    frames += assembler.flush()
    assert len(frames) == len(clip.units)
    assert_same_frames(codec, frames, clip.units)
    assert assembler.stats.frames_dropped == 0
    assert assembler.stats.packets_lost == 0


# -- recorder --------------------------------------------------------------------------------


async def record(path: Path, codec: Codec, packets: list[RtpPacket]) -> TrackRecorder:
    asked: list[int] = []
    recorder = TrackRecorder(path, codec, request_keyframe=lambda: asked.append(1))
    recorder.start()
    assert asked or codec == "opus"
    for i, p in enumerate(packets):
        recorder.tap(p, CODECS[codec])
        if i % 50 == 0:
            await asyncio.sleep(0)
    await recorder.close()
    await recorder.close()  # idempotent
    return recorder


@pytest.mark.parametrize("codec", ["vp8", "h264", "opus"])
async def test_recorder_writes_decodable_file(tmp_path: Path, codec: Codec) -> None:
    clip = clip_of(codec)
    path = tmp_path / f"t.{codec}.mkv"
    recorder = await record(path, codec, shuffle_within(packetize(clip), 10))
    assert recorder.frames_written == len(clip.units)
    frames, span = decode(path)
    expected_span = (len(clip.units) - 1) * clip.frame_interval_s
    if codec == "opus":
        samples = sum(audio_frame(f).samples for f in frames)
        assert abs(samples / 48000 - clip.duration_s) < 0.03
    else:
        assert len(frames) == len(clip.units)
        first = video_frame(frames[0])
        assert (first.width, first.height) == (clip.width, clip.height)
    assert abs(span - expected_span) < 0.03
    with av.open(str(path)) as container:
        assert container.duration is not None
        assert abs(container.duration / 1e6 - clip.duration_s) < 0.1


@pytest.mark.parametrize("codec", ["vp8", "opus"])
async def test_recorder_keeps_every_frame_around_padding(tmp_path: Path, codec: Codec) -> None:
    """A publisher sending padding-only packets on the media SSRC (bandwidth probing without
    RTX) loses nothing in the recording."""
    clip = clip_of(codec)
    path = tmp_path / f"padded.{codec}.mkv"
    recorder = await record(path, codec, shuffle_within(with_padding(packetize(clip), 2), 5))
    assert recorder.frames_written == len(clip.units)
    assert recorder.stats["packets_lost"] == 0
    assert recorder.stats["frames_dropped"] == 0
    frames, _ = decode(path)
    if codec == "opus":
        samples = sum(audio_frame(f).samples for f in frames)
        assert abs(samples / 48000 - clip.duration_s) < 0.03
    else:
        assert len(frames) == len(clip.units)


@pytest.mark.parametrize("codec", ["vp8", "h264"])
async def test_recorder_with_loss_starts_on_keyframe(tmp_path: Path, codec: Codec) -> None:
    clip = clip_of(codec, seconds=4)
    packets = packetize(clip)
    first_kf = packets[0].timestamp
    # Lose a packet in the first keyframe and one in frame 70: the file starts at frame 60.
    drop = {id(next(p for p in packets if p.timestamp == first_kf))}
    drop.add(
        id(
            next(
                p for p in packets if p.timestamp == (first_kf + 70 * clip.frame_ticks) & 0xFFFFFFFF
            )
        )
    )
    survivors = [p for p in packets if id(p) not in drop]
    path = tmp_path / "lossy.mkv"
    recorder = await record(path, codec, shuffle_within(survivors, 5))
    frames, _ = decode(path)
    assert len(frames) == 10  # frames 60-69; frame 70 is incomplete and no keyframe follows
    assert frames[0].key_frame
    assert recorder.stats["packets_lost"] == 1  # the skipped start is not counted as loss


async def test_tap_never_blocks_on_a_stalled_writer(tmp_path: Path) -> None:
    clip = clip_of("vp8")
    packets = packetize(clip)
    recorder = TrackRecorder(tmp_path / "s.mkv", "vp8", queue_limit=500)
    recorder.start()  # the writer task cannot run: this coroutine never yields below
    codec = CODECS["vp8"]
    started = time.perf_counter()
    for i in range(10_000):
        recorder.tap(packets[i % len(packets)], codec)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, elapsed
    assert recorder.packets_dropped == 10_000 - 500
    await asyncio.wait_for(recorder.close(), 10)


_CHILD = """
import sys, time
from pathlib import Path
from sfu.client.clips import load_clip
from sfu.recording.assembler import Frame
from sfu.recording.writer import MatroskaWriter
clip = load_clip(sys.argv[1])
writer = MatroskaWriter(Path(sys.argv[2]), clip.codec, cluster_ms=500)
n = 0
while True:
    for unit in clip.units:
        ts = n * clip.frame_ticks
        writer.write(Frame(ts & 0xFFFFFFFF, unit.data, unit.keyframe, 0.0))
        n += 1
        if n % 10 == 0:
            print(n, flush=True)
        time.sleep(0.002)
"""


@pytest.mark.parametrize("codec", ["vp8", "h264", "opus"])
def test_sigkilled_writer_leaves_readable_file(tmp_path: Path, codec: Codec) -> None:
    clip_path = get_clip(codec, seconds=2)
    out = tmp_path / "killed.mkv"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(clip_path), str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )
    written = 0
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 60
        while written < 200 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            written = int(line)
    finally:
        child.kill()
        child.wait(timeout=10)
    assert written >= 200
    frames, _ = decode(out)
    # At most the open cluster (500 ms) plus what was written after the last report is lost.
    frame_s = load_clip(clip_path).frame_interval_s
    assert len(frames) >= written - 0.6 / frame_s - 10
    if codec != "opus":
        assert frames[0].key_frame


# -- session and manifest --------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_session_manifest_and_segments(tmp_path: Path) -> None:
    clock = FakeClock()
    session = RecordingSession(tmp_path, "sess1", "room1", clock=clock)
    manifest_path = tmp_path / "sess1" / "manifest.json"
    data = json.loads(manifest_path.read_text())
    assert data["status"] == "recording" and data["started_at"] == "2023-11-14T22:13:20.000Z"
    assert [m.session_id for m in find_unfinished(tmp_path)] == ["sess1"]

    session.participant_joined("p1", "u1", "Ann", "mentor")
    clock.now += 2
    clip = clip_of("vp8")
    for segment in range(2):
        rec = session.track_started(f"t{segment}", "p1", "video", "screen", "vp8")
        clock.now += 1
        for p in packetize(clip):
            rec.tap(p, CODECS["vp8"])
        clock.now += 3
        await session.track_ended(f"t{segment}")
        clock.now += 1
    session.participant_left("p1")
    await session.finalise()
    await session.finalise()

    data = json.loads(manifest_path.read_text())
    assert data["status"] == "finalised" and data["ended_at"] is not None
    assert data["participants"] == [
        {
            "participant_id": "p1",
            "user_id": "u1",
            "name": "Ann",
            "role": "mentor",
            "joined_at_s": 0.0,
            "left_at_s": 12.0,
        }
    ]
    tracks = data["tracks"]
    assert [t["segment"] for t in tracks] == [0, 1]
    assert [t["file"] for t in tracks] == ["tracks/p1-screen-0.mkv", "tracks/p1-screen-1.mkv"]
    # The first frame arrived one second after track_started; the segment ended 3 s later.
    assert [(t["start_s"], t["end_s"]) for t in tracks] == [(3.0, 6.0), (8.0, 11.0)]
    for t in tracks:
        frames, _ = decode(tmp_path / "sess1" / t["file"])
        assert len(frames) == len(clip.units)
    assert find_unfinished(tmp_path) == []
    assert [p.name for p in (tmp_path / "sess1").iterdir() if p.name.startswith(".")] == []
    assert SessionManifest.read(manifest_path).tracks[1].segment == 1


def test_manifest_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "manifest.json"
    manifest = SessionManifest("s", "r", "2024-01-01T00:00:00.000Z")
    manifest.write(path)
    before = path.read_text()

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("sfu.recording.session.os.replace", broken_replace)
    manifest.status = "finalised"
    with pytest.raises(OSError):
        manifest.write(path)
    assert path.read_text() == before  # the old manifest is intact, never half-written
    assert json.loads(before)["status"] == "recording"

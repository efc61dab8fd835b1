"""The recorder's tap never waits for its writer: a writer stalled in its thread (a hung disk)
costs recorded packets, dropped, counted and logged once, never time on the forwarding path;
a writer that only hiccups loses nothing."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from pathlib import Path

import av
import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from sfu.client.clips import get_clip, load_clip
from sfu.recording.assembler import Frame
from sfu.recording.recorder import TrackRecorder
from sfu.recording.writer import MatroskaWriter
from sfu.testing.packets import packetize

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)


def opus_packets(count: int) -> list[RtpPacket]:
    clip = load_clip(get_clip("opus", seconds=4))
    return [
        RtpPacket(
            payload_type=111,
            sequence_number=i & 0xFFFF,
            timestamp=(i * clip.frame_ticks) & 0xFFFFFFFF,
            ssrc=7,
            payload=clip.units[i % len(clip.units)].data,
        )
        for i in range(count)
    ]


class StalledWriter:
    """A FrameWriter whose `write` blocks its thread until `release` is set (a hung disk)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.frames: list[Frame] = []
        self.frames_written = 0
        self.frames_skipped = 0
        self.first_arrival: float | None = None
        self.closed = False

    @property
    def opened(self) -> bool:
        return bool(self.frames)

    def write(self, frame: Frame) -> bool:
        self.entered.set()
        if not self.release.wait(60):
            raise TimeoutError("the test never released the writer")
        self.frames.append(frame)
        self.frames_written += 1
        if self.first_arrival is None:
            self.first_arrival = frame.arrival
        return True

    def close(self) -> None:
        self.closed = True


async def test_tap_drops_instead_of_blocking_when_the_writer_is_stalled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sfu.recording.recorder")
    head, limit, burst = 40, 200, 1000  # head > AUDIO_START_HOLD: the assembler emits frames
    packets = opus_packets(head + burst)
    writer = StalledWriter()
    recorder = TrackRecorder(tmp_path / "a.mkv", "opus", queue_limit=limit, writer=writer)
    recorder.start()
    for packet in packets[:head]:
        recorder.tap(packet, OPUS)
    # the writer task takes these as a batch and blocks in its thread on the first frame
    assert await asyncio.to_thread(writer.entered.wait, 10)
    assert not writer.release.is_set()

    slowest = 0.0
    loop_lag = 0.0
    began = time.perf_counter()
    for i, packet in enumerate(packets[head:]):
        t0 = time.perf_counter()
        recorder.tap(packet, OPUS)
        slowest = max(slowest, time.perf_counter() - t0)
        if i % 20 == 19:  # the event loop runs between packets, as it does in the SFU
            t1 = time.perf_counter()
            await asyncio.sleep(0)
            loop_lag = max(loop_lag, time.perf_counter() - t1)
    total = time.perf_counter() - began
    # a blocked tap would wait for `release` (never set here) and the test would time out;
    # the bounds only make "immediately" concrete (generous: the machine is shared)
    assert total < 0.5 and slowest < 0.05, (total, slowest)
    assert loop_lag < 0.1, loop_lag
    assert not writer.release.is_set() and writer.frames_written == 0  # still stalled

    assert recorder.packets_dropped == burst - limit  # the queue held `limit`, the rest dropped
    assert recorder.stats["packets_dropped"] == burst - limit
    warnings = [r for r in caplog.records if "dropping packets" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once, not per packet

    writer.release.set()
    await asyncio.wait_for(recorder.close(), 20)
    assert writer.closed
    # every packet the queue accepted was written, in order; none of the dropped ones
    accepted = [p.timestamp for p in packets[: head + limit]]
    written = [f.timestamp for f in writer.frames]
    lost_at_reset = recorder.stats["frames_dropped"]
    assert lost_at_reset <= 1  # the frame in progress when the gap was noticed
    assert written == accepted[: len(written)] and len(written) == len(accepted) - lost_at_reset


class HiccupWriter(MatroskaWriter):
    """A real Matroska writer whose first write blocks for `pause` seconds."""

    def __init__(self, path: Path, codec: str, pause: float) -> None:
        super().__init__(path, codec)
        self.pause = pause
        self.paused = False

    def write(self, frame: Frame) -> bool:
        if not self.paused:
            self.paused = True
            time.sleep(self.pause)
        return super().write(frame)


async def test_a_writer_hiccup_loses_nothing(tmp_path: Path) -> None:
    clip = load_clip(get_clip("vp8", seconds=2))
    packets = packetize(clip, seq0=0, ts0=0)
    path = tmp_path / "v.mkv"
    writer = HiccupWriter(path, "vp8", pause=0.6)
    recorder = TrackRecorder(path, "vp8", writer=writer)
    recorder.start()
    for i, packet in enumerate(packets):  # about 1 s of packets, through the 0.6 s pause
        recorder.tap(packet, VP8)
        if i % 20 == 19:
            await asyncio.sleep(0.03)
    await asyncio.wait_for(recorder.close(), 20)
    assert writer.paused
    assert recorder.packets_dropped == 0
    assert recorder.frames_written == len(clip.units)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        recorded = [hashlib.sha256(bytes(p)).hexdigest() for p in container.demux(stream) if p.size]
    assert recorded == [hashlib.sha256(u.data).hexdigest() for u in clip.units]
    with av.open(str(path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(clip.units)


class FullDiskWriter(MatroskaWriter):
    """A real Matroska writer whose writes fail with ENOSPC from the `fail_at`-th frame on."""

    def __init__(self, path: Path, codec: str, fail_at: int) -> None:
        super().__init__(path, codec)
        self.fail_at = fail_at
        self.calls = 0

    def write(self, frame: Frame) -> bool:
        self.calls += 1
        if self.calls >= self.fail_at:
            raise OSError(28, "No space left on device")
        return super().write(frame)


async def test_a_failed_write_closes_the_file_and_tells_the_owner_once(tmp_path: Path) -> None:
    """The file keeps what was written before the failure (it decodes); the owner is told once,
    on the event loop; later packets are dropped without another attempt or error."""
    path = tmp_path / "a.mkv"
    writer = FullDiskWriter(path, "opus", fail_at=60)
    told: list[OSError | None] = []
    recorder = TrackRecorder(
        path, "opus", writer=writer, on_failed=lambda: told.append(recorder.write_error)
    )
    recorder.start()
    packets = opus_packets(300)
    for i, packet in enumerate(packets):
        recorder.tap(packet, OPUS)
        if i % 50 == 49:
            await asyncio.sleep(0.3)  # past a drain interval: the batch is written
    await asyncio.wait_for(recorder.close(), 10)
    assert len(told) == 1 and isinstance(told[0], OSError) and told[0].errno == 28
    assert writer.calls == 60  # no write after the failure
    assert writer.closed and recorder.frames_written == 59
    with av.open(str(path)) as container:
        decoded = sum(1 for _ in container.decode(audio=0))
    assert decoded >= 50  # what came before the failure is there (the last cluster may not be)

"""Test media: tiny recorded-track files for VOD tests (what the recorder writes, Matroska VP8
/ Opus, made directly with PyAV), and RTP packets of a pre-encoded clip for recorder tests."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from sfu.recording.assembler import Frame
from sfu.recording.writer import MatroskaWriter


def write_vp8_track(
    path: Path, rgb: tuple[int, int, int], seconds: float, drop: range = range(0)
) -> None:
    """320x240 at 15 fps: a flat colour with a moving white square; frames in `drop` are left
    out (a gap in the timestamps, as lost frames leave in a recording)."""
    fps = 15
    with av.open(str(path), "w", format="matroska") as c:
        s = c.add_stream("libvpx", rate=fps)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.bit_rate = 300_000
        for i in range(round(seconds * fps)):
            if i in drop:
                continue
            img = np.empty((240, 320, 3), dtype=np.uint8)
            img[:] = rgb
            x = (i * 8) % 280
            img[100:140, x : x + 40] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            c.mux(s.encode(frame.reformat(format="yuv420p")))
        c.mux(s.encode(None))


def write_recorded_video(
    path: Path, codec: str, rgb: tuple[int, int, int], parts: list[tuple[int, int, float]]
) -> None:
    """A flat-colour camera (`codec` "vp8" or "h264") at 15 fps whose resolution changes, as a
    browser's does when it adapts to the network: each (width, height, seconds) part is encoded
    on its own (starting with a keyframe; H.264 with its SPS/PPS in band, as WebRTC sends it)
    and all frames go through the recorder's MatroskaWriter, so the file's track header gives
    the first part's size, as in a recording."""
    fps, step = 15, 90_000 // 15
    writer = MatroskaWriter(path, codec)
    timestamp = 0
    for width, height, seconds in parts:
        encoder = av.CodecContext.create("libvpx" if codec == "vp8" else "libx264", "w")
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
        encoder.time_base, encoder.bit_rate = Fraction(1, fps), 300_000
        if codec == "h264":
            encoder.options = {"profile": "baseline", "tune": "zerolatency"}
        img = np.empty((height, width, 3), dtype=np.uint8)
        img[:] = rgb
        packets = []
        for i in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            packets += encoder.encode(frame)
        packets += encoder.encode(None)
        for packet in packets:
            writer.write(Frame(timestamp, bytes(packet), packet.is_keyframe, 0.0))
            timestamp += step
    writer.close()


def write_opus_tone(path: Path, hz: float, seconds: float) -> None:
    """Mono Opus at 48 kHz in 20 ms frames: a steady sine tone."""
    with av.open(str(path), "w", format="matroska") as c:
        s = c.add_stream("libopus", rate=48000, layout="mono")
        s.bit_rate = 64_000
        n = round(seconds * 48000)
        tone = (0.3 * np.sin(2 * np.pi * hz * np.arange(n) / 48000)).astype(np.float32)
        for off in range(0, n - 959, 960):
            frame = av.AudioFrame.from_ndarray(tone[None, off : off + 960], "flt", "mono")
            frame.sample_rate, frame.pts = 48000, off
            frame.time_base = Fraction(1, 48000)
            c.mux(s.encode(frame))
        c.mux(s.encode(None))

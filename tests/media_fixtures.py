"""Tiny recorded-track files for VOD tests: what the recorder writes (Matroska VP8 / Opus),
made directly with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


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

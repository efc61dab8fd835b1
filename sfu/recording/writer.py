"""Synchronous Matroska muxing of already-encoded frames (no decoding, no encoding).

Matroska because VP8, H.264 and Opus all fit one container, and because it survives a killed
process: the muxer writes each cluster (at most `cluster_ms` of media) as soon as it is closed
and `flush_packets` pushes it to the OS, so a SIGKILL loses at most the open cluster; only the
Cues index, the Duration and the segment size are missing, and demuxers read such files
sequentially. (MPEG-TS cannot carry VP8; fragmented MP4 would need per-codec extradata.)

Opus tracks carry an OpusHead (RFC 7845 §5.1) as codec private data, which Matroska requires
for A_OPUS and strict players insist on; `OpusHead` in bitstream.py says which values and why.
PyAV's `add_mux_stream` cannot set extradata or a channel layout, so the Opus stream is made
from a template stream (an unopened encoder context that is never opened: packets are muxed
as they came, nothing is encoded).
"""

from __future__ import annotations

import fractions
import io
import logging
from pathlib import Path

import av
from av.container import OutputContainer
from av.stream import Stream

from sfu.media.rewriter import TS_MOD
from sfu.recording.assembler import Frame
from sfu.recording.bitstream import OpusHead, frame_dimensions

logger = logging.getLogger(__name__)

CLOCK_RATES = {"vp8": 90_000, "h264": 90_000, "opus": 48_000}


class MatroskaWriter:
    """One `.mkv` file with one stream; opened at the first keyframe."""

    def __init__(
        self,
        path: Path,
        codec: str,
        *,
        cluster_ms: int = 1000,
        opus_head: OpusHead | None = None,
    ) -> None:
        self.path = path
        self.codec = codec
        self.opus_head = opus_head or OpusHead.webrtc()
        self.clock_rate = CLOCK_RATES[codec]
        self.time_base = fractions.Fraction(1, self.clock_rate)
        self.cluster_ms = cluster_ms
        self.frames_written = 0
        self.frames_skipped = 0
        self.first_arrival: float | None = None
        self.closed = False
        self._container: OutputContainer | None = None
        self._stream: Stream | None = None
        self._first_ts = 0
        self._last_raw = 0
        self._last_ext = 0
        self._last_pts = -1

    @property
    def opened(self) -> bool:
        return self._container is not None

    def write(self, frame: Frame) -> bool:
        """Mux one frame; False if it was skipped (before the first keyframe, or out of order)."""
        if self.closed:
            return False
        if self._container is None and not self._open(frame):
            self.frames_skipped += 1
            return False
        assert self._container is not None and self._stream is not None
        delta = (frame.timestamp - self._last_raw + TS_MOD // 2) % TS_MOD - TS_MOD // 2
        ext = self._last_ext + delta
        pts = ext - self._first_ts
        if pts <= self._last_pts:
            self.frames_skipped += 1
            return False
        self._last_raw, self._last_ext, self._last_pts = frame.timestamp, ext, pts
        packet = av.Packet(frame.data)
        packet.stream = self._stream
        packet.time_base = self.time_base
        packet.pts = packet.dts = pts
        packet.is_keyframe = frame.keyframe
        self._container.mux_one(packet)
        self.frames_written += 1
        return True

    def _open(self, frame: Frame) -> bool:
        if not frame.keyframe:
            return False
        kwargs: dict[str, int] = {}
        if self.codec == "opus":
            kwargs["rate"] = self.clock_rate
            kwargs["channels"] = self.opus_head.channels
        else:
            dims = frame_dimensions(self.codec, frame.data)
            if dims is None:
                logger.warning("%s keyframe without dimensions skipped", self.codec)
                return False
            kwargs["width"], kwargs["height"] = dims
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(
            str(self.path),
            "w",
            format="matroska",
            options={"cluster_time_limit": str(self.cluster_ms), "flush_packets": "1"},
        )
        try:
            if self.codec == "opus":
                self._stream = self._add_opus_stream(container)
            else:
                self._stream = container.add_mux_stream(self.codec, **kwargs)
        except Exception:
            container.close()
            raise
        self._container = container
        self._first_ts = self._last_ext = self._last_raw = frame.timestamp
        self._last_pts = -1
        self.first_arrival = frame.arrival
        logger.info("recording %s to %s (%s)", self.codec, self.path, kwargs)
        return True

    def _add_opus_stream(self, container: OutputContainer) -> Stream:
        """An Opus stream with the OpusHead as extradata and its channel layout."""
        head = self.opus_head
        scratch = av.open(io.BytesIO(), "w", format="matroska")
        try:
            layout = "stereo" if head.channels == 2 else "mono"
            template = scratch.add_stream("libopus", rate=self.clock_rate, layout=layout)
            stream = container.add_stream_from_template(template, opaque=True)
        finally:
            scratch.close()
        stream.codec_context.extradata = head.to_bytes()
        return stream

    def close(self) -> None:
        """Finalize the file (Cues, Duration). Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self._container is not None:
            self._container.close()
            self._container = None

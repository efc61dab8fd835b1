"""Encode the composed programme into an HLS ladder (H.264 + AAC, MPEG-TS segments) with PyAV.

Every rendition is its own `hls` muxer (`<name>/index.m3u8` + `<name>/seg_NNNNN.ts`); the
master playlist is written here, with BANDWIDTH measured from the segments written. Keyframes
are forced every `SEGMENT_S` seconds (no scene-cut keyframes) so every segment starts on one.
Encoder settings are fixed (threads included) so a job processed twice is byte-identical.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from sfu.vod.compose import AUDIO_RATE, AudioEvent
from sfu.vod.ladder import Rendition

log = logging.getLogger(__name__)

SEGMENT_S = 4
FPS = 25
AUDIO_BITRATE = 128_000
X264_PRESET = "veryfast"
X264_THREADS = 2
SEGMENT_PATTERN = "seg_%05d.ts"


@dataclass(frozen=True, slots=True)
class RenditionInfo:
    name: str
    width: int
    height: int
    bandwidth: int  # peak segment bit rate, bits per second
    average_bandwidth: int
    playlist: str  # relative to the output directory
    segments: tuple[str, ...]
    segment_durations: tuple[float, ...]


class RenditionEncoder:
    """One rendition: an hls muxer with one H.264 and one AAC stream."""

    def __init__(self, out_dir: Path, rendition: Rendition, fps: int = FPS) -> None:
        self.rendition = rendition
        self.dir = out_dir / rendition.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fps = fps
        gop = SEGMENT_S * fps
        self._container = av.open(
            str(self.dir / "index.m3u8"),
            "w",
            format="hls",
            options={
                "hls_time": str(SEGMENT_S),
                "hls_playlist_type": "vod",
                "hls_list_size": "0",
                "hls_segment_type": "mpegts",
                "hls_flags": "independent_segments",
                "hls_segment_filename": str(self.dir / SEGMENT_PATTERN),
            },
        )
        video = self._container.add_stream("libx264", rate=fps)
        video.width = rendition.width
        video.height = rendition.height
        video.pix_fmt = "yuv420p"
        video.bit_rate = rendition.video_bitrate
        video.codec_context.gop_size = gop
        video.codec_context.thread_count = X264_THREADS
        video.options = {
            "preset": X264_PRESET,
            "profile": "main",
            "level": rendition.level,
            "maxrate": str(rendition.video_bitrate * 11 // 10),
            "bufsize": str(rendition.video_bitrate * 2),
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0",
            "threads": str(X264_THREADS),
        }
        audio = self._container.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
        audio.bit_rate = AUDIO_BITRATE
        self._video = video
        self._audio = audio

    def encode_video(self, index: int, frame: av.VideoFrame) -> None:
        r = self.rendition
        scaled = frame.reformat(width=r.width, height=r.height, format="yuv420p")
        scaled.pts = index
        scaled.time_base = Fraction(1, self._fps)
        self._container.mux(self._video.encode(scaled))

    def encode_audio(self, frame: av.AudioFrame) -> None:
        self._container.mux(self._audio.encode(frame))

    def close(self) -> None:
        try:
            self._container.mux(self._video.encode(None))
            self._container.mux(self._audio.encode(None))
        finally:
            self._container.close()

    def abort(self) -> None:
        self._container.close()


def audio_frame(event: AudioEvent) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(event.samples, format="fltp", layout="stereo")
    frame.sample_rate = AUDIO_RATE
    frame.pts = event.offset
    frame.time_base = Fraction(1, AUDIO_RATE)
    return frame


_EXTINF = re.compile(r"#EXTINF:([0-9.]+),")


def read_media_playlist(out_dir: Path, rendition: Rendition) -> RenditionInfo:
    playlist = out_dir / rendition.name / "index.m3u8"
    lines = playlist.read_text(encoding="utf-8").splitlines()
    durations: list[float] = []
    segments: list[str] = []
    pending: float | None = None
    for line in lines:
        match = _EXTINF.match(line)
        if match:
            pending = float(match.group(1))
        elif line and not line.startswith("#") and pending is not None:
            durations.append(pending)
            segments.append(f"{rendition.name}/{line}")
            pending = None
    peak = 0
    total_bits = 0
    for seg, dur in zip(segments, durations, strict=True):
        bits = (out_dir / seg).stat().st_size * 8
        total_bits += bits
        peak = max(peak, round(bits / dur) if dur > 0 else 0)
    total_s = sum(durations)
    return RenditionInfo(
        name=rendition.name,
        width=rendition.width,
        height=rendition.height,
        bandwidth=peak,
        average_bandwidth=round(total_bits / total_s) if total_s > 0 else 0,
        playlist=f"{rendition.name}/index.m3u8",
        segments=tuple(segments),
        segment_durations=tuple(durations),
    )


def write_master(out_dir: Path, ladder: tuple[Rendition, ...], infos: list[RenditionInfo]) -> Path:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for rendition, info in zip(ladder, infos, strict=True):
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={info.bandwidth},"
            f"AVERAGE-BANDWIDTH={info.average_bandwidth},"
            f"RESOLUTION={rendition.width}x{rendition.height},"
            f'CODECS="{rendition.codecs}",FRAME-RATE={FPS:.3f}'
        )
        lines.append(info.playlist)
    path = out_dir / "master.m3u8"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

"""Encode the composed programme into an HLS ladder (H.264 + AAC, MPEG-TS segments) with PyAV.

Every rendition is its own `hls` muxer (`<name>/index.m3u8` + `<name>/seg_NNNNN.ts`); the
master playlist is written here, with BANDWIDTH measured from the segments written. Keyframes
are forced every `SEGMENT_S` seconds (no scene-cut keyframes) so every segment starts on one.

Encoder settings are fixed (threads included) so a job processed twice is byte-identical. x264
runs with ONE thread per rendition: x264's frame threads are not deterministic with VBV
(maxrate/bufsize: its rate control reads the progress of the other frames in flight), and its
slice threads cost more CPU and bits for little speed. The renditions are encoded in parallel
instead, each in its own thread (`sfu.vod.pipeline`); PyAV releases the GIL while x264 runs.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TypeAlias

import av
from av.audio.stream import AudioStream
from av.stream import Stream
from av.video.reformatter import VideoReformatter

from sfu.config.ladder import Rendition
from sfu.vod.canvas import scale_yuv420p
from sfu.vod.compose import AUDIO_RATE, AudioEvent

log = logging.getLogger(__name__)

AudioPacket: TypeAlias = "av.Packet[Stream]"

SEGMENT_S = 4
FPS = 25
AUDIO_BITRATE = 128_000
X264_PRESET = "veryfast"
X264_THREADS = 1  # per rendition; see the module docstring
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
        self._reformatter = VideoReformatter()

    def picture(self, frame: av.VideoFrame) -> av.VideoFrame:
        """The canvas frame at this rendition's size: the frame itself when it already is (no
        copy), else one swscale pass (bilinear) from it."""
        r = self.rendition
        return scale_yuv420p(self._reformatter, frame, r.width, r.height)

    def encode_video(self, index: int, frame: av.VideoFrame) -> None:
        """Encode canvas frame `index` (yuv420p; only read here, so several encoders in
        several threads may take the same frame)."""
        scaled = self.picture(frame)
        if scaled is not frame or frame.pts != index:
            scaled.pts = index
            scaled.time_base = Fraction(1, self._fps)
        self._container.mux(self._video.encode(scaled))

    def mux_audio(self, packets: list[AudioPacket]) -> None:
        """Mux AAC packets from the shared `AudioEncoder` (copies: the source packets are only
        read, so every rendition's thread can take the same ones)."""
        for packet in packets:
            self._container.mux(_copy_packet(packet, self._audio))

    def close(self) -> None:
        """Flush the video encoder and finish the playlist (the audio was flushed by the
        `AudioEncoder` and muxed before)."""
        try:
            self._container.mux(self._video.encode(None))
        finally:
            self._container.close()

    def abort(self) -> None:
        self._container.close()


def _copy_packet(packet: AudioPacket, stream: AudioStream) -> AudioPacket:
    copy: AudioPacket = av.Packet(bytes(packet))
    copy.pts, copy.dts, copy.duration = packet.pts, packet.dts, packet.duration
    copy.time_base = packet.time_base
    copy.is_keyframe = packet.is_keyframe
    for side in packet.iter_sidedata():
        copy.set_sidedata(side)
    copy.stream = stream
    return copy


class AudioEncoder:
    """The programme's AAC, encoded once for every rendition (all carry the same audio with the
    same settings); `RenditionEncoder.mux_audio` muxes the packets into each."""

    def __init__(self) -> None:
        ctx = av.CodecContext.create("aac", "w")
        ctx.sample_rate = AUDIO_RATE
        ctx.layout = "stereo"
        ctx.format = "fltp"
        ctx.bit_rate = AUDIO_BITRATE
        ctx.time_base = Fraction(1, AUDIO_RATE)
        self._ctx: av.audio.codeccontext.AudioCodecContext = ctx

    def encode(self, event: AudioEvent) -> list[AudioPacket]:
        """Packets (time base 1/AUDIO_RATE) for one chunk; often none, as AAC lags a frame."""
        return self._ctx.encode(audio_frame(event))

    def flush(self) -> list[AudioPacket]:
        return self._ctx.encode(None)


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

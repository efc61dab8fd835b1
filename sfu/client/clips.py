"""Pre-encoded media for the headless client.

Clips are encoded once with PyAV (synthetic content, so no fixtures are needed), cached on disk
and loaded into memory as a list of :class:`EncodedUnit`. :class:`PacedPacketTrack` then hands
them to aiortc as ``av.Packet`` objects, which aiortc only packetizes (``encoder.pack``) and never
re-encodes: the client stays much cheaper than the SFU it measures.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCRtpCodecCapability, RTCRtpSender
from aiortc.mediastreams import MediaStreamError
from av.stream import Stream

from sfu.media.client_seams import on_keyframe_request, set_track_id

logger = logging.getLogger(__name__)

VIDEO_CLOCK_RATE = 90_000
AUDIO_CLOCK_RATE = 48_000
OPUS_FRAME_SAMPLES = 960  # 20 ms at 48 kHz

Codec = Literal["vp8", "h264", "opus"]
_KIND: dict[str, Literal["audio", "video"]] = {"vp8": "video", "h264": "video", "opus": "audio"}

# A packet this late (seconds) makes the pacer restart its clock instead of bursting to catch up.
MAX_PACING_LAG_S = 0.5


@dataclass(frozen=True, slots=True)
class EncodedUnit:
    """One encoded frame: what one ``av.Packet`` handed to aiortc carries."""

    data: bytes
    pts_ticks: int  # in the clip's RTP clock (90 kHz video, 48 kHz audio), from the clip start
    keyframe: bool


@dataclass(frozen=True, slots=True)
class Clip:
    """An encoded clip loaded in memory, with constant frame duration."""

    path: Path
    codec: Codec
    kind: Literal["audio", "video"]
    clock_rate: int
    frame_ticks: int
    units: tuple[EncodedUnit, ...]
    width: int = 0
    height: int = 0

    @property
    def time_base(self) -> fractions.Fraction:
        return fractions.Fraction(1, self.clock_rate)

    @property
    def frame_interval_s(self) -> float:
        return self.frame_ticks / self.clock_rate

    @property
    def duration_s(self) -> float:
        return len(self.units) * self.frame_interval_s

    @property
    def keyframe_indices(self) -> tuple[int, ...]:
        return tuple(i for i, unit in enumerate(self.units) if unit.keyframe)

    def next_keyframe_index(self, start: int) -> int:
        """Index of the first keyframe at or after ``start``, wrapping around the clip."""
        count = len(self.units)
        for offset in range(count):
            index = (start + offset) % count
            if self.units[index].keyframe:
                return index
        raise ValueError(f"clip {self.path} has no keyframe")


# --- building --------------------------------------------------------------------------------


def clip_cache_dir() -> Path:
    """``$SFU_CLIP_CACHE`` or ``~/.cache/cotept-sfu/clips`` (created if missing)."""
    configured = os.environ.get("SFU_CLIP_CACHE")
    path = Path(configured) if configured else Path.home() / ".cache" / "cotept-sfu" / "clips"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _temporary_path(path: Path) -> Path:
    # Unique per process and thread so that concurrent builders never share a file; the final
    # os.replace is atomic, so readers only ever see complete clips.
    return path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")


def _video_image(index: int, width: int, height: int) -> np.ndarray:
    """A moving gradient, a moving box and the frame index drawn as 16 bit blocks."""
    xs = np.arange(width, dtype=np.int32)[None, :]
    ys = np.arange(height, dtype=np.int32)[:, None]
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:, :, 0] = ((xs + ys + index * 4) % 256).astype(np.uint8)
    image[:, :, 1] = ((xs * 2 - index * 3) % 256).astype(np.uint8)
    image[:, :, 2] = ((ys * 2 + index * 5) % 256).astype(np.uint8)
    box = max(8, min(width, height) // 6)
    bx = (index * 7) % max(1, width - box)
    by = (index * 5) % max(1, height - box)
    image[by : by + box, bx : bx + box] = 255
    block = max(2, width // 32)
    for bit in range(16):
        value = 255 if (index >> bit) & 1 else 0
        image[0:block, bit * block : (bit + 1) * block] = value
    return image


def _build_video(
    path: Path,
    *,
    codec_name: str,
    container_format: str,
    width: int,
    height: int,
    fps: int,
    seconds: float,
    kbps: int,
    gop_frames: int,
    options: dict[str, str],
    profile: str | None = None,
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_path(path)
    frame_count = max(1, round(fps * seconds))
    with av.open(str(tmp), "w", format=container_format) as container:
        stream = container.add_stream(codec_name, rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = kbps * 1000
        stream.codec_context.gop_size = gop_frames
        if profile is not None:
            stream.codec_context.profile = profile
        codec_options: dict[str, object] = {}
        codec_options.update(options)
        stream.options = codec_options
        for index in range(frame_count):
            frame = av.VideoFrame.from_ndarray(_video_image(index, width, height), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts = index
            # Force keyframes exactly on GOP boundaries (and only there: see the options).
            is_key = index % gop_frames == 0
            frame.pict_type = (
                av.video.frame.PictureType.I if is_key else av.video.frame.PictureType.NONE
            )
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    os.replace(tmp, path)
    logger.info("built %s clip %s (%d frames)", codec_name, path, frame_count)
    return path


def build_vp8_clip(
    path: Path | str,
    *,
    width: int = 640,
    height: int = 480,
    fps: int = 30,
    seconds: float = 4,
    kbps: int = 1000,
    gop_frames: int = 60,
) -> Path:
    """VP8 in IVF; no alt-ref frames, so every packet is one shown frame."""
    return _build_video(
        Path(path),
        codec_name="libvpx",
        container_format="ivf",
        width=width,
        height=height,
        fps=fps,
        seconds=seconds,
        kbps=kbps,
        gop_frames=gop_frames,
        options={
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "auto-alt-ref": "0",
            "keyint_min": str(gop_frames),
        },
    )


def build_h264_clip(
    path: Path | str,
    *,
    width: int = 640,
    height: int = 480,
    fps: int = 30,
    seconds: float = 4,
    kbps: int = 1000,
    gop_frames: int = 60,
) -> Path:
    """H.264 constrained baseline, level 3.1, Annex-B (SPS/PPS repeated before every IDR)."""
    return _build_video(
        Path(path),
        codec_name="libx264",
        container_format="h264",
        width=width,
        height=height,
        fps=fps,
        seconds=seconds,
        kbps=kbps,
        gop_frames=gop_frames,
        profile="Baseline",
        options={
            "level": "31",
            "tune": "zerolatency",
            "x264-params": (
                f"keyint={gop_frames}:min-keyint={gop_frames}:scenecut=0:bframes=0:repeat-headers=1"
            ),
        },
    )


def build_opus_clip(path: Path | str, *, seconds: float = 4, kbps: int = 64) -> Path:
    """Stereo Opus in Ogg, 48 kHz, 20 ms frames; the tone changes every 200 ms."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_path(path)
    frame_count = max(1, round(seconds * AUDIO_CLOCK_RATE / OPUS_FRAME_SAMPLES))
    with av.open(str(tmp), "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=AUDIO_CLOCK_RATE, layout="stereo")
        assert isinstance(stream, av.AudioStream)
        stream.bit_rate = kbps * 1000
        for index in range(frame_count):
            start = index * OPUS_FRAME_SAMPLES
            t = (np.arange(OPUS_FRAME_SAMPLES) + start) / AUDIO_CLOCK_RATE
            freq = 300.0 + 50.0 * ((index // 10) % 12)
            left = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
            right = (0.3 * np.sin(2 * np.pi * freq * 1.5 * t) * 32767).astype(np.int16)
            samples = np.column_stack([left, right]).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
            frame.sample_rate = AUDIO_CLOCK_RATE
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    os.replace(tmp, path)
    logger.info("built opus clip %s (%d frames)", path, frame_count)
    return path


_SUFFIX: dict[str, str] = {"vp8": ".ivf", "h264": ".h264", "opus": ".ogg"}
_BUILD_LOCK = threading.Lock()


_DEFAULTS: dict[str, dict[str, float]] = {
    "vp8": {"width": 640, "height": 480, "fps": 30, "seconds": 4, "kbps": 1000, "gop_frames": 60},
    "h264": {"width": 640, "height": 480, "fps": 30, "seconds": 4, "kbps": 1000, "gop_frames": 60},
    "opus": {"seconds": 4, "kbps": 64},
}


def clip_params(codec: Codec, **params: float) -> dict[str, float]:
    """Every build parameter of a clip: the defaults overridden by ``params``."""
    if codec not in _DEFAULTS:
        raise ValueError(f"unknown codec {codec!r}")
    unknown = set(params) - set(_DEFAULTS[codec])
    if unknown:
        raise ValueError(f"unknown {codec} clip parameters: {sorted(unknown)}")
    return {**_DEFAULTS[codec], **params}


def clip_name(codec: Codec, **params: float) -> str:
    """Cache file name: codec plus every parameter, so different clips never collide."""
    full = clip_params(codec, **params)
    parts = [codec] + [f"{key}{full[key]:g}" for key in sorted(full)]
    return "_".join(parts) + _SUFFIX[codec]


def get_clip(codec: Codec, **params: float) -> Path:
    """Path of a cached clip with these parameters, building it on first use."""
    path = clip_cache_dir() / clip_name(codec, **params)
    with _BUILD_LOCK:
        if path.exists():
            return path
        full = clip_params(codec, **params)
        seconds = float(full.pop("seconds"))
        ints = {key: _int_param(key, value) for key, value in full.items()}
        if codec == "vp8":
            return build_vp8_clip(path, seconds=seconds, **ints)
        if codec == "h264":
            return build_h264_clip(path, seconds=seconds, **ints)
        return build_opus_clip(path, seconds=seconds, **ints)


def _int_param(key: str, value: float) -> int:
    if value != int(value):
        raise ValueError(f"clip parameter {key} must be a whole number, got {value}")
    return int(value)


# --- loading ---------------------------------------------------------------------------------

_LOADED: dict[tuple[Path, int, int], Clip] = {}


def _codec_of(name: str) -> Codec:
    if name in ("vp8", "libvpx"):
        return "vp8"
    if name in ("h264", "libx264"):
        return "h264"
    if name in ("opus", "libopus"):
        return "opus"
    raise ValueError(f"unsupported codec in clip: {name}")


def load_clip(path: Path | str) -> Clip:
    """Demux a clip file into memory once (memoized per file version)."""
    resolved = Path(path).resolve()
    status = resolved.stat()
    key = (resolved, status.st_mtime_ns, status.st_size)
    cached = _LOADED.get(key)
    if cached is not None:
        return cached
    with av.open(str(resolved)) as container:
        stream = container.streams[0]
        codec = _codec_of(stream.codec_context.name)
        kind = _KIND[codec]
        width = height = 0
        if kind == "video":
            clock_rate = VIDEO_CLOCK_RATE
            assert isinstance(stream, av.VideoStream)
            rate = stream.guessed_rate or stream.codec_context.framerate or 30
            frame_ticks = round(VIDEO_CLOCK_RATE / float(rate))
            width, height = stream.codec_context.width, stream.codec_context.height
        else:
            clock_rate = AUDIO_CLOCK_RATE
            frame_ticks = OPUS_FRAME_SAMPLES
        datas = [(bytes(p), bool(p.is_keyframe)) for p in container.demux(stream) if p.size]
    if not datas:
        raise ValueError(f"clip {resolved} holds no packets")
    if kind == "audio":
        datas = [(data, True) for data, _ in datas]  # every Opus packet decodes on its own
    units = tuple(
        EncodedUnit(data=data, pts_ticks=i * frame_ticks, keyframe=key)
        for i, (data, key) in enumerate(datas)
    )
    clip = Clip(
        path=resolved,
        codec=codec,
        kind=kind,
        clock_rate=clock_rate,
        frame_ticks=frame_ticks,
        units=units,
        width=width,
        height=height,
    )
    if not clip.units[0].keyframe:
        raise ValueError(f"clip {resolved} does not start with a keyframe")
    _LOADED[key] = clip
    return clip


# --- the track -------------------------------------------------------------------------------


class PacedPacketTrack(MediaStreamTrack):
    """Plays a clip as ``av.Packet`` objects, paced against the wall clock, looping forever.

    Presentation timestamps keep increasing by one frame duration per packet, across loops and
    keyframe jumps, so the RTP timestamps aiortc derives from them (``pts * time_base`` in the
    codec clock) advance like a live source's.
    """

    def __init__(self, clip: Clip, *, track_id: str | None = None, loop: bool = True) -> None:
        super().__init__()
        self.kind = clip.kind
        if track_id is not None:
            set_track_id(self, track_id)
        self.clip = clip
        self.loop = loop
        self.packets_sent = 0
        self.keyframes_sent = 0
        self.keyframe_requests = 0
        self.loops_completed = 0
        self._index = 0
        self._next_pts = 0
        self._start: float | None = None  # loop time at which packet number _clock_base is due
        self._clock_base = 0
        self._keyframe_pending = False

    @classmethod
    def from_codec(
        cls, codec: Codec, *, track_id: str | None = None, loop: bool = True, **params: float
    ) -> PacedPacketTrack:
        return cls(load_clip(get_clip(codec, **params)), track_id=track_id, loop=loop)

    def request_keyframe(self) -> None:
        """The next packet returned will be the clip's next keyframe."""
        self.keyframe_requests += 1
        self._keyframe_pending = True

    def _due_time(self, loop_now: float) -> float:
        if self._start is None:
            self._start = loop_now
            self._clock_base = self.packets_sent
        due = self._start + (self.packets_sent - self._clock_base) * self.clip.frame_interval_s
        if loop_now - due > MAX_PACING_LAG_S:
            logger.debug("track %s fell %.3f s behind; restarting pacing", self.id, loop_now - due)
            self._start = loop_now
            self._clock_base = self.packets_sent
            due = loop_now
        return due

    async def recv(self) -> av.Packet[Stream]:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        delay = self._due_time(loop.time()) - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if self.readyState != "live":
            raise MediaStreamError
        if self._keyframe_pending:
            self._keyframe_pending = False
            self._index = self.clip.next_keyframe_index(self._index)
        if self._index >= len(self.clip.units):
            if not self.loop:
                self.stop()
                raise MediaStreamError
            self._index = 0
            self.loops_completed += 1
        unit = self.clip.units[self._index]
        self._index += 1
        packet = av.Packet(unit.data)
        packet.pts = self._next_pts
        packet.dts = self._next_pts
        packet.time_base = self.clip.time_base
        packet.is_keyframe = unit.keyframe
        self._next_pts += self.clip.frame_ticks
        self.packets_sent += 1
        if unit.keyframe:
            self.keyframes_sent += 1
        return packet


def route_keyframe_requests(sender: RTCRtpSender, track: PacedPacketTrack) -> None:
    """Make PLI/FIR received by ``sender`` reach ``track.request_keyframe()``.

    aiortc's sender only sets a flag for its encoder, which pre-encoded packets never consult
    (``sfu.media.client_seams.on_keyframe_request``).
    """
    on_keyframe_request(sender, track.request_keyframe)


def codec_preferences(codec: Codec) -> list[RTCRtpCodecCapability]:
    """aiortc's capabilities for a clip's codec (with RTX for video), for
    ``transceiver.setCodecPreferences``: packets are only packed, so the negotiated codec must
    be the clip's. H.264: packetization-mode 1, constrained baseline (42e01f) first."""
    kind = _KIND[codec]
    mime = {"vp8": "video/vp8", "h264": "video/h264", "opus": "audio/opus"}[codec]
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for c in capabilities if c.mimeType.lower() == mime]
    if codec == "h264":
        chosen = [c for c in chosen if str(c.parameters.get("packetization-mode")) == "1"]
        chosen.sort(key=lambda c: str(c.parameters.get("profile-level-id")) != "42e01f")
    rtx = [c for c in capabilities if c.mimeType.lower() == "video/rtx"]
    return chosen + rtx

"""Compose a recorded session into one programme: canvas frames at a fixed rate, mixed audio.

Each track file is decoded with PyAV and placed on the programme timeline at its `start_s`
(its own timestamps are taken relative to its first frame). Video is held over gaps for at most
`HOLD_S`; audio gaps become silence. Audio is resampled to 48 kHz stereo float and summed with
clipping. `programme()` yields video and audio events interleaved in time order.

The canvas is yuv420p from end to end (`sfu.vod.canvas`): each source picture is scaled by
swscale straight to its slot size in yuv420p and its planes copied into the canvas frame; a
picture held over several programme frames (a 15 fps share in a 25 fps programme) is scaled
once. No RGB on the way, so the encoders take the canvas frame as it is.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from av.video.reformatter import VideoReformatter

from sfu.recording.manifest import SessionManifest, TrackEntry
from sfu.vod.canvas import Planes, blit, fill, new_canvas, planes_of, scale_yuv420p, yuv_of_rgb
from sfu.vod.layout import Rect, build_timeline, fit, layout_at, slots

log = logging.getLogger(__name__)

AUDIO_RATE = 48000
AUDIO_CHUNK = 1024  # one AAC frame
HOLD_S = 2.0  # a video track that lost frames freezes this long, then shows the placeholder
GAP_TOLERANCE_S = 0.02  # audio timestamp jitter absorbed without inserting silence
PLACEHOLDER_RGB = (32, 32, 32)
PLACEHOLDER = yuv_of_rgb(PLACEHOLDER_RGB)
PLACEHOLDER_INSET = 2  # pixels of background around a placeholder (even: chroma grid)

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class VideoEvent:
    index: int  # frame number at the programme frame rate
    frame: av.VideoFrame  # yuv420p, canvas size, pts = index in 1/fps; not written after


@dataclass(frozen=True, slots=True)
class AudioEvent:
    offset: int  # first sample, at AUDIO_RATE
    samples: FloatArray  # shape (2, n), float32 in [-1, 1]


def _decode(path: Path, kind: str) -> Generator[tuple[float, av.VideoFrame | av.AudioFrame]]:
    """(seconds since the file's first frame, frame) for every decodable frame of `path`."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        log.warning("vod: cannot open track %s: %s", path, exc)
        return
    with container:
        streams = container.streams.video if kind == "video" else container.streams.audio
        if not streams:
            log.warning("vod: %s has no %s stream", path, kind)
            return
        first: float | None = None
        try:
            for frame in container.decode(streams[0]):
                if not isinstance(frame, av.VideoFrame | av.AudioFrame) or frame.time is None:
                    continue
                if first is None:
                    first = float(frame.time)
                yield float(frame.time) - first, frame
        except av.FFmpegError as exc:
            log.warning("vod: %s decode stopped early: %s", path, exc)


class VideoTrackReader:
    """The picture of one video track at monotonically increasing programme times."""

    def __init__(self, path: Path, track: TrackEntry) -> None:
        self._path = path
        self._track = track
        self._frames: Generator[tuple[float, av.VideoFrame | av.AudioFrame]] | None = None
        self._current: tuple[float, int, av.VideoFrame] | None = None  # (t, serial, frame)
        self._pending: tuple[float, int, av.VideoFrame] | None = None
        self._serial = 0  # counts decoded frames: the scaled-picture cache key
        self._done = False
        self._reformatter = VideoReformatter()
        self._scaled: tuple[int, int, int, Planes] | None = None  # (serial, w, h, planes)

    def _next(self) -> tuple[float, int, av.VideoFrame] | None:
        if self._frames is None:
            self._frames = _decode(self._path, "video")
        for rel, frame in self._frames:
            if isinstance(frame, av.VideoFrame):
                self._serial += 1
                return self._track.start_s + rel, self._serial, frame
        self._done = True
        return None

    def _frame_at(self, t: float) -> tuple[int, av.VideoFrame] | None:
        if t < self._track.start_s - 1e-6 or t > self._track.end + 1e-6:
            if t > self._track.end:
                self.close()
            return None
        # each iteration consumes one decoded frame, so this ends with the file
        while not self._done:
            if self._pending is None:
                self._pending = self._next()
                if self._pending is None:
                    break
            if self._pending[0] > t + 1e-6:
                break
            self._current, self._pending = self._pending, None
        if self._current is None or t - self._current[0] > HOLD_S:
            return None
        return self._current[1], self._current[2]

    def frame_at(self, t: float) -> av.VideoFrame | None:
        """The decoded frame showing at programme time t, or None (absent, or held too long)."""
        found = self._frame_at(t)
        return found[1] if found is not None else None

    def picture(self, t: float, rect: Rect) -> tuple[Rect, Planes] | None:
        """Where in `rect` the picture at t goes (aspect kept), and its yuv420p planes at that
        size; a frame held since the last call is not scaled again."""
        found = self._frame_at(t)
        if found is None:
            return None
        serial, frame = found
        box = fit(frame.width, frame.height, rect)
        cached = self._scaled
        if cached is None or cached[:3] != (serial, box.w, box.h):
            scaled = scale_yuv420p(self._reformatter, frame, box.w, box.h)
            self._scaled = cached = (serial, box.w, box.h, planes_of(scaled))
        return box, cached[3]

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()
        self._frames = None
        self._done = True
        self._current = self._pending = None
        self._scaled = None


class AudioTrackReader:
    """48 kHz stereo float samples of one audio track, read at increasing programme offsets."""

    def __init__(self, path: Path, track: TrackEntry) -> None:
        self._path = path
        self._track = track
        self._start = round(track.start_s * AUDIO_RATE)
        self._end = round(track.end * AUDIO_RATE)
        self._frames: Generator[tuple[float, av.VideoFrame | av.AudioFrame]] | None = None
        self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
        self._buf: FloatArray = np.zeros((2, 0), dtype=np.float32)
        self._buf_start = self._start  # programme sample index of self._buf[:, 0]
        self._done = False

    def _append(self, pos: int, data: FloatArray) -> None:
        buf_end = self._buf_start + self._buf.shape[1]
        if pos > buf_end + GAP_TOLERANCE_S * AUDIO_RATE:
            gap = np.zeros((2, pos - buf_end), dtype=np.float32)
            self._buf = np.concatenate([self._buf, gap, data], axis=1)
        elif pos < buf_end - GAP_TOLERANCE_S * AUDIO_RATE:
            overlap = buf_end - pos
            if overlap < data.shape[1]:
                self._buf = np.concatenate([self._buf, data[:, overlap:]], axis=1)
        else:
            self._buf = np.concatenate([self._buf, data], axis=1)

    def _pull(self) -> bool:
        """Decode one more frame into the buffer; False once the file is exhausted."""
        if self._frames is None:
            self._frames = _decode(self._path, "audio")
        for rel, frame in self._frames:
            if not isinstance(frame, av.AudioFrame):
                continue
            pos = self._start + round(rel * AUDIO_RATE)
            for i, out in enumerate(self._resampler.resample(frame)):
                data = out.to_ndarray().astype(np.float32, copy=False)
                self._append(pos if i == 0 else self._buf_start + self._buf.shape[1], data)
            return True
        for out in self._resampler.resample(None):
            data = out.to_ndarray().astype(np.float32, copy=False)
            self._append(self._buf_start + self._buf.shape[1], data)
        self._done = True
        return False

    def read(self, offset: int, n: int) -> FloatArray | None:
        """Samples [offset, offset + n) of this track, or None when it is silent there."""
        if offset >= self._end:
            self.close()
            return None
        if offset + n <= self._start:
            return None
        # each pull consumes one decoded frame, so this ends with the file
        while not self._done and self._buf_start + self._buf.shape[1] < offset + n:
            self._pull()
        out = np.zeros((2, n), dtype=np.float32)
        lo = max(offset, self._buf_start)
        hi = min(offset + n, self._buf_start + self._buf.shape[1], self._end)
        if hi > lo:
            out[:, lo - offset : hi - offset] = self._buf[
                :, lo - self._buf_start : hi - self._buf_start
            ]
        drop = max(0, min(offset + n, self._buf_start + self._buf.shape[1]) - self._buf_start)
        self._buf = self._buf[:, drop:]
        self._buf_start += drop
        return out

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()
        self._frames = None
        self._done = True
        self._buf = np.zeros((2, 0), dtype=np.float32)


def programme(
    manifest: SessionManifest, session_dir: Path, width: int, height: int, fps: int
) -> Iterator[VideoEvent | AudioEvent]:
    """The composed programme, video frames and audio chunks interleaved in time order."""
    duration = manifest.duration_s
    n_frames = max(1, round(duration * fps))
    n_samples = round(duration * AUDIO_RATE)
    timeline = build_timeline(manifest)
    # by track id, one reader per segment: a track whose file failed goes on in another
    # segment (another file) under the same id, and the segments do not overlap in time
    video: dict[str, list[VideoTrackReader]] = {}
    for track in manifest.tracks:
        if track.kind == "video":
            video.setdefault(track.track_id, []).append(
                VideoTrackReader(session_dir / track.file, track)
            )
    audio = [
        AudioTrackReader(session_dir / t.file, t)
        for t in manifest.tracks
        if t.kind == "audio" and manifest.role_of(t) in ("mentor", "mentee")
    ]
    offset = 0
    time_base = Fraction(1, fps)
    try:
        for index in range(n_frames):
            t = index / fps
            frame, canvas = new_canvas(width, height)
            for slot in slots(layout_at(timeline, t), width, height):
                placed = None
                for reader in video.get(slot.track_id, ()) if slot.track_id else ():
                    placed = reader.picture(t, slot.rect)  # None outside its segment
                    if placed is not None:
                        break
                if placed is None:
                    r, inset = slot.rect, PLACEHOLDER_INSET
                    inner = Rect(r.x + inset, r.y + inset, r.w - 2 * inset, r.h - 2 * inset)
                    if inner.w > 0 and inner.h > 0:
                        fill(canvas, inner, PLACEHOLDER)
                    continue
                blit(canvas, *placed)
            frame.pts = index
            frame.time_base = time_base
            yield VideoEvent(index, frame)
            target = min(n_samples, round((index + 1) * AUDIO_RATE / fps))
            if index == n_frames - 1:
                target = n_samples
            for _ in range(target // AUDIO_CHUNK + 2):
                if offset >= target or (target - offset < AUDIO_CHUNK and target < n_samples):
                    break
                n = min(AUDIO_CHUNK, n_samples - offset)
                mix = np.zeros((2, n), dtype=np.float32)
                for reader_a in audio:
                    part = reader_a.read(offset, n)
                    if part is not None:
                        mix += part
                np.clip(mix, -1.0, 1.0, out=mix)
                yield AudioEvent(offset, mix)
                offset += n
    finally:
        for v in itertools.chain.from_iterable(video.values()):
            v.close()
        for a in audio:
            a.close()

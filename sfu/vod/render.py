"""`render_session`: a recorded session directory in, an HLS directory with metadata out."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfu.config.ladder import DEFAULT_LADDER, Rendition
from sfu.recording.manifest import SessionManifest, load_manifest
from sfu.vod.compose import VideoEvent, programme
from sfu.vod.hls import FPS, RenditionEncoder, RenditionInfo, read_media_playlist, write_master
from sfu.vod.pipeline import EncoderPipeline

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float], None]


@dataclass(frozen=True, slots=True)
class RenderResult:
    session_id: str
    duration_s: float
    files: tuple[str, ...]  # relative to out_dir, sorted
    renditions: tuple[RenditionInfo, ...]
    elapsed_s: float


class _Progress:
    """The progress callback once per encoded programme frame, in order, and a log line every
    10 %; called from the composing thread as the encoders report frames done."""

    def __init__(self, session_id: str, n_frames: int, callback: ProgressCallback | None) -> None:
        self._session_id = session_id
        self._n_frames = n_frames
        self._callback = callback
        self._reported = 0
        self._next_log = 0.1

    def upto(self, frames_done: int) -> None:
        # bounded: at most n_frames calls over the whole render
        for done in range(self._reported + 1, min(frames_done, self._n_frames) + 1):
            fraction = done / self._n_frames
            if self._callback is not None:
                self._callback(fraction)
            if fraction >= self._next_log - 1e-9:
                log.info("vod: session %s %d%% done", self._session_id, fraction * 100)
                self._next_log = (int(fraction * 10) + 1) / 10
        self._reported = max(self._reported, min(frames_done, self._n_frames))


def build_metadata(manifest: SessionManifest, infos: list[RenditionInfo]) -> dict[str, Any]:
    roles = {p.participant_id: p for p in manifest.participants}
    return {
        "session_id": manifest.session_id,
        "room_id": manifest.room_id,
        "started_at": manifest.started_at,
        "ended_at": manifest.ended_at,
        "duration_s": round(manifest.duration_s, 3),
        "participants": [
            {
                "participant_id": p.participant_id,
                "user_id": p.user_id,
                "name": p.name,
                "role": p.role,
                "joined_at_s": p.joined_at_s,
                "left_at_s": p.left_at_s,
            }
            for p in manifest.participants
        ],
        "master_playlist": "master.m3u8",
        "renditions": [
            {
                "name": i.name,
                "width": i.width,
                "height": i.height,
                "bandwidth": i.bandwidth,
                "average_bandwidth": i.average_bandwidth,
                "playlist": i.playlist,
                "segments": len(i.segments),
            }
            for i in infos
        ],
        "tracks": [
            {
                "track_id": t.track_id,
                "participant_id": t.participant_id,
                "role": roles[t.participant_id].role if t.participant_id in roles else None,
                "source": t.source,
                "kind": t.kind,
                "codec": t.codec,
                "file": t.file,
                "start_s": t.start_s,
                "end_s": t.end_s,
            }
            for t in manifest.tracks
        ],
    }


def render_session(
    session_dir: Path,
    out_dir: Path,
    *,
    progress: ProgressCallback | None = None,
    ladder: tuple[Rendition, ...] = DEFAULT_LADDER,
) -> RenderResult:
    """Compose the session once and encode every rendition of `ladder` in the same pass: the
    composition in this thread, each rendition's encoder in its own (`sfu.vod.pipeline`)."""
    began = time.monotonic()
    manifest = load_manifest(session_dir)
    if manifest.status != "finalised":
        log.warning("vod: session %s has status %r", manifest.session_id, manifest.status)
    out_dir.mkdir(parents=True, exist_ok=True)
    width = max(r.width for r in ladder)
    height = max(r.height for r in ladder)
    duration = manifest.duration_s
    n_frames = max(1, round(duration * FPS))
    log.info(
        "vod: rendering session %s (%.1f s, %d frames, %s)",
        manifest.session_id,
        duration,
        n_frames,
        ", ".join(r.name for r in ladder),
    )
    encoders: list[RenditionEncoder] = []
    pipeline: EncoderPipeline | None = None
    try:
        for rendition in ladder:
            encoders.append(RenditionEncoder(out_dir, rendition, FPS))
        pipeline = EncoderPipeline(encoders)
        report = _Progress(manifest.session_id, n_frames, progress)
        for event in programme(manifest, session_dir, width, height, FPS):
            pipeline.feed(event)
            if isinstance(event, VideoEvent):
                report.upto(pipeline.frames_done)
        pipeline.finish()
        done = pipeline.frames_done
        pipeline = None
        encoders.clear()
        report.upto(done)
    finally:
        if pipeline is not None:
            pipeline.abort()
        else:
            for enc in encoders:
                enc.abort()
    infos = [read_media_playlist(out_dir, r) for r in ladder]
    write_master(out_dir, ladder, infos)
    metadata = build_metadata(manifest, infos)
    (out_dir / "metadata.json").write_text(
        json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    files = ["master.m3u8", "metadata.json"]
    for info in infos:
        files.append(info.playlist)
        files.extend(info.segments)
    elapsed = time.monotonic() - began
    log.info(
        "vod: session %s rendered in %.1f s (%.2fx real time)",
        manifest.session_id,
        elapsed,
        duration / elapsed if elapsed > 0 else 0.0,
    )
    return RenderResult(
        session_id=manifest.session_id,
        duration_s=duration,
        files=tuple(sorted(files)),
        renditions=tuple(infos),
        elapsed_s=elapsed,
    )

"""A recording session: one Matroska file per track segment plus a JSON manifest.

Layout: `<root>/<session_id>/manifest.json` and `<root>/<session_id>/tracks/
<participant>-<source>-<segment>.mkv`. The manifest is rewritten atomically (temp file +
os.replace) at every change, so a crash leaves the last consistent one with
`status: "recording"`; `find_unfinished` lists those for the hand-off step. Once the finalised
session is in the VOD job queue, `<session_id>/queued.json` records it (`mark_queued`);
`find_unqueued` lists finalised sessions without it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sfu import metrics
from sfu.core.timestamps import rfc3339_from_s
from sfu.recording.manifest import MANIFEST, ParticipantEntry, SessionManifest, TrackEntry
from sfu.recording.recorder import TrackRecorder

logger = logging.getLogger(__name__)

QUEUED_MARKER = "queued.json"
HEARTBEAT = "heartbeat"
"""Touched while the session records (`RecordingSession.heartbeat`): on a recordings volume
shared by several SFU nodes, a "recording" session whose heartbeat is old belongs to a node
that stopped, and any node may finalise it."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_.]+")


def last_sign_of_life(session_dir: Path) -> float:
    """When the session was last known to be written: its heartbeat's mtime, else the newest
    mtime of its manifest and track files (sessions recorded before heartbeats existed)."""
    try:
        return (session_dir / HEARTBEAT).stat().st_mtime
    except OSError:
        pass
    times = [p.stat().st_mtime for p in (session_dir / MANIFEST, *session_dir.glob("tracks/*"))]
    return max(times, default=0.0)


def _manifests(
    root_dir: Path | str, *, skip: Callable[[Path], bool] | None = None
) -> list[tuple[Path, SessionManifest]]:
    """(path, manifest) of every session under `root_dir` whose directory `skip` does not
    reject; unreadable manifests are logged and skipped."""
    found: list[tuple[Path, SessionManifest]] = []
    root = Path(root_dir)
    if not root.is_dir():
        return found
    for path in sorted(root.glob(f"*/{MANIFEST}")):
        if skip is not None and skip(path.parent):
            continue
        try:
            found.append((path, SessionManifest.read(path)))
        except FileNotFoundError:
            continue  # deleted since the listing (a published session past its retention)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("unreadable recording manifest %s: %s", path, exc)
    return found


def find_unfinished(
    root_dir: Path | str,
    *,
    node_id: str | None = None,
    stale_after_s: float | None = None,
    live: frozenset[str] = frozenset(),
    alive_nodes: frozenset[str] = frozenset(),
    now: float | None = None,
) -> list[SessionManifest]:
    """Sessions a crash left in `status: "recording"` (unreadable manifests are skipped).

    Without `stale_after_s`, every such session not in `live` (one SFU owns the directory).
    With it (a directory shared by several nodes), only those recorded by `node_id` (this node
    before it restarted), or whose last sign of life is older than `stale_after_s` seconds and
    whose node is not in `alive_nodes` (it holds a lease: its writes to the volume stall, but
    it still records; see leases.py)."""
    clock = time.time() if now is None else now
    found: list[SessionManifest] = []
    for path, manifest in _manifests(root_dir):
        if manifest.status != "recording" or manifest.session_id in live:
            continue
        if stale_after_s is not None and not (
            (node_id is not None and manifest.node_id == node_id)
            or (
                manifest.node_id not in alive_nodes
                and clock - last_sign_of_life(path.parent) > stale_after_s
            )
        ):
            continue
        found.append(manifest)
    return found


def find_unqueued(
    root_dir: Path | str, *, stale_after_s: float | None = None, now: float | None = None
) -> list[SessionManifest]:
    """Finalised sessions without a `queued.json` marker (unreadable manifests are skipped);
    with `stale_after_s`, only those finalised more than that long ago (so a hand-off another
    node is doing right now is left to it)."""
    clock = time.time() if now is None else now
    found: list[SessionManifest] = []
    unqueued = _manifests(root_dir, skip=lambda d: (d / QUEUED_MARKER).exists())
    for path, manifest in unqueued:
        if manifest.status != "finalised":
            continue
        try:
            age = clock - path.stat().st_mtime
        except OSError as exc:
            logger.warning("recording manifest %s vanished: %s", path, exc)
            continue
        if stale_after_s is None or age > stale_after_s:
            found.append(manifest)
    return found


def write_marker(session_dir: Path, name: str, stamp: str, now: float) -> None:
    """Record a step of the session durably: `<session_dir>/<name>` holding the session id and
    `stamp` (its time), written to a temp file, fsync'd, renamed, and the folder fsync'd."""
    tmp = session_dir / f".{name}.{os.getpid()}.tmp"
    data = {"session_id": session_dir.name, stamp: rfc3339_from_s(now)}
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(data, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, session_dir / name)
    fd = os.open(session_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mark_queued(session_dir: Path) -> None:
    """Record durably that the session's job is in the queue (`queued.json`)."""
    write_marker(session_dir, QUEUED_MARKER, "queued_at", time.time())


class RecordingSession:
    def __init__(
        self,
        root_dir: Path | str,
        session_id: str,
        room_id: str,
        *,
        clock: Callable[[], float] = time.time,
        recorder_options: dict[str, Any] | None = None,
        node_id: str | None = None,
    ) -> None:
        self.dir = Path(root_dir) / session_id
        (self.dir / "tracks").mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self.started = clock()
        self.manifest = SessionManifest(
            session_id, room_id, rfc3339_from_s(self.started), node_id=node_id
        )
        self.heartbeat()
        self.recorders: dict[str, TrackRecorder] = {}
        self._entries: dict[str, TrackEntry] = {}
        self._recorder_options = recorder_options or {}
        self._save()

    def heartbeat(self) -> None:
        """Touch `heartbeat` (a blocking file operation: call from a thread on slow disks)."""
        path = self.dir / HEARTBEAT
        path.touch()
        os.utime(path)

    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST

    def _now_s(self) -> float:
        return round(self._clock() - self.started, 3)

    def _save(self) -> None:
        self.manifest.write(self.manifest_path)

    def participant_joined(self, participant_id: str, user_id: str, name: str, role: str) -> None:
        self.manifest.participants.append(
            ParticipantEntry(participant_id, user_id, name, role, self._now_s())
        )
        self._save()

    def participant_left(self, participant_id: str) -> None:
        for entry in self.manifest.participants:
            if entry.participant_id == participant_id and entry.left_at_s is None:
                entry.left_at_s = self._now_s()
        self._save()

    def track_started(
        self,
        track_id: str,
        participant_id: str,
        kind: str,
        source: str,
        codec: str,
        *,
        request_keyframe: Callable[[], None] | None = None,
        on_failed: Callable[[], None] | None = None,
    ) -> TrackRecorder:
        """Open a new segment and start its recorder (call from the event loop); the caller
        appends `recorder.tap` to the fanout's taps. If the manifest cannot be saved (OSError)
        nothing is opened and the manifest is as it was."""
        if track_id in self.recorders:
            raise ValueError(f"track {track_id} is already being recorded")
        segment = sum(
            1
            for t in self.manifest.tracks
            if t.participant_id == participant_id and t.source == source
        )
        name = f"{_UNSAFE.sub('_', participant_id)}-{_UNSAFE.sub('_', source)}-{segment}.mkv"
        entry = TrackEntry(
            track_id=track_id,
            participant_id=participant_id,
            kind=kind,
            source=source,
            codec=codec,
            file=f"tracks/{name}",
            start_s=self._now_s(),
            end_s=None,
            segment=segment,
        )

        def first_frame(arrival: float) -> None:
            entry.start_s = round(arrival - self.started, 3)
            self._save()

        recorder = TrackRecorder(
            self.dir / entry.file,
            codec,
            request_keyframe=request_keyframe,
            on_first_frame=first_frame,
            on_failed=on_failed,
            clock=self._clock,
            **self._recorder_options,
        )
        self.manifest.tracks.append(entry)
        try:
            self._save()
        except OSError:
            self.manifest.tracks.remove(entry)
            raise
        self.recorders[track_id] = recorder
        self._entries[track_id] = entry
        metrics.RECORDING_TRACKS.labels(recorder.kind).inc()
        recorder.start()
        return recorder

    async def track_ended(self, track_id: str) -> None:
        """Close the segment's file; the caller removes `recorder.tap` from the fanout."""
        recorder = self.recorders.pop(track_id, None)
        entry = self._entries.pop(track_id, None)
        if recorder is None or entry is None:
            return
        end = self._now_s()
        await recorder.close()
        metrics.RECORDING_TRACKS.labels(recorder.kind).dec()
        entry.end_s = end
        self._save()

    async def finalise(self) -> None:
        """Close every open segment and mark the session finalised. Idempotent."""
        if self.manifest.status == "finalised":
            return
        await asyncio.gather(*(self.track_ended(t) for t in list(self.recorders)))
        now = self._now_s()
        for entry in self.manifest.participants:
            if entry.left_at_s is None:
                entry.left_at_s = now
        self.manifest.ended_at = rfc3339_from_s(self._clock())
        self.manifest.status = "finalised"
        self._save()

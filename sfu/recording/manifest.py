"""The recording manifest (`<session_dir>/manifest.json`): its records, how the recorder writes
it, and how anyone reads it back.

The recorder (sfu/recording/session.py) keeps a `SessionManifest` and rewrites it atomically
at every change; recovery finalises the one a crash left; the VOD worker loads a finished one
(`load_manifest`). Every reader goes through `parse_manifest`, which checks the types, the
vocabulary (roles, kinds, sources) and that track files stay inside the session folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sfu.core.vocabulary import KINDS, ROLES, SOURCES

MANIFEST = "manifest.json"


class ManifestError(ValueError):
    """The manifest is missing, unreadable or does not follow the recorder's format."""


@dataclass(slots=True)
class ParticipantEntry:
    participant_id: str
    user_id: str
    name: str
    role: str
    joined_at_s: float
    left_at_s: float | None = None


@dataclass(slots=True)
class TrackEntry:
    track_id: str
    participant_id: str
    kind: str
    source: str
    codec: str
    file: str  # relative to the session directory
    start_s: float  # wall-clock offset from the session start of the file's first frame
    end_s: float | None  # None while the file is being written
    segment: int

    @property
    def end(self) -> float:
        """`end_s` of a finished track (every track of a manifest `load_manifest` returns)."""
        if self.end_s is None:
            raise ManifestError(f"track {self.track_id!r} has no end_s")
        return self.end_s


@dataclass(slots=True)
class SessionManifest:
    session_id: str
    room_id: str
    started_at: str  # RFC 3339
    ended_at: str | None = None
    status: str = "recording"  # or "finalised"
    participants: list[ParticipantEntry] = field(default_factory=list)
    tracks: list[TrackEntry] = field(default_factory=list)
    node_id: str | None = None  # the SFU node that records it (SFU_NODE_ID)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> SessionManifest:
        """A manifest as the recorder wrote it, finished or not; ManifestError if it is not
        one."""
        return parse_manifest(data, finished=False)

    def write(self, path: Path) -> None:
        """Atomic: readers see the old or the new manifest, never a torn one."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> SessionManifest:
        """The manifest at `path`, finished or not (OSError, or ManifestError: a ValueError)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ManifestError(f"{path} is not UTF-8: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path} is not JSON: {exc}") from exc
        return cls.from_json(data)

    @property
    def duration_s(self) -> float:
        if self.ended_at is None:
            raise ManifestError("the session has not ended")
        start = datetime.fromisoformat(self.started_at)
        end = datetime.fromisoformat(self.ended_at)
        return max(0.0, (end - start).total_seconds())

    def participant(self, participant_id: str) -> ParticipantEntry | None:
        for p in self.participants:
            if p.participant_id == participant_id:
                return p
        return None

    def role_of(self, track: TrackEntry) -> str | None:
        p = self.participant(track.participant_id)
        return p.role if p is not None else None


def _str(d: dict[str, Any], key: str) -> str:
    value = d.get(key)
    if not isinstance(value, str):
        raise ManifestError(f"{key!r} must be a string")
    return value


def _num(d: dict[str, Any], key: str, *, optional: bool = False) -> float | None:
    value = d.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ManifestError(f"{key!r} must be a number")
    return float(value)


def _req_num(d: dict[str, Any], key: str) -> float:
    value = _num(d, key)
    assert value is not None
    return value


def _opt_str(d: dict[str, Any], key: str) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise ManifestError(f"{key!r} must be a string")
    return value


def _choice(d: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = _str(d, key)
    if value not in allowed:
        raise ManifestError(f"{key!r} must be one of {allowed}, got {value!r}")
    return value


def parse_manifest(data: Any, *, finished: bool = True) -> SessionManifest:
    """Check and type a manifest. `finished` (the VOD worker's case) also requires `ended_at`
    and every track's `end_s`; without it they may be missing (a session being recorded)."""
    if not isinstance(data, dict):
        raise ManifestError("manifest must be a JSON object")
    parts_raw = data.get("participants")
    tracks_raw = data.get("tracks")
    if not isinstance(parts_raw, list) or not isinstance(tracks_raw, list):
        raise ManifestError("'participants' and 'tracks' must be lists")
    participants = []
    for p in parts_raw:
        if not isinstance(p, dict):
            raise ManifestError("participant must be an object")
        participants.append(
            ParticipantEntry(
                participant_id=_str(p, "participant_id"),
                user_id=_str(p, "user_id"),
                name=str(p.get("name", "")),
                role=_choice(p, "role", ROLES),
                joined_at_s=_req_num(p, "joined_at_s"),
                left_at_s=_num(p, "left_at_s", optional=True),
            )
        )
    tracks = []
    for t in tracks_raw:
        if not isinstance(t, dict):
            raise ManifestError("track must be an object")
        file = _str(t, "file")
        if file.startswith("/") or ".." in Path(file).parts:
            raise ManifestError(f"track file must stay inside the session directory: {file!r}")
        segment = t.get("segment", 0)
        tracks.append(
            TrackEntry(
                track_id=_str(t, "track_id"),
                participant_id=_str(t, "participant_id"),
                kind=_choice(t, "kind", KINDS),
                source=_choice(t, "source", SOURCES),
                codec=_str(t, "codec"),
                file=file,
                start_s=_req_num(t, "start_s"),
                end_s=_req_num(t, "end_s") if finished else _num(t, "end_s", optional=True),
                segment=int(segment) if isinstance(segment, int | float) else 0,
            )
        )
    manifest = SessionManifest(
        session_id=_str(data, "session_id"),
        room_id=_str(data, "room_id"),
        started_at=_str(data, "started_at"),
        ended_at=_str(data, "ended_at") if finished else _opt_str(data, "ended_at"),
        status=_str(data, "status"),
        participants=participants,
        tracks=tracks,
        node_id=_opt_str(data, "node_id"),
    )
    try:
        datetime.fromisoformat(manifest.started_at)
        if manifest.ended_at is not None:
            datetime.fromisoformat(manifest.ended_at)
    except ValueError as exc:
        raise ManifestError(f"started_at/ended_at must be RFC 3339: {exc}") from exc
    return manifest


def load_manifest(session_dir: Path) -> SessionManifest:
    """The finished manifest of a session folder (the VOD worker's input)."""
    path = session_dir / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from exc
    return parse_manifest(data)

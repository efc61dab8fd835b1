"""The recorder's session manifest (`<session_dir>/manifest.json`), parsed into typed records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sfu.core.vocabulary import KINDS, ROLES, SOURCES


class ManifestError(ValueError):
    """The manifest is missing, unreadable or does not follow the recorder's format."""


@dataclass(frozen=True, slots=True)
class Participant:
    participant_id: str
    user_id: str
    name: str
    role: str
    joined_at_s: float
    left_at_s: float | None


@dataclass(frozen=True, slots=True)
class Track:
    track_id: str
    participant_id: str
    kind: str
    source: str
    codec: str
    file: str
    start_s: float
    end_s: float
    segment: int


@dataclass(frozen=True, slots=True)
class Manifest:
    session_id: str
    room_id: str
    started_at: str
    ended_at: str
    status: str
    participants: tuple[Participant, ...]
    tracks: tuple[Track, ...]

    @property
    def duration_s(self) -> float:
        start = datetime.fromisoformat(self.started_at)
        end = datetime.fromisoformat(self.ended_at)
        return max(0.0, (end - start).total_seconds())

    def participant(self, participant_id: str) -> Participant | None:
        for p in self.participants:
            if p.participant_id == participant_id:
                return p
        return None

    def role_of(self, track: Track) -> str | None:
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


def _choice(d: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = _str(d, key)
    if value not in allowed:
        raise ManifestError(f"{key!r} must be one of {allowed}, got {value!r}")
    return value


def parse_manifest(data: Any) -> Manifest:
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
            Participant(
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
            Track(
                track_id=_str(t, "track_id"),
                participant_id=_str(t, "participant_id"),
                kind=_choice(t, "kind", KINDS),
                source=_choice(t, "source", SOURCES),
                codec=_str(t, "codec"),
                file=file,
                start_s=_req_num(t, "start_s"),
                end_s=_req_num(t, "end_s"),
                segment=int(segment) if isinstance(segment, int | float) else 0,
            )
        )
    manifest = Manifest(
        session_id=_str(data, "session_id"),
        room_id=_str(data, "room_id"),
        started_at=_str(data, "started_at"),
        ended_at=_str(data, "ended_at"),
        status=_str(data, "status"),
        participants=tuple(participants),
        tracks=tuple(tracks),
    )
    try:
        _ = manifest.duration_s
    except ValueError as exc:
        raise ManifestError(f"started_at/ended_at must be RFC 3339: {exc}") from exc
    return manifest


def load_manifest(session_dir: Path) -> Manifest:
    path = session_dir / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from exc
    return parse_manifest(data)

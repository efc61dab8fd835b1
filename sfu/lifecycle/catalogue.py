"""The published catalogue, streamed: objects grouped per session, and each session's facts.

`sessions(store)` reads `ObjectStore.list("vod/sessions/")` (key order) and yields one
`SessionObjects` per session as soon as its last key has gone by, so only one session's
objects are held at a time. `FactsReader` turns a session into the rules' `SessionFacts`:

- publication date: metadata.json's `ended_at`; else the one remembered from an earlier run;
  else master.m3u8's last-modified time (on S3 a tier change rewrites it, hence the memory).
  The first reading is kept in `<data_dir>/lifecycle/sessions/<id>.json`, because an
  archived metadata.json cannot be read.
- plays from the PlayStore; the mentor's plays are counted while streaming (see rules).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sfu.analytics.plays import PlayStore
from sfu.lifecycle.rules import DAY_S, SessionFacts
from sfu.storage.base import ObjectArchived, ObjectInfo, ObjectNotFound, ObjectStore, StorageError

logger = logging.getLogger(__name__)

VOD_PREFIX = "vod/sessions/"
MASTER = "master.m3u8"
METADATA = "metadata.json"


@dataclass(slots=True)
class SessionObjects:
    session_id: str
    objects: list[ObjectInfo] = field(default_factory=list)

    def key(self, name: str) -> str:
        return f"{VOD_PREFIX}{self.session_id}/{name}"

    def find(self, name: str) -> ObjectInfo | None:
        wanted = self.key(name)
        return next((o for o in self.objects if o.key == wanted), None)

    def ordered(self) -> list[ObjectInfo]:
        """Segments first, then index playlists and metadata.json, master.m3u8 last."""

        def rank(info: ObjectInfo) -> tuple[int, str]:
            name = info.key.rsplit("/", 1)[-1]
            if info.key == self.key(MASTER):
                return (3, info.key)
            if name.endswith(".m3u8") or name.endswith(".json"):
                return (2, info.key)
            return (1, info.key)

        return sorted(self.objects, key=rank)


def session_of(key: str) -> str | None:
    if not key.startswith(VOD_PREFIX):
        return None
    rest = key[len(VOD_PREFIX) :]
    return rest.split("/", 1)[0] if "/" in rest else None


async def sessions(store: ObjectStore, only: str | None = None) -> AsyncIterator[SessionObjects]:
    prefix = f"{VOD_PREFIX}{only}/" if only else VOD_PREFIX
    current: SessionObjects | None = None
    async for info in store.list(prefix):
        sid = session_of(info.key)
        if sid is None:
            continue
        if current is not None and current.session_id != sid:
            yield current
            current = None
        if current is None:
            current = SessionObjects(sid)
        current.objects.append(info)
    if current is not None:
        yield current


@dataclass(frozen=True, slots=True)
class Remembered:
    published_at: datetime
    published_from: str
    mentee_ids: tuple[str, ...]
    mentor_id: str | None


class FactsReader:
    """Reads SessionFacts; remembers per-session metadata under `state_dir`."""

    def __init__(self, store: ObjectStore, plays: PlayStore, state_dir: Path, cfg_window: int):
        self.store = store
        self.plays = plays
        self.state_dir = state_dir
        self.window_days = cfg_window
        self.mentor_plays: dict[str, int] = {}
        self._previous: dict[str, int] = self._load_mentors()

    def _state_path(self, session_id: str) -> Path:
        return self.state_dir / "sessions" / f"{session_id}.json"

    def _load_mentors(self) -> dict[str, int]:
        try:
            data = json.loads((self.state_dir / "mentors.json").read_text())
            return {str(k): int(v) for k, v in data.items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def save_mentors(self) -> None:
        write_json(self.state_dir / "mentors.json", self.mentor_plays)

    def forget(self, session_id: str) -> None:
        with contextlib.suppress(OSError):
            self._state_path(session_id).unlink()

    async def remembered(self, session: SessionObjects) -> Remembered | None:
        path = self._state_path(session.session_id)
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            data = json.loads(path.read_text())
            return Remembered(
                datetime.fromisoformat(data["published_at"]),
                f"state ({data.get('published_from', '?')})",
                tuple(data.get("mentee_ids", ())),
                data.get("mentor_id"),
            )
        found = await self._from_metadata(session)
        if found is None:
            master = session.find(MASTER)
            if master is None:
                return None
            found = Remembered(master.last_modified, "master.last_modified", (), None)
        write_json(
            path,
            {
                "published_at": found.published_at.isoformat(),
                "published_from": found.published_from,
                "mentee_ids": list(found.mentee_ids),
                "mentor_id": found.mentor_id,
            },
        )
        return found

    async def _from_metadata(self, session: SessionObjects) -> Remembered | None:
        if session.find(METADATA) is None:
            return None
        try:
            data: Any = json.loads(await self.store.get(session.key(METADATA)))
            ended = datetime.fromisoformat(str(data["ended_at"]))
        except (ObjectArchived, ObjectNotFound, ValueError, KeyError, TypeError):
            return None
        except StorageError as exc:
            logger.warning("session %s: cannot read metadata.json: %s", session.session_id, exc)
            return None
        people = [p for p in data.get("participants", []) if isinstance(p, dict)]
        mentees = tuple(str(p["user_id"]) for p in people if p.get("role") == "mentee")
        mentors = [str(p["user_id"]) for p in people if p.get("role") == "mentor"]
        return Remembered(ended, "metadata.ended_at", mentees, mentors[0] if mentors else None)

    async def facts(self, session: SessionObjects, now: datetime) -> SessionFacts | None:
        known = await self.remembered(session)
        if known is None:
            return None
        now_s = now.timestamp()
        summary = await self.plays.summary(session.session_id, now_s)
        in_window = sum(
            1 for p in summary.recent if now_s - self.window_days * DAY_S <= p.at <= now_s
        )
        mentee_at = [
            p.at for p in summary.recent if p.user_id in known.mentee_ids and p.at <= now_s
        ]
        mentee_days = (now_s - max(mentee_at)) / DAY_S if mentee_at else None
        mentor_plays = 0
        if known.mentor_id:
            mentor_plays = self.mentor_plays.get(known.mentor_id, 0)
            mentor_plays = max(mentor_plays, self._previous.get(known.mentor_id, 0))
            self.mentor_plays[known.mentor_id] = (
                self.mentor_plays.get(known.mentor_id, 0) + in_window
            )
        return SessionFacts(
            session_id=session.session_id,
            published_at=known.published_at,
            published_from=known.published_from,
            plays_in_window=in_window,
            mentee_watched_days_ago=mentee_days,
            mentor_id=known.mentor_id,
            mentor_plays=mentor_plays,
        )


def write_json(path: Path, data: object) -> None:
    """Write JSON atomically (temp file, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(temp, path)

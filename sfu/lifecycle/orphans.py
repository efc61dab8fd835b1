"""`sfu lifecycle orphans [--apply]`: what storage and the recordings volume hold that nothing
will ever use. Reported by default; deleted only with `--apply`, each deletion audited.

Kinds (`Orphan.kind`):
- `no_manifest`: a session folder under `vod/sessions/` with no master.m3u8 (segments of a
  publish that never finished, or the rest of a deletion that was killed);
- `no_metadata`: a session with master.m3u8 but no metadata.json (publish writes
  metadata.json before master.m3u8, so this is never a publish in progress);
- `missing_segments`: a readable index.m3u8 (or master.m3u8) naming objects that are not there
  (archived playlists cannot be read and are not checked);
- `stale_upload`: an incomplete multipart upload (S3) or a staged write (local store's temp
  folder) older than a day;
- `recording`: a folder in the recordings root that was never handed off (no queued.json),
  last written more than `orphan_after_days` ago.
The first three are whole sessions: `--apply` deletes every object of the session,
master.m3u8 first.

What is never touched, whatever `--now` says:
- a session whose newest object is younger than `PUBLISHING_GRACE_S` (an hour) on the real
  clock: it may be being published right now;
- a session whose recording folder holds queued.json but not yet published.json: its VOD job
  is queued or running and may (re)publish it;
- a recording whose heartbeat (or newest file) is younger than the recorder's orphan time
  (`SFU_RECORDING_ORPHAN_S`) on the real clock: it is live; and any recording with
  queued.json (the VOD worker and the retention sweep own it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sfu.config.settings import Settings
from sfu.lifecycle.audit import audit_orphan
from sfu.lifecycle.catalogue import MASTER, METADATA, SessionObjects, sessions
from sfu.lifecycle.rules import DAY_S
from sfu.lifecycle.run_command import parse_now
from sfu.recording.session import QUEUED_MARKER, last_sign_of_life
from sfu.storage import LocalStore, ObjectStore, StorageError, store_from_settings

logger = logging.getLogger(__name__)

PUBLISHING_GRACE_S = 3600.0
STALE_UPLOAD_S = DAY_S
PUBLISHED_MARKER = "published.json"


@dataclass(frozen=True, slots=True)
class Orphan:
    kind: str
    target: str
    """A session id, an object key (uploads), or a recording folder."""
    detail: str
    age_days: float


class OrphanFinder:
    def __init__(self, store: ObjectStore, settings: Settings, now: datetime) -> None:
        self.store = store
        self.recordings = settings.recording.root
        self.live_s = settings.recording.orphan_s
        self.orphan_after_days = settings.lifecycle.orphan_after_days
        self.now = now
        self.wall = time.time()

    def _busy(self, session_id: str) -> bool:
        folder = self.recordings / session_id
        return (folder / QUEUED_MARKER).exists() and not (folder / PUBLISHED_MARKER).exists()

    async def find(self) -> list[Orphan]:
        found: list[Orphan] = []
        async for session in sessions(self.store):
            orphan = await self._session(session)
            if orphan is not None:
                found.append(orphan)
        found.extend(await self._uploads())
        found.extend(self._recordings())
        return found

    async def _session(self, session: SessionObjects) -> Orphan | None:
        newest = max(o.last_modified for o in session.objects)
        if self.wall - newest.timestamp() < PUBLISHING_GRACE_S or self._busy(session.session_id):
            return None
        age = (self.now - newest).total_seconds() / DAY_S
        sid = session.session_id
        if session.find(MASTER) is None:
            return Orphan("no_manifest", sid, f"{len(session.objects)} objects", age)
        if session.find(METADATA) is None:
            return Orphan("no_metadata", sid, f"{len(session.objects)} objects", age)
        keys = {o.key for o in session.objects}
        for info in session.objects:
            if not info.key.endswith(".m3u8") or info.tier.value == "Archive":
                continue
            try:
                text = (await self.store.get(info.key)).decode("utf-8", "replace")
            except StorageError:
                continue
            folder = info.key.rsplit("/", 1)[0]
            for line in text.splitlines():
                line = line.strip()
                named = bool(line) and not line.startswith("#") and "://" not in line
                if named and f"{folder}/{line}" not in keys:
                    return Orphan("missing_segments", sid, f"{info.key} names {line}", age)
        return None

    async def _uploads(self) -> list[Orphan]:
        before = self.wall - STALE_UPLOAD_S
        if isinstance(self.store, LocalStore):
            files = await asyncio.to_thread(self.store.stale_temp_files, before)
            ages = [(p, (self.wall - p.stat().st_mtime) / DAY_S) for p in files]
            return [Orphan("stale_upload", str(p), "staged write", age) for p, age in ages]
        from sfu.storage.s3 import S3Store

        if not isinstance(self.store, S3Store):
            return []
        cutoff = datetime.fromtimestamp(before).astimezone()
        uploads = await asyncio.to_thread(self.store.stale_uploads, cutoff)
        return [
            Orphan("stale_upload", key, f"upload {upload_id}", (self.wall - at.timestamp()) / DAY_S)
            for key, upload_id, at in uploads
        ]

    def _recordings(self) -> list[Orphan]:
        found: list[Orphan] = []
        if not self.recordings.is_dir():
            return found
        limit = self.now - timedelta(days=self.orphan_after_days)
        for folder in sorted(p for p in self.recordings.iterdir() if p.is_dir()):
            if (folder / QUEUED_MARKER).exists():
                continue
            last = last_sign_of_life(folder)
            if self.wall - last < self.live_s:
                continue  # live
            if datetime.fromtimestamp(last, self.now.tzinfo) < limit:
                age = (self.now.timestamp() - last) / DAY_S
                found.append(Orphan("recording", str(folder), "never handed off", age))
        return found

    async def delete(self, orphan: Orphan) -> None:
        if orphan.kind == "recording":
            await asyncio.to_thread(shutil.rmtree, orphan.target, True)
        elif orphan.kind == "stale_upload":
            if isinstance(self.store, LocalStore):
                with contextlib.suppress(OSError):
                    Path(orphan.target).unlink()
            else:
                from sfu.storage.s3 import S3Store

                assert isinstance(self.store, S3Store)
                upload_id = orphan.detail.split(" ", 1)[1]
                await asyncio.to_thread(self.store.abort_upload, orphan.target, upload_id)
        else:
            async for session in sessions(self.store, only=orphan.target):
                master = session.key(MASTER)
                ordered = sorted(session.objects, key=lambda o: o.key != master)
                for info in ordered:
                    await self.store.delete(info.key)
        audit_orphan(orphan.kind, orphan.target)


def main(args: argparse.Namespace, settings: Settings) -> int:
    try:
        now = parse_now(args.now)
    except ValueError as exc:
        print(f"--now: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_main(args, settings, now))


async def _main(args: argparse.Namespace, settings: Settings, now: datetime) -> int:
    store = store_from_settings(settings)
    try:
        finder = OrphanFinder(store, settings, now)
        orphans = await finder.find()
        deleted = 0
        if args.apply:
            for orphan in orphans:
                await finder.delete(orphan)
                deleted += 1
    finally:
        await store.close()
    if args.json:
        print(json.dumps({"orphans": [asdict(o) for o in orphans], "deleted": deleted}))
    else:
        for o in orphans:
            print(f"{o.kind:17} {o.target}  ({o.detail}, {o.age_days:.1f} days)")
        verb = "deleted" if args.apply else "found (use --apply to delete)"
        print(f"{len(orphans)} orphans {verb}")
    return 0

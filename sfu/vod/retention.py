"""RecordingsRetention: a session's raw recording is deleted once its VOD is published and the
retention time has passed, so the recordings volume holds only what still needs rendering.

A session's folder under `SFU_RECORDINGS_DIR` (its manifest and Matroska tracks) is only needed
until its VOD is published. Once the job is acknowledged, the worker writes `published.json`
into it; with `SFU_RECORDINGS_RETENTION_H` 0 it deletes the folder at once. A sweep (when a
worker starts, then at most every `SWEEP_INTERVAL_S`, between jobs) deletes every folder
whose `published.json` is older than the retention time, and gives the marker to a folder the
queue knows as done but that has none (a worker killed between the ack and the marker), so its
retention starts then. Nothing else is ever deleted: sessions still recording, queued, being
rendered, or dead (an operator may fix and requeue those) stay where they are.

The marker's age is its mtime against this host's clock, as for the recordings' heartbeats.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from sfu.recording.job_queue import JobQueue
from sfu.recording.session import QUEUED_MARKER, write_marker

logger = logging.getLogger(__name__)

PUBLISHED_MARKER = "published.json"
SWEEP_INTERVAL_S = 300.0


def mark_published(session_dir: Path, now: float) -> None:
    """Record durably that the session's VOD is published (`published.json`)."""
    write_marker(session_dir, PUBLISHED_MARKER, "published_at", now)


class RecordingsRetention:
    def __init__(
        self,
        root: Path,
        queue: JobQueue,
        retention_s: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retention_s < 0:
            raise ValueError(f"retention must not be negative, got {retention_s}")
        self.root = root
        self.queue = queue
        self.retention_s = retention_s
        self._clock = clock
        self._last_sweep: float | None = None

    async def published(self, session_id: str) -> bool:
        """After the job's ack: mark the session published; delete it now if retention is 0.
        True if its folder was deleted."""
        session_dir = self.root / session_id
        if not session_dir.is_dir():
            return False
        await asyncio.to_thread(mark_published, session_dir, self._clock())
        if self.retention_s == 0:
            return await self._delete(session_dir)
        return False

    async def sweep_if_due(self) -> list[str]:
        """`sweep` if the last one is `SWEEP_INTERVAL_S` old (or there was none)."""
        now = time.monotonic()
        if self._last_sweep is not None and now - self._last_sweep < SWEEP_INTERVAL_S:
            return []
        self._last_sweep = now
        return await self.sweep()

    async def sweep(self) -> list[str]:
        """Delete published sessions past the retention time; mark those the queue knows as
        done but that have no marker. The ids deleted. Queue errors surface."""
        expired, unmarked = await asyncio.to_thread(self._scan, self._clock())
        deleted = [d.name for d in expired if await self._delete(d)]
        for session_dir in unmarked:
            try:
                state = await self.queue.state(session_dir.name)
            except ValueError:  # not a name the queue can hold: not one of its sessions
                continue
            if state != "done":
                continue
            logger.info("recordings: %s is published but had no marker", session_dir.name)
            if await self.published(session_dir.name):
                deleted.append(session_dir.name)
        if deleted:
            logger.info("recordings: deleted %d published sessions: %s", len(deleted), deleted)
        return deleted

    def _scan(self, now: float) -> tuple[list[Path], list[Path]]:
        """(folders published longer ago than the retention, queued folders with no marker)."""
        expired: list[Path] = []
        unmarked: list[Path] = []
        if not self.root.is_dir():
            return expired, unmarked
        for session_dir in sorted(self.root.iterdir()):
            if session_dir.is_symlink() or not session_dir.is_dir():
                continue
            try:
                marked = (session_dir / PUBLISHED_MARKER).stat().st_mtime
            except FileNotFoundError:
                if (session_dir / QUEUED_MARKER).exists():
                    unmarked.append(session_dir)
                continue
            except OSError as exc:
                logger.warning("recordings: cannot read %s: %s", session_dir, exc)
                continue
            if now - marked >= self.retention_s:
                expired.append(session_dir)
        return expired, unmarked

    async def _delete(self, session_dir: Path) -> bool:
        try:
            await asyncio.to_thread(shutil.rmtree, session_dir)
        except FileNotFoundError:
            return False  # another worker's sweep was first
        except OSError as exc:
            logger.warning("recordings: cannot delete %s: %s", session_dir, exc)
            return False
        logger.info("recordings: deleted published session %s", session_dir.name)
        return True

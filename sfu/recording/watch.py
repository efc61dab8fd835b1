"""RecordingWatch: heartbeats for the sessions this node records, and the adoption of sessions
abandoned by a node that stopped, on a recordings directory several SFU nodes may share.

Every `orphan_s / 6` seconds the heartbeat file of each live session is touched; every
`orphan_s / 2` seconds the directory is scanned and each session still in "recording" whose
last sign of life is older than `orphan_s` (and that is not live here) is finalised and queued,
as is each finalised session left unqueued for longer than that. At start-up (`recover_at_start`)
the same node's own leftovers are taken at once: whatever this node id recorded before it
restarted cannot be live. In the embedded single-node set-up the node id is the host name, so
a crashed SFU's sessions are recovered when it starts again, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from sfu.recording.handoff import JobQueue, recover_unfinished, recover_unqueued
from sfu.recording.session import RecordingSession

logger = logging.getLogger(__name__)

LiveSessions = Callable[[], Iterable[RecordingSession]]


class RecordingWatch:
    def __init__(
        self,
        root: Path,
        queue: JobQueue,
        live_sessions: LiveSessions,
        *,
        node_id: str,
        orphan_s: float,
    ) -> None:
        self.root = root
        self.queue = queue
        self.node_id = node_id
        self.orphan_s = orphan_s
        self._live_sessions = live_sessions
        self._task: asyncio.Task[None] | None = None
        self.adopted: list[str] = []

    def _live(self) -> list[RecordingSession]:
        return list(self._live_sessions())

    async def recover_at_start(self) -> tuple[list[str], list[str]]:
        """This node's leftovers and sessions abandoned by others; then unqueued finalised
        sessions. Returns (recovered, queued)."""
        live = frozenset(s.manifest.session_id for s in self._live())
        recovered = await recover_unfinished(
            self.root, self.queue, node_id=self.node_id, stale_after_s=self.orphan_s, live=live
        )
        queued = await recover_unqueued(self.root, self.queue)
        return recovered, queued

    async def beat(self) -> None:
        """Touch the heartbeat of every live session (in a thread: the volume may be NFS)."""
        sessions = self._live()
        if not sessions:
            return

        def touch_all() -> None:
            for session in sessions:
                try:
                    session.heartbeat()
                except OSError as exc:
                    logger.warning("recording %s: heartbeat failed: %s", session.dir.name, exc)

        await asyncio.to_thread(touch_all)

    async def scan(self) -> list[str]:
        """Adopt sessions abandoned by other nodes; the ids finalised or queued here."""
        live = frozenset(s.manifest.session_id for s in self._live())
        adopted = await recover_unfinished(
            self.root, self.queue, stale_after_s=self.orphan_s, live=live
        )
        adopted += await recover_unqueued(self.root, self.queue, stale_after_s=self.orphan_s)
        if adopted:
            logger.warning("recording: adopted abandoned sessions %s", adopted)
            self.adopted += adopted
        return adopted

    async def _run(self) -> None:
        beat_s = self.orphan_s / 6
        ticks_per_scan = 3
        tick = 0
        while True:
            await asyncio.sleep(beat_s)
            tick += 1
            try:
                await self.beat()
                if tick % ticks_per_scan == 0:
                    await self.scan()
            except (OSError, ConnectionError, ValueError) as exc:
                logger.error("recording watch: %s", exc)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="recording-watch")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

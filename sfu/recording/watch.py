"""RecordingWatch: heartbeats for the sessions this node records, and the adoption of sessions
abandoned by a node that stopped, on a recordings directory several SFU nodes may share.

Every `orphan_s / 6` seconds the heartbeat file of each live session is touched; every
`orphan_s / 2` seconds the directory is scanned and each session still in "recording" whose
last sign of life is older than `orphan_s` (and that is not live here) is finalised and queued,
as is each finalised session left unqueued for longer than that. At start-up (`recover_at_start`)
the same node's own leftovers are taken at once: whatever this node id recorded before it
restarted cannot be live. In the embedded single-node set-up the node id is the host name, so
a crashed SFU's sessions are recovered when it starts again, as before.

With Redis, the node also holds a lease (`NodeLeases`, renewed every `orphan_s / 6` seconds by
a task of its own that never touches the volume), and a stale session is adopted only if its
node holds none: a node whose writes to the volume stall keeps its sessions. If the leases
cannot be read, no other node's session is adopted until they can.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path

from sfu.recording.job_queue import JobQueue
from sfu.recording.leases import NodeLeases, NoNodeLeases
from sfu.recording.recovery import recover_unfinished, recover_unqueued
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
        leases: NodeLeases | None = None,
    ) -> None:
        self.root = root
        self.queue = queue
        self.node_id = node_id
        self.orphan_s = orphan_s
        self.leases: NodeLeases = leases or NoNodeLeases()
        self._live_sessions = live_sessions
        self._tasks: list[asyncio.Task[None]] = []
        self.adopted: list[str] = []

    def _live(self) -> list[RecordingSession]:
        return list(self._live_sessions())

    async def recover_at_start(self) -> tuple[list[str], list[str]]:
        """This node's leftovers and sessions abandoned by others; then unqueued finalised
        sessions. Returns (recovered, queued)."""
        live = frozenset(s.manifest.session_id for s in self._live())
        await self._renew()
        stale_after_s = self.orphan_s
        try:
            alive = await self.leases.alive()
        except ConnectionError as exc:
            logger.error("recording: node leases unreadable (%s): only this node's taken", exc)
            alive, stale_after_s = frozenset(), math.inf
        recovered = await recover_unfinished(
            self.root,
            self.queue,
            node_id=self.node_id,
            stale_after_s=stale_after_s,
            live=live,
            alive_nodes=alive,
        )
        queued = await recover_unqueued(self.root, self.queue)
        return recovered, queued

    async def _renew(self) -> None:
        """Renew this node's lease; a failure is logged (the lease expires by itself)."""
        try:
            await self.leases.renew()
        except ConnectionError as exc:
            logger.error("recording: %s", exc)

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
        adopted: list[str] = []
        try:
            alive = await self.leases.alive()
        except ConnectionError as exc:
            logger.error("recording watch: node leases unreadable (%s): no adoption now", exc)
        else:
            # This node's own sessions that are not live (a room whose finalising failed, say
            # on a full disk) are taken once stale, although this node holds its lease.
            adopted = await recover_unfinished(
                self.root,
                self.queue,
                stale_after_s=self.orphan_s,
                live=live,
                alive_nodes=alive - {self.node_id},
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

    async def _hold_lease(self) -> None:
        """Renew this node's lease, whatever the volume does (its own task)."""
        while True:
            await asyncio.sleep(self.orphan_s / 6)
            await self._renew()

    def start(self) -> None:
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._run(), name="recording-watch"),
                loop.create_task(self._hold_lease(), name="recording-lease"),
            ]

    async def close(self) -> None:
        """Stop the tasks and give the lease up (this node's sessions are finalised by their
        rooms on the way out). Idempotent."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if tasks:
            await self.leases.release()

"""BatchDrain: one writer task per worker thread that drains every recorder's queue in one hop.

Every FLUSH_INTERVAL_S (or at once when a recorder's queue is long, or one closes), the drain
takes each registered recorder's queued packets on the event loop and hands all of them to its
executor as ONE job; the worker thread assembles and muxes recorder after recorder. A recorded
room has four tracks; with a hop per track and batch, waking the worker thread and passing the
GIL back and forth cost more than the muxing. One recorder's failing batch is logged and never
keeps the others from being written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import Executor
from typing import Protocol

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.25
"""How long packets wait in a queue at most: what a killed process can lose on top of the
cluster in progress."""


class Drainable(Protocol):
    """What a BatchDrain needs of a recorder (TrackRecorder)."""

    def take_batch(self) -> object | None:
        """Event loop: the queued work, or None when there is nothing to write."""

    def process_batch(self, batch: object) -> int:
        """Worker thread: write `batch`; frames written."""

    def batch_done(self, written: int) -> None:
        """Event loop: after `process_batch` (metrics, keyframe requests)."""


def _process_all(jobs: list[tuple[Drainable, object]]) -> list[int]:
    written: list[int] = []
    for recorder, batch in jobs:
        try:
            written.append(recorder.process_batch(batch))
        except Exception:
            logger.exception("recorder %r: writing a batch failed", recorder)
            written.append(0)
    return written


class BatchDrain:
    def __init__(self, executor: Executor, loop: asyncio.AbstractEventLoop) -> None:
        self.executor = executor
        self.loop = loop
        self.recorders: list[Drainable] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def add(self, recorder: Drainable) -> None:
        if recorder not in self.recorders:
            self.recorders.append(recorder)
        if self._task is None or self._task.done():
            self._task = self.loop.create_task(self._run(), name="recording-drain")

    def wake(self) -> None:
        if not self._wakeup.is_set():
            self._wakeup.set()

    async def remove(self, recorder: Drainable) -> None:
        """Stop draining `recorder`; returns once no batch of it is being written."""
        with contextlib.suppress(ValueError):
            self.recorders.remove(recorder)
        await self._idle.wait()

    async def _run(self) -> None:
        while self.recorders:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), FLUSH_INTERVAL_S)
            self._wakeup.clear()
            jobs: list[tuple[Drainable, object]] = []
            for recorder in list(self.recorders):
                batch = recorder.take_batch()
                if batch is not None:
                    jobs.append((recorder, batch))
            if not jobs:
                continue
            self._idle.clear()
            try:
                written = await self.loop.run_in_executor(self.executor, _process_all, jobs)
            finally:
                self._idle.set()
            for (recorder, _), count in zip(jobs, written, strict=True):
                try:
                    recorder.batch_done(count)
                except Exception:
                    logger.exception("recorder %r: after a batch", recorder)

    async def close(self) -> None:
        self.recorders.clear()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


_drains: dict[Executor, BatchDrain] = {}


def drain_for(executor: Executor) -> BatchDrain:
    """The drain of `executor` on the running loop (a new one when the loop changed)."""
    loop = asyncio.get_running_loop()
    drain = _drains.get(executor)
    if drain is None or drain.loop is not loop or drain.loop.is_closed():
        drain = _drains[executor] = BatchDrain(executor, loop)
    return drain

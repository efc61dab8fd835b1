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
import time
import weakref
from concurrent.futures import Executor
from typing import Protocol

from sfu import metrics
from sfu.core.waits import wait_set

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.25
"""How long packets wait in a queue at most: what a killed process can lose on top of the
cluster in progress."""

FAILURE_LOG_INTERVAL_S = 30.0
"""A recorder whose batches keep raising is logged once with the traceback, then at most once
per this many seconds with a count, instead of four times a second. (A failed write, such as
a full disk, does not get here: TrackRecorder closes its file and its owner starts another.)"""


class Drainable(Protocol):
    """What a BatchDrain needs of a recorder (TrackRecorder)."""

    def take_batch(self) -> object | None:
        """Event loop: the queued work, or None when there is nothing to write."""

    def process_batch(self, batch: object) -> int:
        """Worker thread: write `batch`; frames written."""

    def batch_done(self, written: int) -> None:
        """Event loop: after `process_batch` (metrics, keyframe requests)."""


class FailureLog:
    """Throttled logging of one recorder's batches that keep raising (worker thread only)."""

    __slots__ = ("_failed_since_log", "_last_log")

    def __init__(self) -> None:
        self._last_log: float | None = None
        self._failed_since_log = 0

    def failed(self, recorder: Drainable, exc: Exception) -> None:
        metrics.RECORDING_WRITE_ERRORS.inc()
        now = time.monotonic()
        if self._last_log is None:
            self._last_log = now
            logger.error("recorder %r: writing a batch failed", recorder, exc_info=exc)
            return
        self._failed_since_log += 1
        if now - self._last_log >= FAILURE_LOG_INTERVAL_S:
            logger.error(
                "recorder %r: %d more batches failed in %.0f s, the last with: %s",
                recorder,
                self._failed_since_log,
                now - self._last_log,
                exc,
            )
            self._last_log, self._failed_since_log = now, 0

    def succeeded(self, recorder: Drainable) -> None:
        if self._last_log is not None:
            logger.warning(
                "recorder %r: writing again (%d batches failed since the last report)",
                recorder,
                self._failed_since_log,
            )
            self._last_log, self._failed_since_log = None, 0


def _process_all(
    jobs: list[tuple[Drainable, object]], failures: weakref.WeakKeyDictionary[Drainable, FailureLog]
) -> list[int]:
    written: list[int] = []
    for recorder, batch in jobs:
        log = failures.get(recorder)
        try:
            written.append(recorder.process_batch(batch))
        except Exception as exc:  # noqa: BLE001 - logged with its traceback by FailureLog; one
            # recorder's failure must never stop the others' batches
            if log is None:
                log = failures[recorder] = FailureLog()
            log.failed(recorder, exc)
            written.append(0)
        else:
            if log is not None:
                log.succeeded(recorder)
                del failures[recorder]
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
        self._failures: weakref.WeakKeyDictionary[Drainable, FailureLog] = (
            weakref.WeakKeyDictionary()
        )  # the worker thread's only

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
            await wait_set(self._wakeup, FLUSH_INTERVAL_S)
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
                written = await self.loop.run_in_executor(
                    self.executor, _process_all, jobs, self._failures
                )
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

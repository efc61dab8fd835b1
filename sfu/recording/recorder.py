"""TrackRecorder: a TrackFanout tap that records one published track to one Matroska file.

The tap only appends to a bounded queue (drops are counted, logged once per overflow, and make
video wait for the next keyframe); a writer task drains it in batches, and depayloading and
muxing run in a worker thread so file I/O never stalls the event loop. A writer that stalls
(a hung disk) therefore costs recorded packets, never forwarding time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Protocol

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from sfu import metrics
from sfu.recording.assembler import Frame, FrameAssembler
from sfu.recording.bitstream import codec_name
from sfu.recording.writer import MatroskaWriter

logger = logging.getLogger(__name__)

KEYFRAME_RETRY_S = 1.0
FLUSH_INTERVAL_S = 0.25
"""How long packets wait in the queue at most: what a killed process can lose on top of the
cluster in progress."""
BATCH_WAKE = 256
"""A queue this long is drained at once instead of at the next interval."""
_Item = tuple[int, int, bool, bytes, float]


class FrameWriter(Protocol):
    """Where the recorder's worker thread puts assembled frames (`MatroskaWriter`)."""

    frames_written: int
    frames_skipped: int
    first_arrival: float | None

    @property
    def opened(self) -> bool: ...

    def write(self, frame: Frame) -> bool: ...

    def close(self) -> None: ...


class TrackRecorder:
    def __init__(
        self,
        path: Path,
        codec: str,
        *,
        request_keyframe: Callable[[], None] | None = None,
        on_first_frame: Callable[[float], None] | None = None,
        queue_limit: int = 2048,
        reorder_window: int = 100,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.time,
        writer: FrameWriter | None = None,
    ) -> None:
        """`writer`: where frames go (default: a MatroskaWriter on `path`)."""
        self.path = path
        self.codec = codec_name(codec)
        self.kind = "audio" if self.codec == "opus" else "video"
        self.request_keyframe = request_keyframe
        self.on_first_frame = on_first_frame
        self.queue_limit = queue_limit
        self.packets_dropped = 0
        self._dropped_counted = 0
        self.packets_ignored = 0  # another codec, or padding
        self._clock = clock
        self._executor = executor
        self._queue: deque[_Item] = deque()
        self._overflowed = False
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._lock = threading.Lock()  # the assembler and the writer belong to one thread at a time
        self._assembler = FrameAssembler(self.codec, window=reorder_window)
        self._writer: FrameWriter = writer or MatroskaWriter(path, self.codec)
        self._reported_first = False
        self._dropped_metric = metrics.RECORDING_PACKETS_DROPPED.labels(self.kind)
        self._frames_metric = metrics.RECORDING_FRAMES_WRITTEN.labels(self.kind)

    # -- state ---------------------------------------------------------------------------------

    @property
    def frames_written(self) -> int:
        return self._writer.frames_written

    @property
    def first_arrival(self) -> float | None:
        """Wall-clock arrival of the first frame in the file (its pts 0)."""
        return self._writer.first_arrival

    @property
    def stats(self) -> dict[str, int]:
        s = self._assembler.stats
        return {
            "frames_written": self._writer.frames_written,
            "frames_dropped": s.frames_dropped + self._writer.frames_skipped,
            "packets_lost": s.packets_lost,
            "packets_late": s.packets_late,
            "packets_dropped": self.packets_dropped,
            "packets_ignored": self.packets_ignored,
        }

    # -- the tap (event loop, hot path) --------------------------------------------------------

    def tap(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        """`RtpTap`: never blocks; a full queue drops the packet and counts it."""
        if self._closing or not packet.payload or codec.name.lower() != self.codec:
            self.packets_ignored += 1
            return
        if len(self._queue) >= self.queue_limit:
            self.packets_dropped += 1
            if not self._overflowed:
                self._overflowed = True
                logger.warning(
                    "recorder %s: writer behind, queue full (%d packets): dropping packets",
                    self.path,
                    self.queue_limit,
                )
            return
        self._queue.append(
            (
                packet.sequence_number,
                packet.timestamp,
                bool(packet.marker),
                packet.payload,
                self._clock(),
            )
        )
        if len(self._queue) >= BATCH_WAKE and not self._wakeup.is_set():
            self._wakeup.set()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer task (needs a running loop) and ask the publisher for a keyframe."""
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(self._run())
            self._ask_keyframe()

    async def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, flush and finalize the file. Idempotent."""
        if self._closed:
            return
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                logger.warning("recorder %s: writer did not drain in %.0fs", self.path, timeout)
                self._task.cancel()
            except Exception:
                logger.exception("recorder %s: writer task failed", self.path)
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self._in_thread(self._finish), timeout)
        except TimeoutError:
            logger.error("recorder %s: finalizing timed out", self.path)
        self._report_first_frame()
        logger.info("recorder %s closed: %s", self.path, self.stats)

    # -- writer side ---------------------------------------------------------------------------

    async def _run(self) -> None:
        """Drain the queue in batches: every FLUSH_INTERVAL_S, or at once when it holds
        BATCH_WAKE packets or the recorder closes. One thread hop per batch, not per packet."""
        loop = asyncio.get_running_loop()
        last_ask = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), FLUSH_INTERVAL_S)
            self._wakeup.clear()
            if (
                self._assembler.waiting_keyframe or not self._writer.opened
            ) and loop.time() - last_ask >= KEYFRAME_RETRY_S:
                last_ask = loop.time()
                self._ask_keyframe()
            batch = list(self._queue)
            self._queue.clear()
            overflowed, self._overflowed = self._overflowed, False
            if overflowed:
                self._dropped_metric.inc(self.packets_dropped - self._dropped_counted)
                self._dropped_counted = self.packets_dropped
            if batch or overflowed:
                try:
                    written = await self._in_thread(self._process, batch, overflowed)
                except Exception:
                    logger.exception("recorder %s: writing a batch failed", self.path)
                    written = 0
                self._frames_metric.inc(written)
                self._report_first_frame()
                if self._assembler.keyframe_needed:
                    self._assembler.keyframe_needed = False
                    last_ask = loop.time()
                    self._ask_keyframe()
            if self._closing and not self._queue:
                return

    def _process(self, batch: list[_Item], overflowed: bool) -> int:
        """Worker thread: assemble and mux one batch; returns frames written."""
        written = 0
        with self._lock:
            for seq, timestamp, marker, payload, arrival in batch:
                for frame in self._assembler.push(seq, timestamp, marker, payload, arrival):
                    written += self._writer.write(frame)
            if overflowed:
                self._assembler.reset()
        return written

    def _finish(self) -> None:
        with self._lock:
            try:
                for frame in self._assembler.flush():
                    self._writer.write(frame)
            finally:
                self._writer.close()

    async def _in_thread(self, func: Callable[..., object], *args: object) -> int:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._executor, func, *args)
        return result if isinstance(result, int) else 0

    def _ask_keyframe(self) -> None:
        if self.kind == "video" and self.request_keyframe is not None and not self._closing:
            try:
                self.request_keyframe()
            except Exception:
                logger.exception("recorder %s: keyframe request failed", self.path)

    def _report_first_frame(self) -> None:
        first = self._writer.first_arrival
        if not self._reported_first and first is not None and self.on_first_frame is not None:
            self._reported_first = True
            self.on_first_frame(first)

"""TrackRecorder: a TrackFanout tap that records one published track to one Matroska file.

The tap only appends to a bounded queue (drops are counted, logged once per overflow, and make
video wait for the next keyframe); the process's BatchDrain (sfu/recording/drain.py) takes the
queues of all recorders every 250 ms and depayloading and muxing run in one worker thread, so
file I/O never stalls the event loop. A writer that stalls (a hung disk) therefore costs
recorded packets, never forwarding time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, cast

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from sfu import metrics
from sfu.recording.assembler import Frame, FrameAssembler, Item
from sfu.recording.bitstream import codec_name
from sfu.recording.drain import BatchDrain, drain_for
from sfu.recording.writer import MatroskaWriter

logger = logging.getLogger(__name__)

KEYFRAME_RETRY_S = 1.0
BATCH_WAKE = 256
"""A queue this long is drained at once instead of at the next interval."""

PR_SET_NAME = 15  # linux/prctl.h
RECORDER_THREAD = "sfu-recorder"
"""The recorder thread's name, also given to the OS thread: `top -H`, /proc/PID/task/*/comm
and the benchmarks tell its CPU apart from the event loop's."""

_shared_executor: ThreadPoolExecutor | None = None


def name_native_thread(name: str) -> None:
    """Name the calling OS thread (Linux prctl PR_SET_NAME, 15 bytes at most); a no-op where
    that is not available. Python 3.11 names only its own Thread objects."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        logger.debug("cannot name the OS thread %s", name)


def recording_executor() -> ThreadPoolExecutor:
    """The one worker thread every recorder of the process muxes in (unless given its own).

    One thread, not the loop's default pool: batches of different tracks would otherwise run
    in several threads at once and fight over the GIL with the event loop, costing more than
    the muxing itself. A file that blocks (a hung disk) holds every recording back, never the
    forwarding: the taps keep dropping into their bounded queues."""
    global _shared_executor
    if _shared_executor is None:
        _shared_executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=RECORDER_THREAD,
            initializer=name_native_thread,
            initargs=(RECORDER_THREAD,),
        )
    return _shared_executor


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
        on_failed: Callable[[], None] | None = None,
        queue_limit: int = 2048,
        reorder_window: int = 100,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.time,
        writer: FrameWriter | None = None,
    ) -> None:
        """`writer`: where frames go (default: a MatroskaWriter on `path`). `on_failed` is
        called once, on the event loop, when writing fails (a full disk): the file is closed
        as far as it can be and the recorder drops what comes next, so its owner can start a
        new file (sfu/rooms/recording.py)."""
        self.path = path
        self.codec = codec_name(codec)
        self.kind = "audio" if self.codec == "opus" else "video"
        self.request_keyframe = request_keyframe
        self.on_first_frame = on_first_frame
        self.on_failed = on_failed
        self.write_error: OSError | None = None  # set by the worker thread
        self._failure_reported = False
        self.queue_limit = queue_limit
        self.packets_dropped = 0
        self._dropped_counted = 0
        self.packets_ignored = 0  # another codec, or after close
        self._clock = clock
        self._executor = executor or recording_executor()
        self._queue: deque[Item] = deque()
        self._overflowed = False
        self._drain: BatchDrain | None = None
        self._accepted: RTCRtpCodecParameters | None = None
        self._last_ask = 0.0
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
        if self._closing:
            self.packets_ignored += 1
            return
        # Padding-only packets (empty payload) are queued too: a publisher that probes
        # bandwidth on the media SSRC (no RTX) numbers them in the same sequence, and leaving
        # them out would look like loss to the assembler, which skips them.
        if codec is not self._accepted:  # the codec object is the same for every packet
            if codec.name.lower() != self.codec:
                self.packets_ignored += 1
                return
            self._accepted = codec
        queue = self._queue
        if len(queue) >= self.queue_limit:
            self.packets_dropped += 1
            if not self._overflowed:
                self._overflowed = True
                logger.warning(
                    "recorder %s: writer behind, queue full (%d packets): dropping packets",
                    self.path,
                    self.queue_limit,
                )
            return
        queue.append(
            (
                packet.sequence_number,
                packet.timestamp,
                bool(packet.marker),
                packet.payload,
                self._clock(),
            )
        )
        if len(queue) >= BATCH_WAKE and self._drain is not None:
            self._drain.wake()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Join the drain of this recorder's executor (needs a running loop) and ask the
        publisher for a keyframe."""
        if self._drain is None and not self._closing:
            self._drain = drain_for(self._executor)
            self._drain.add(self)
            self._last_ask = asyncio.get_running_loop().time()
            self._ask_keyframe()

    async def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, flush and finalize the file. Idempotent."""
        if self._closed:
            return
        self._closing = True
        try:
            await asyncio.wait_for(self._write_rest(), timeout)
        except TimeoutError:
            logger.warning("recorder %s: writer did not drain in %.0fs", self.path, timeout)
        except Exception:
            logger.exception("recorder %s: writing the last batch failed", self.path)
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self._in_thread(self._finish), timeout)
        except TimeoutError:
            logger.error("recorder %s: finalizing timed out", self.path)
        self._report_first_frame()
        logger.info("recorder %s closed: %s", self.path, self.stats)

    async def _write_rest(self) -> None:
        if self._drain is not None:
            await self._drain.remove(self)
        batch = self.take_batch()
        if batch is not None:
            self.batch_done(await self._in_thread(self.process_batch, batch))

    def __repr__(self) -> str:
        return f"TrackRecorder({self.path})"

    # -- writer side (BatchDrain) --------------------------------------------------------------

    def take_batch(self) -> tuple[list[Item], bool] | None:
        """Event loop: the queued packets (and whether some were dropped), None if nothing."""
        now = asyncio.get_running_loop().time()
        if (
            self._assembler.waiting_keyframe or not self._writer.opened
        ) and now - self._last_ask >= KEYFRAME_RETRY_S:
            self._last_ask = now
            self._ask_keyframe()
        overflowed, self._overflowed = self._overflowed, False
        if overflowed:
            self._dropped_metric.inc(self.packets_dropped - self._dropped_counted)
            self._dropped_counted = self.packets_dropped
        if not self._queue and not overflowed:
            return None
        batch = list(self._queue)
        self._queue.clear()
        return batch, overflowed

    def process_batch(self, batch: object) -> int:
        """Worker thread: assemble and mux what `take_batch` returned; frames written."""
        items, overflowed = cast(tuple[list[Item], bool], batch)
        return self._process(items, overflowed)

    def batch_done(self, written: int) -> None:
        """Event loop, after a batch: metrics, first frame, keyframe after loss, failure."""
        self._frames_metric.inc(written)
        self._report_first_frame()
        if self.write_error is not None and not self._failure_reported:
            self._failure_reported = True
            if self.on_failed is not None:
                self.on_failed()
        if self._assembler.keyframe_needed:
            self._assembler.keyframe_needed = False
            self._last_ask = asyncio.get_running_loop().time()
            self._ask_keyframe()

    def _process(self, batch: list[Item], overflowed: bool) -> int:
        """Worker thread: assemble and mux one batch; returns frames written."""
        written = 0
        with self._lock:
            if self.write_error is not None:
                return 0  # the file is lost to its error: its owner starts another
            write = self._writer.write
            try:
                for frame in self._assembler.feed(batch):
                    written += write(frame)
            except OSError as exc:
                self._writer_failed(exc)
                return written
            if overflowed:
                self._assembler.reset()
        return written

    def _writer_failed(self, exc: OSError) -> None:
        """Worker thread: a write failed (ENOSPC, EIO). FFmpeg's output stays in error once a
        write has failed, even when space comes back, so this file takes nothing more; what
        it holds so far stays readable."""
        self.write_error = exc
        metrics.RECORDING_WRITE_ERRORS.inc()
        logger.error("recorder %s: writing failed, the file is closed: %s", self.path, exc)
        with contextlib.suppress(OSError):
            self._writer.close()

    def _finish(self) -> None:
        with self._lock:
            if self.write_error is not None:
                return
            try:
                for frame in self._assembler.flush():
                    self._writer.write(frame)
            except OSError as exc:
                self._writer_failed(exc)
            finally:
                with contextlib.suppress(OSError):
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

"""Run the renditions' encoders in parallel with the composition.

The calling thread composes (decode, canvas, audio mix), encodes the programme's AAC once for
all renditions, and hands every video frame and audio packet list to one thread per rendition
through a small bounded queue. Each encoder thread takes the items of its queue in programme
order, so what a rendition's muxer writes does not depend on thread timing (a job processed
twice stays byte-identical); PyAV releases the GIL inside swscale, the encoders and the muxer,
so x264 for every rendition and the composition run at the same time.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from sfu.vod.compose import AudioEvent, VideoEvent
from sfu.vod.hls import AudioEncoder, AudioPacket, RenditionEncoder

log = logging.getLogger(__name__)

QUEUE_EVENTS = 24  # per rendition: about 8 programme frames with their audio
PUT_POLL_S = 0.5  # how often a blocked producer checks that its consumer is still alive


@dataclass(frozen=True, slots=True)
class _End:
    """Sentinel: no more events; flush and close the rendition (or just stop, when aborted)."""


@dataclass(frozen=True, slots=True)
class _AudioPackets:
    packets: list[AudioPacket]  # shared by every lane: only read there


_Item = VideoEvent | _AudioPackets | _End


class EncoderStopped(RuntimeError):
    """An encoder thread ended before the programme did (its own error is chained)."""


class _Lane:
    """One rendition's queue and its encoder thread."""

    def __init__(self, encoder: RenditionEncoder, pool: ThreadPoolExecutor) -> None:
        self.encoder = encoder
        self.queue: queue.Queue[_Item] = queue.Queue(maxsize=QUEUE_EVENTS)
        self.frames_done = 0  # written by the encoder thread only
        self.closed = False
        self._aborted = threading.Event()
        self.future: Future[None] = pool.submit(self._run)

    def _run(self) -> None:
        enc = self.encoder
        # one item per iteration; the producer always ends the queue with _End
        while True:
            item = self.queue.get()
            if isinstance(item, _End):
                if not self._aborted.is_set():
                    enc.close()
                    self.closed = True
                return
            if self._aborted.is_set():
                continue
            if isinstance(item, VideoEvent):
                enc.encode_video(item.index, item.frame)
                self.frames_done = item.index + 1
            else:
                enc.mux_audio(item.packets)

    def put(self, item: _Item) -> None:
        """Queue `item`, waiting while the queue is full; raises EncoderStopped when the thread
        has ended (it failed) so the producer never waits on a dead consumer."""
        # bounded by the consumer: it either takes items or its future is done
        while True:
            if self.future.done():
                exc = self.future.exception()
                raise EncoderStopped(f"{self.encoder.rendition.name} encoder stopped") from exc
            try:
                self.queue.put(item, timeout=PUT_POLL_S)
                return
            except queue.Full:
                continue

    def abort(self) -> None:
        self._aborted.set()


class EncoderPipeline:
    """`feed` events in programme order, then `finish` (or `abort` on error)."""

    def __init__(self, encoders: list[RenditionEncoder]) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, len(encoders)), thread_name_prefix="vod-encode"
        )
        self._lanes = [_Lane(enc, self._pool) for enc in encoders]
        self._audio = AudioEncoder()

    @property
    def frames_done(self) -> int:
        """Programme frames every rendition has encoded."""
        return min((lane.frames_done for lane in self._lanes), default=0)

    def feed(self, event: VideoEvent | AudioEvent) -> None:
        item: _Item
        if isinstance(event, VideoEvent):
            item = event
        else:
            packets = self._audio.encode(event)
            if not packets:
                return
            item = _AudioPackets(packets)
        for lane in self._lanes:
            lane.put(item)

    def finish(self) -> None:
        """Flush the audio, end every queue, wait for the encoders to flush and close, raise
        what failed."""
        packets = self._audio.flush()
        for lane in self._lanes:
            if packets:
                lane.put(_AudioPackets(packets))
            lane.put(_End())
        try:
            for lane in self._lanes:
                lane.future.result()
        finally:
            self._pool.shutdown(wait=True)

    def abort(self) -> None:
        """Stop the threads without flushing and close every container that is still open."""
        for lane in self._lanes:
            lane.abort()
        for lane in self._lanes:
            if not lane.future.done():
                with contextlib.suppress(EncoderStopped):  # it ended meanwhile: nothing to stop
                    lane.put(_End())
        self._pool.shutdown(wait=True)
        for lane in self._lanes:
            if not lane.closed:
                lane.encoder.abort()

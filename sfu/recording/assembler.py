"""RTP packets of one stream → complete encoded frames, with a small reorder window.

Pure: no sockets, no clocks, no asyncio. Packets are grouped by RTP timestamp in sequence
order, as aiortc's JitterBuffer does; a frame ends on the marker bit (or when the next packet
carries another timestamp) and is depayloaded (VP8: the payload descriptor stripped, by the
same rules as aiortc's parser without building its object; H.264: aiortc's depayloader, Annex-B
NAL units). A missing packet is waited for while fewer than
`window` newer packets have arrived (late NACK retransmissions land in that window); after
that it is given up, the frame it belonged to is dropped and video waits for the next keyframe.

Cost matters: the recorder runs this for every packet of every recorded track, so the next
packet in sequence (nearly all of them) skips the reorder buffer, and a frame's payloads are
joined once.

Padding-only packets (an empty payload: bandwidth probing sent on the media SSRC when RTX is
not negotiated) take a sequence number and nothing else; they are not loss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from aiortc.codecs.h264 import h264_depayload

from sfu.media.keyframes import vp8_descriptor_size
from sfu.media.rewriter import SEQ_MOD
from sfu.recording.bitstream import can_resync, is_keyframe

logger = logging.getLogger(__name__)

MAX_JUMP = 3000  # a forward sequence jump larger than this is a restart, not loss
AUDIO_START_HOLD = 16  # audio packets buffered before the first one is chosen


class Frame(NamedTuple):
    """One encoded frame (a NamedTuple: immutable, and cheap to build once per frame)."""

    timestamp: int  # RTP timestamp (32 bits, not unwrapped)
    data: bytes  # depayloaded: VP8 frame, H.264 Annex-B access unit, or one Opus packet
    keyframe: bool
    arrival: float  # arrival time (caller's clock) of the frame's first packet


Item = tuple[int, int, bool, bytes, float]
"""One received packet as the recorder queues it: sequence number, RTP timestamp, marker,
payload, arrival."""


@dataclass(slots=True)
class _Packet:
    timestamp: int
    marker: bool
    payload: bytes
    arrival: float


@dataclass(slots=True)
class AssemblerStats:
    frames: int = 0
    frames_dropped: int = 0  # incomplete, undecodable, or before the (next) keyframe
    packets_lost: int = 0  # sequence numbers given up on
    packets_late: int = 0  # duplicates and packets after their slot was given up


def _vp8_data(payload: bytes) -> bytes:
    return payload[vp8_descriptor_size(payload) :]


def _identity(payload: bytes) -> bytes:
    return payload


_DEPAYLOADERS: dict[str, Callable[[bytes], bytes]] = {
    "vp8": _vp8_data,  # aiortc's vp8_depayload builds a descriptor object per packet
    "h264": h264_depayload,
    "opus": _identity,
}


class FrameAssembler:
    def __init__(self, codec: str, *, window: int = 100) -> None:
        self.codec = codec
        self.video = codec != "opus"
        self.window = window
        self.stats = AssemblerStats()
        self.keyframe_needed = False
        """Set when loss makes video wait for a keyframe; the owner asks for one and clears it."""
        self._depayload = _DEPAYLOADERS[codec]
        self._buffer: dict[int, _Packet] = {}
        self._next = 0  # extended sequence number of the next packet to consume
        self._highest = -1
        # The frame in progress (video): its payloads, RTP timestamp, first arrival, and
        # whether its last packet so far carried the marker bit.
        self._parts: list[bytes] = []
        self._part_ts = 0
        self._part_arrival = 0.0
        self._part_marker = False
        self._floor = 0  # packets below this are late
        self._started = False  # in sequence; False at the start and (video) after loss
        self._waiting_keyframe = self.video

    @property
    def waiting_keyframe(self) -> bool:
        return self._waiting_keyframe

    def reset(self) -> None:
        """Packets were lost outside the assembler (queue overflow): start over."""
        if self._parts:
            self.stats.frames_dropped += 1
        self._buffer.clear()
        self._parts = []
        self._highest = -1
        self._started = False
        if self.video:
            self._waiting_keyframe = True
            self.keyframe_needed = True

    def feed(self, items: Iterable[Item]) -> list[Frame]:
        """Add a batch of packets; return the frames they complete, oldest first.

        The common case, the next packet in sequence with nothing waiting for a gap, is
        consumed at once without touching the reorder buffer."""
        frames: list[Frame] = []
        consume = self._consume
        for seq, timestamp, marker, payload, arrival in items:
            if self._started and not self._buffer and seq == self._next & 0xFFFF:
                self._highest = self._next
                self._next += 1
                self._floor = self._next
                consume(timestamp, marker, payload, arrival, frames)
            else:
                self._push(seq, timestamp, marker, payload, arrival, frames)
        return frames

    def push(
        self, seq: int, timestamp: int, marker: bool, payload: bytes, arrival: float = 0.0
    ) -> list[Frame]:
        """Add one packet; return the frames it completes, oldest first."""
        return self.feed(((seq, timestamp, marker, payload, arrival),))

    def flush(self) -> list[Frame]:
        """End of stream: give up on every gap and return what completes."""
        frames: list[Frame] = []
        self._drain(frames, final=True)
        while self._started and self._buffer:
            self._give_up(frames)
        if self._parts:
            if self._part_marker:
                self._finish(frames)
            else:
                self.stats.frames_dropped += 1
                self._parts = []
        return frames

    # -- internals -----------------------------------------------------------------------------

    def _push(
        self,
        seq: int,
        timestamp: int,
        marker: bool,
        payload: bytes,
        arrival: float,
        frames: list[Frame],
    ) -> None:
        if self._highest < 0:
            ext = SEQ_MOD + seq  # headroom for packets slightly older than the first
            self._highest = ext
            self._floor = 0
        else:
            delta = (seq - self._highest + SEQ_MOD // 2) % SEQ_MOD - SEQ_MOD // 2
            ext = self._highest + delta
            if delta > MAX_JUMP:
                self.reset()
                self._push(seq, timestamp, marker, payload, arrival, frames)
                return
        if ext < self._floor or ext in self._buffer:
            self.stats.packets_late += 1
            return
        self._buffer[ext] = _Packet(timestamp, marker, payload, arrival)
        self._highest = max(self._highest, ext)
        self._drain(frames)
        while self._started and self._buffer and self._highest - self._next >= self.window:
            self._give_up(frames)

    def _start_point(self, final: bool) -> bool:
        """Not in sequence (start, or video after loss): pick the packet to start from."""
        if not self._buffer:
            return False
        if self.video:
            starts = [e for e, p in self._buffer.items() if can_resync(self.codec, p.payload)]
            if not starts:
                for ext in [e for e in self._buffer if e <= self._highest - self.window]:
                    del self._buffer[ext]
                return False
            first = min(starts)
        else:
            first = min(self._buffer)
            if not final and self._highest - first < min(self.window, AUDIO_START_HOLD):
                return False
        for ext in [e for e in self._buffer if e < first]:
            del self._buffer[ext]
        self._next = self._floor = first
        self._started = True
        return True

    def _give_up(self, frames: list[Frame]) -> None:
        oldest = min(self._buffer)
        self.stats.packets_lost += oldest - self._next
        self._next = self._floor = oldest
        if self.video:
            if self._parts:
                self.stats.frames_dropped += 1
                self._parts = []
            self._started = False
            self._waiting_keyframe = True
            self.keyframe_needed = True
        self._drain(frames)

    def _drain(self, frames: list[Frame], final: bool = False) -> None:
        if not self._started and not self._start_point(final):
            return
        while self._next in self._buffer:
            packet = self._buffer.pop(self._next)
            self._next += 1
            self._floor = self._next
            self._consume(packet.timestamp, packet.marker, packet.payload, packet.arrival, frames)

    def _consume(
        self, timestamp: int, marker: bool, payload: bytes, arrival: float, frames: list[Frame]
    ) -> None:
        """The next packet in sequence."""
        if not payload:
            return  # padding only (bandwidth probing on the media SSRC): a sequence number
        if not self.video:  # one Opus packet is one frame
            self.stats.frames += 1
            frames.append(Frame(timestamp, payload, True, arrival))
            return
        parts = self._parts
        if parts and timestamp != self._part_ts:
            self._finish(frames)  # the previous frame's marker bit was missing
            parts = self._parts
        if not parts:
            self._part_ts, self._part_arrival = timestamp, arrival
        parts.append(payload)
        self._part_marker = marker
        if marker:
            self._finish(frames)

    def _finish(self, frames: list[Frame]) -> None:
        parts, self._parts = self._parts, []
        try:
            data = b"".join([self._depayload(p) for p in parts])
        except (ValueError, IndexError) as exc:
            logger.debug("undepayloadable %s frame dropped: %s", self.codec, exc)
            data = b""
        if not data:
            self.stats.frames_dropped += 1
            if self.video:
                self._started = False
                self._waiting_keyframe = True
                self.keyframe_needed = True
            return
        keyframe = is_keyframe(self.codec, data)
        if self._waiting_keyframe:
            if not keyframe:
                self.stats.frames_dropped += 1
                return
            self._waiting_keyframe = False
        self.stats.frames += 1
        frames.append(Frame(self._part_ts, data, keyframe, self._part_arrival))

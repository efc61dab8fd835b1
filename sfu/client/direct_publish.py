"""A cheap publisher for the headless client: clips packetized once, paced straight into RTP.

aiortc's stock sender does per packet what the SFU never does when forwarding
(``track.recv()``, ``encoder.pack``, a chain of coroutines before SRTP and aioice). Here every
encoded unit of a clip is packetized ONCE, at load time, by aiortc's own packetizers
(``aiortc.codecs.get_encoder(codec).pack``), and :class:`DirectPacer` hands the payloads to a
:class:`~sfu.media.forwarding_sender.ForwardingSender` (the SFU's own sender: header packed
directly, SRTP, ``sendto`` on the nominated ICE pair; NACKs answered from its history with RTX;
sender reports from :meth:`DirectPacer.sender_report`). One timer per frame (``loop.call_at``)
sends all packets of that frame; nothing is encoded or decoded at run time and memory is the
packetized clip (shared by every pacer of that clip) plus the sender's bounded history.

Sequence numbers and RTP timestamps only ever increase, across clip loops and keyframe jumps:
the timestamp of a frame is the pacing clock's (one frame duration per frame, as
:class:`~sfu.client.clips.PacedPacketTrack` does). VP8 payloads carry the 15-bit picture id of
aiortc's payload descriptor; it is patched per frame so that it keeps increasing across loops.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from dataclasses import dataclass

import av
from aiortc.codecs import get_encoder, is_rtx
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from sfu.client.clips import MAX_PACING_LAG_S, Clip, Codec
from sfu.media.clock import NTP_EPOCH_OFFSET_S, abs_send_time_now
from sfu.media.forwarding_sender import ForwardingSender

logger = logging.getLogger(__name__)

MIME_TYPES: dict[str, str] = {"vp8": "video/vp8", "h264": "video/h264", "opus": "audio/opus"}
_PICTURE_ID = struct.Struct("!H")
_TS_MASK = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class PreparedFrame:
    """One encoded unit of a clip as RTP payloads (the last one carries the marker bit)."""

    payloads: tuple[bytes, ...]
    keyframe: bool


@dataclass(frozen=True, slots=True)
class PreparedClip:
    """A clip packetized once; shared by every pacer playing it."""

    clip: Clip
    frames: tuple[PreparedFrame, ...]
    vp8_picture_id: bool
    """True for VP8: every payload's bytes 2..3 are the descriptor's 15-bit picture id (M bit
    set), rewritten per frame by the pacer."""

    @property
    def mime_type(self) -> str:
        return MIME_TYPES[self.clip.codec]

    @property
    def packet_count(self) -> int:
        return sum(len(frame.payloads) for frame in self.frames)


_PREPARED: dict[int, tuple[Clip, PreparedClip]] = {}
"""id(clip) → (clip, packetized): the clip is held so that its id cannot be reused. Bounded by
the clips loaded (which :func:`sfu.client.clips.load_clip` keeps anyway)."""


def _check_vp8_descriptor(payload: bytes) -> None:
    # aiortc's VpxPayloadDescriptor with a picture id: X set, I set, a 2-byte picture id (M set).
    if len(payload) < 5 or not payload[0] & 0x80 or payload[1] != 0x80 or not payload[2] & 0x80:
        raise ValueError("VP8 payload without aiortc's 2-byte picture id descriptor")


def prepare_clip(clip: Clip) -> PreparedClip:
    """Packetize every unit of ``clip`` with aiortc's packetizer for its codec (memoized)."""
    cached = _PREPARED.get(id(clip))
    if cached is not None and cached[0] is clip:
        return cached[1]
    codec = RTCRtpCodecParameters(mimeType=MIME_TYPES[clip.codec], clockRate=clip.clock_rate)
    encoder = get_encoder(codec)
    frames: list[PreparedFrame] = []
    for unit in clip.units:
        packet = av.Packet(unit.data)
        packet.pts = unit.pts_ticks
        packet.time_base = clip.time_base
        payloads, _timestamp = encoder.pack(packet)
        if not payloads:
            raise ValueError(f"clip {clip.path}: a unit packetized into no payload")
        if clip.codec == "vp8":
            for payload in payloads:
                _check_vp8_descriptor(payload)
        frames.append(PreparedFrame(payloads=tuple(payloads), keyframe=unit.keyframe))
    prepared = PreparedClip(clip=clip, frames=tuple(frames), vp8_picture_id=clip.codec == "vp8")
    _PREPARED[id(clip)] = (clip, prepared)
    logger.debug("packetized %s: %d packets", clip.path, prepared.packet_count)
    return prepared


def payload_type_for(sender: ForwardingSender, codec: Codec) -> int | None:
    """The payload type negotiated for the clip's codec on a started sender."""
    mime = MIME_TYPES[codec]
    for parameters in getattr(sender, "negotiated", []):
        if not is_rtx(parameters) and parameters.mimeType.lower() == mime:
            return int(parameters.payloadType)
    return None


class DirectPacer:
    """Plays a :class:`PreparedClip` in real time through one ForwardingSender, looping.

    Create it, :meth:`attach` it to the sender (it starts when the sender starts, i.e. once
    DTLS is up) and :meth:`stop` it when done: no timer is left after that.
    """

    def __init__(self, prepared: PreparedClip, *, loop: bool = True) -> None:
        self.prepared = prepared
        self.clip = prepared.clip
        self.loop = loop
        self.frames_sent = 0
        self.rtp_packets_sent = 0
        self.keyframes_sent = 0
        self.keyframe_requests = 0
        self.loops_completed = 0
        self.pacing_restarts = 0
        self.send_errors = 0
        """Packets the sender refused (not connected); their sequence numbers are used up."""
        self.sender: ForwardingSender | None = None
        self.payload_type: int | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._stopped = False
        self._index = 0
        self._keyframe_pending = False
        self._seq = random.randrange(1 << 16)
        self._picture_id = random.randrange(1 << 15)
        self._packet = RtpPacket()
        # The pacing clock: frame number _epoch_frame is due at loop time _epoch with RTP
        # timestamp _epoch_ts; later frames follow one frame duration (and frame_ticks) apart.
        self._epoch = 0.0
        self._epoch_frame = 0
        self._epoch_ts = random.randrange(1 << 32)
        self._last_due: float | None = None
        self._last_ts = 0

    # --- life ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """A frame timer is armed."""
        return self._handle is not None

    @property
    def stopped(self) -> bool:
        return self._stopped

    def attach(self, sender: ForwardingSender) -> None:
        """Take PLI/FIR and sender-report duty on ``sender``; start once it has started."""
        if self.sender is not None:
            raise ValueError("the pacer is already attached to a sender")
        self.sender = sender
        sender.on_keyframe_request = self.request_keyframe
        sender.sr_source = self.sender_report
        sender.on_started = self.start
        if sender.started:
            self.start()

    def start(self) -> None:
        """Send the first frame now (idempotent; does nothing once stopped)."""
        sender = self.sender
        if self._stopped or self._handle is not None or sender is None:
            return
        self.payload_type = payload_type_for(sender, self.clip.codec)
        if self.payload_type is None:
            logger.warning("no %s payload type negotiated; not sending", self.clip.codec)
            return
        loop = asyncio.get_running_loop()
        self._event_loop = loop
        self._epoch = loop.time()
        self._epoch_frame = self.frames_sent
        if self._last_due is not None:  # restarted: keep timestamps increasing
            self._epoch_ts = (self._last_ts + self.clip.frame_ticks) & _TS_MASK
        self._handle = loop.call_at(self._epoch, self._fire)

    def stop(self) -> None:
        """Cancel the frame timer and let go of the sender's callbacks. Idempotent."""
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        sender = self.sender
        if sender is not None:
            if sender.on_keyframe_request == self.request_keyframe:
                sender.on_keyframe_request = None
            if sender.sr_source == self.sender_report:
                sender.sr_source = None
            if sender.on_started == self.start:
                sender.on_started = None

    def request_keyframe(self) -> None:
        """The next frame sent is the clip's next keyframe."""
        self.keyframe_requests += 1
        self._keyframe_pending = True

    # --- sender reports --------------------------------------------------------------------

    def sender_report(self) -> tuple[int, int] | None:
        """(NTP time, RTP timestamp) of the last frame sent: its due time on the wall clock."""
        loop = self._event_loop
        if self._last_due is None or loop is None:
            return None
        wall = time.time() - (loop.time() - self._last_due)
        return int((wall + NTP_EPOCH_OFFSET_S) * (1 << 32)), self._last_ts

    # --- the frame timer -------------------------------------------------------------------

    def _next_frame(self) -> PreparedFrame | None:
        frames = self.prepared.frames
        if self._keyframe_pending:
            self._keyframe_pending = False
            index = self.clip.next_keyframe_index(self._index % len(frames))
            if index < self._index:
                self.loops_completed += 1
            self._index = index
        if self._index >= len(frames):
            if not self.loop:
                return None
            self._index = 0
            self.loops_completed += 1
        frame = frames[self._index]
        self._index += 1
        return frame

    def _fire(self) -> None:
        self._handle = None
        sender, loop, payload_type = self.sender, self._event_loop, self.payload_type
        if self._stopped or sender is None or loop is None or payload_type is None:
            return
        frame = self._next_frame()
        if frame is None:
            self.stop()
            return
        clip = self.clip
        ahead = self.frames_sent - self._epoch_frame
        due = self._epoch + ahead * clip.frame_interval_s
        timestamp = (self._epoch_ts + ahead * clip.frame_ticks) & _TS_MASK
        self._send(sender, payload_type, frame, timestamp)
        self._last_due, self._last_ts = due, timestamp
        self.frames_sent += 1
        if frame.keyframe:
            self.keyframes_sent += 1
        next_due = due + clip.frame_interval_s
        now = loop.time()
        if now - next_due > MAX_PACING_LAG_S:
            # Far behind (a stalled loop): restart the clock instead of bursting to catch up,
            # and advance the timestamp by the time that passed, so it keeps tracking wall time.
            self.pacing_restarts += 1
            skipped = max(clip.frame_ticks, round((now - due) * clip.clock_rate))
            self._epoch, self._epoch_frame = now, self.frames_sent
            self._epoch_ts = (timestamp + skipped) & _TS_MASK
            next_due = now
        self._handle = loop.call_at(next_due, self._fire)

    def _send(
        self, sender: ForwardingSender, payload_type: int, frame: PreparedFrame, timestamp: int
    ) -> None:
        packet = self._packet
        packet.timestamp = timestamp
        picture_id = b""
        if self.prepared.vp8_picture_id:
            picture_id = _PICTURE_ID.pack(0x8000 | self._picture_id)
            self._picture_id = (self._picture_id + 1) & 0x7FFF
        abs_send_time = abs_send_time_now()
        last = len(frame.payloads) - 1
        for i, payload in enumerate(frame.payloads):
            packet.sequence_number = self._seq
            packet.marker = 1 if i == last else 0
            packet.payload = payload[:2] + picture_id + payload[4:] if picture_id else payload
            self._seq = (self._seq + 1) & 0xFFFF
            self.rtp_packets_sent += 1
            try:
                sender.forward(packet, payload_type, abs_send_time)
            except ConnectionError:
                self.send_errors += 1

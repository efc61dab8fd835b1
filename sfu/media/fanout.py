"""One published track's RTP fan-out: every packet the publisher's TapReceiver delivers goes to
every subscribed ForwardingSender, rewritten for it; keyframe requests walk back the other way.

No decoding, no encoding, no per-packet allocation beyond the outgoing packet itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiortc.codecs import is_rtx
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from aiortc.sdp import parse_h264_profile_level_id

from sfu import metrics
from sfu.media.clock import abs_send_time_now
from sfu.media.forwarding_sender import ForwardingSender
from sfu.media.keyframes import keyframe_detector
from sfu.media.tap_receiver import TapReceiver

logger = logging.getLogger(__name__)

RtpTap = Callable[[RtpPacket, RTCRtpCodecParameters], None]
"""A passive listener on every received packet (the recorder); must not block."""


def codec_key(codec: RTCRtpCodecParameters) -> tuple[str, ...]:
    """Two codecs with the same key carry the same bitstream format."""
    mime = codec.mimeType.lower()
    key: tuple[str, ...] = (mime, str(codec.clockRate))
    if mime == "video/h264":
        params = codec.parameters
        level_id = str(params.get("profile-level-id", "42e01f")).lower()
        try:
            profile = str(parse_h264_profile_level_id(level_id)[0])
        except ValueError:
            profile = level_id
        key += (profile, str(params.get("packetization-mode", "0")))
    return key


def map_payload_types(
    publisher: list[RTCRtpCodecParameters], subscriber: list[RTCRtpCodecParameters]
) -> dict[int, int]:
    """Publisher payload type → subscriber payload type, matched by codec (RTX excluded)."""
    by_key = {
        codec_key(c): c.payloadType
        for c in subscriber
        if not is_rtx(c) and c.payloadType is not None
    }
    result: dict[int, int] = {}
    for codec in publisher:
        if is_rtx(codec) or codec.payloadType is None:
            continue
        pt = by_key.get(codec_key(codec))
        if pt is not None:
            result[codec.payloadType] = pt
    return result


@dataclass(slots=True, eq=False)
class Downstream:
    """One subscriber's view of this track."""

    sender: ForwardingSender
    payload_types: dict[int, int]
    waiting_keyframe: bool


class KeyframeThrottle:
    """At most one upstream PLI per `interval`; a request inside the interval is not lost but
    sent when the interval ends."""

    def __init__(self, interval: float, send: Callable[[], None]) -> None:
        self.interval = interval
        self._send = send
        self._last = float("-inf")
        self._pending: asyncio.TimerHandle | None = None

    def request(self) -> None:
        if self._pending is not None:
            return
        now = time.monotonic()
        wait = self._last + self.interval - now
        if wait <= 0:
            self._fire()
        else:
            self._pending = asyncio.get_running_loop().call_later(wait, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self._last = time.monotonic()
        self._send()

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None


class TrackFanout:
    """Forwards one published track to its subscribers."""

    def __init__(
        self,
        receiver: TapReceiver,
        kind: str,
        codecs: list[RTCRtpCodecParameters],
        *,
        keyframe_interval: float,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] = logger,
    ) -> None:
        self.receiver = receiver
        self.kind = kind
        self.codecs = codecs
        self.log = log
        self.downstream: list[Downstream] = []
        self.taps: list[RtpTap] = []
        self.packets_in = 0
        self.bytes_in = 0
        self.closed = False
        self._sr: dict[int, tuple[int, int]] = {}
        self._detectors = {
            c.payloadType: keyframe_detector(c.mimeType)
            for c in codecs
            if c.payloadType is not None
        }
        self._throttle = KeyframeThrottle(keyframe_interval, self._send_pli)
        self._pli_tasks: set[asyncio.Task[bool]] = set()
        self._in_packets = metrics.RTP_PACKETS_IN.labels(kind)
        self._in_bytes = metrics.RTP_BYTES_IN.labels(kind)
        self._out_packets = metrics.RTP_PACKETS_OUT.labels(kind)
        self._out_bytes = metrics.RTP_BYTES_OUT.labels(kind)
        self._flushed = (0, 0, 0, 0)
        self._sent_packets = 0
        self._sent_bytes = 0
        receiver.sink = self

    # -- subscribers -------------------------------------------------------------------------

    def add(self, sender: ForwardingSender, subscriber_codecs: list[RTCRtpCodecParameters]) -> None:
        """Start forwarding to `sender` once it is negotiated; video waits for a keyframe."""
        entry = Downstream(
            sender=sender,
            payload_types=map_payload_types(self.codecs, subscriber_codecs),
            waiting_keyframe=self.kind == "video",
        )
        sender.sr_source = self._latest_sender_report
        sender.on_keyframe_request = self.request_keyframe
        sender.on_started = self.request_keyframe
        self.downstream.append(entry)
        metrics.SUBSCRIPTIONS.labels(self.kind).inc()
        if sender.started:
            self.request_keyframe()

    def update_codecs(
        self, sender: ForwardingSender, subscriber_codecs: list[RTCRtpCodecParameters]
    ) -> None:
        for entry in self.downstream:
            if entry.sender is sender:
                entry.payload_types = map_payload_types(self.codecs, subscriber_codecs)

    def remove(self, sender: ForwardingSender) -> None:
        before = len(self.downstream)
        self.downstream = [d for d in self.downstream if d.sender is not sender]
        if len(self.downstream) != before:
            metrics.SUBSCRIPTIONS.labels(self.kind).dec()
        sender.on_keyframe_request = None
        sender.on_started = None
        sender.sr_source = None

    # -- keyframes ---------------------------------------------------------------------------

    def request_keyframe(self) -> None:
        if self.kind != "video" or self.closed:
            return
        metrics.KEYFRAME_REQUESTS.labels("from_subscriber").inc()
        self._throttle.request()

    def _send_pli(self) -> None:
        if self.closed:
            return
        metrics.KEYFRAME_REQUESTS.labels("to_publisher").inc()
        task = asyncio.ensure_future(self.receiver.send_pli())
        self._pli_tasks.add(task)
        task.add_done_callback(self._pli_tasks.discard)

    # -- RTCP sender reports (lip-sync) --------------------------------------------------------

    def on_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        self._sr[ssrc] = (ntp_timestamp, rtp_timestamp)

    def _latest_sender_report(self) -> tuple[int, int] | None:
        ssrc = self.receiver.media_ssrc
        return self._sr.get(ssrc) if ssrc is not None else None

    # -- the hot path --------------------------------------------------------------------------

    def on_rtp(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        size = len(packet.payload)
        self.packets_in += 1
        self.bytes_in += size
        for tap in self.taps:
            try:
                tap(packet, codec)
            except Exception:
                self.log.exception("RTP tap failed; removing it")
                self.taps = [t for t in self.taps if t is not tap]
        if not size:
            return  # padding only (bandwidth probing): nothing to forward
        keyframe: bool | None = None
        abs_send_time = -1
        for entry in self.downstream:
            sender = entry.sender
            if not sender.started or not sender._enabled:
                continue
            pt = entry.payload_types.get(packet.payload_type)
            if pt is None:
                continue
            if entry.waiting_keyframe:
                if keyframe is None:
                    detect = self._detectors.get(packet.payload_type)
                    keyframe = detect(packet.payload) if detect is not None else False
                if not keyframe:
                    continue
                entry.waiting_keyframe = False
            if abs_send_time < 0:
                abs_send_time = abs_send_time_now()
            try:
                sender.forward(packet, pt, abs_send_time)
            except ConnectionError:
                continue
            except Exception:
                self.log.exception("forwarding to a subscriber failed")
                continue
            self._sent_packets += 1
            self._sent_bytes += size
        if self.packets_in & 0x3F == 0:
            self.flush_metrics()

    def flush_metrics(self) -> None:
        """Move the local counters into Prometheus (batched: one inc per 64 packets)."""
        p_in, b_in, p_out, b_out = self._flushed
        self._in_packets.inc(self.packets_in - p_in)
        self._in_bytes.inc(self.bytes_in - b_in)
        self._out_packets.inc(self._sent_packets - p_out)
        self._out_bytes.inc(self._sent_bytes - b_out)
        self._flushed = (self.packets_in, self.bytes_in, self._sent_packets, self._sent_bytes)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.flush_metrics()
        self._throttle.close()
        for entry in list(self.downstream):
            self.remove(entry.sender)
        self.taps = []
        self.receiver.sink = None

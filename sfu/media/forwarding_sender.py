"""ForwardingSender: an aiortc sender that forwards the SFU's RTP instead of encoding frames."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from aiortc import clock as _clock
from aiortc.codecs import is_rtx
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import (
    RTCRtpSendParameters,
)
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    HeaderExtensionsMap,
    RtcpByePacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    RtpPacket,
    wrap_rtx,
)

from sfu import metrics
from sfu.media.internals import internal
from sfu.media.rewriter import SEQ_MOD, TS_MOD, RtpRewriter, RtpWriter

logger = logging.getLogger(__name__)

SENDER_HISTORY = 1024
"""Packets kept per forwarding sender to answer NACKs (~1 s of 1 Mbit/s video)."""


class ForwardingSender(RTCRtpSender):
    """An RTCRtpSender that sends RTP packets handed to `forward()` instead of pulling frames
    from a track and encoding them. It answers NACKs from its own history, reports keyframe
    requests to `on_keyframe_request`, and sends sender reports from its own counters."""

    def __init__(self, trackOrKind: Any, transport: RTCDtlsTransport) -> None:
        super().__init__(trackOrKind, transport)
        self.on_keyframe_request: Callable[[], None] | None = None
        self.on_started: Callable[[], None] | None = None
        self.rewriter = RtpRewriter(
            first_seq=random.randrange(1 << 15), first_timestamp=random.randrange(1 << 32)
        )
        self.clock_rate = 90000 if self.kind == "video" else 48000
        self.sr_source: Callable[[], tuple[int, int] | None] | None = None
        """Returns the publisher's latest (ntp, rtp timestamp) mapping, for lip-sync."""
        self.started = False
        self.packets = 0
        self.octets = 0
        self.nacks_received = 0
        self.retransmitted = 0
        self.keyframe_requests = 0
        self._history: list[bytes | None] = [None] * SENDER_HISTORY
        """Plain (unprotected) RTP of what was sent, by sequence number modulo its size."""
        self._writer = RtpWriter(self._ssrc, {}, None)
        # The route of the hot path, resolved once per selected ICE pair (see _send_plain).
        self._dtls: Any = None
        self._nominated: dict[int, Any] = {}
        self._pair: Any = None
        self._sendto: Callable[[bytes, Any], None] | None = None
        self._addr: Any = None
        self._protect: Callable[[bytes], bytes] | None = None
        self._ext_map = HeaderExtensionsMap()
        self._mid: str | None = None
        self._cname: str | None = None
        self._rtx_pt: int | None = None
        self._rtx_seq = random.randrange(1 << 15)
        self._rtcp_task: asyncio.Task[None] | None = None
        self._last_send_time = 0.0
        self._stopped = False

    async def send(self, parameters: RTCRtpSendParameters) -> None:
        if self.started or self._stopped:
            return
        self._cname = parameters.rtcp.cname
        self._mid = parameters.muxId
        self.transport._register_rtp_sender(self, parameters)
        self._ext_map.configure(parameters)
        self._writer = RtpWriter(
            self._ssrc,
            {ext.uri: ext.id for ext in parameters.headerExtensions if ext.id},
            self._mid,
        )
        self._dtls = self.transport
        self._nominated = internal(self._dtls.transport, "_connection")._nominated
        primary = [c for c in parameters.codecs if not is_rtx(c)]
        if primary:
            self.clock_rate = primary[0].clockRate
        for codec in parameters.codecs:
            if is_rtx(codec) and primary and codec.parameters.get("apt") == primary[0].payloadType:
                self._rtx_pt = codec.payloadType
        self.negotiated = list(parameters.codecs)
        self._rtcp_task = asyncio.ensure_future(self._run_sender_rtcp())
        self.started = True
        if self.on_started is not None:
            self.on_started()

    async def stop(self, *, bye: bool = True) -> None:
        """Stop sending; `bye=False` leaves out the RTCP BYE (see SubscriberSession._end)."""
        if self._stopped:
            return
        self._stopped = True
        if self.started:
            self.transport._unregister_rtp_sender(self)
            if self._rtcp_task is not None:
                self._rtcp_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._rtcp_task
            if bye:
                await self._send_rtcp([RtcpByePacket(sources=[self._ssrc])])
        self.on_keyframe_request = None
        self.on_started = None
        self.release()

    def release(self) -> None:
        """Let go of what only a running sender needs, at once: the retransmission history
        (SENDER_HISTORY packets, about 1 MB of video) and the socket binding. The sender itself
        sits in reference cycles with its transports, which only the collector undoes, later."""
        self._history = [None] * SENDER_HISTORY
        self._pair = None
        self._sendto = None

    def successor(self) -> ForwardingSender:
        """A fresh sender that continues this stopped one's stream, for the next track on the
        same section: the same SSRCs, sequence numbers going on from the last one sent (no
        gap, so no loss to report), timestamps a second on, and cumulative counters for the
        sender reports. A receiver keeps routing it by SSRC (aiortc's RtpRouter never routes by
        mid; it takes a known SSRC only with a payload type registered for its receiver, and
        registers them on the receiver's first negotiation only: when the next track's codec
        differs, the client must add the new payload types, see sfu/client/subscriber.py)."""
        nxt = ForwardingSender(self.kind, self.transport)
        nxt._ssrc = self._ssrc
        nxt._rtx_ssrc = self._rtx_ssrc
        nxt._rtx_seq = self._rtx_seq
        old = self.rewriter
        if old.started:
            nxt.rewriter = RtpRewriter(
                first_seq=(old.highest_out_seq + 1) % SEQ_MOD,
                first_timestamp=(old.last_out_timestamp + self.clock_rate) % TS_MOD,
            )
        else:
            nxt.rewriter = RtpRewriter(first_seq=old.first_seq, first_timestamp=old.first_timestamp)
        nxt.packets = self.packets
        nxt.octets = self.octets
        return nxt

    def forward(self, packet: RtpPacket, payload_type: int, abs_send_time: int) -> None:
        """Send one packet of the publisher's stream, rewritten for this subscriber.

        The hot path: header and extensions are packed directly, and the SRTP-protected
        datagram goes straight to the selected ICE pair's socket (aiortc's own path is three
        coroutine layers deep). Raises ConnectionError when not connected."""
        seq, timestamp = self.rewriter.rewrite(packet.sequence_number, packet.timestamp)
        payload = packet.payload
        plain = self._writer.write(
            payload_type,
            packet.marker,
            seq,
            timestamp,
            payload,
            abs_send_time,
            packet.extensions.audio_level,
        )
        self._history[seq % SENDER_HISTORY] = plain
        self._send_plain(plain)
        self.packets += 1
        self.octets += len(payload)
        self._last_send_time = time.time()

    def _send_plain(self, plain: bytes) -> None:
        pair = self._nominated.get(1)
        if pair is not self._pair:
            self._reroute(pair)
        if self._sendto is None or self._dtls._state is not DtlsState.CONNECTED:
            raise ConnectionError("not connected")
        self._sendto(self._protect(plain), self._addr)  # type: ignore[misc]

    def _reroute(self, pair: Any) -> None:
        """Bind the hot path to the selected ICE pair's socket and the DTLS-SRTP session."""
        if pair is None or self._dtls is None or self._dtls._tx_srtp is None:
            self._pair = None
            self._sendto = None
            return
        self._pair = pair
        self._sendto = pair.protocol.transport.sendto
        self._addr = pair.remote_addr
        self._protect = self._dtls._tx_srtp.protect

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            for seq in packet.lost:
                self.nacks_received += 1
                metrics.NACKS_RECEIVED.inc()
                await self._retransmit(seq)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_FIR, RTCP_PSFB_PLI):
            self.keyframe_requests += 1
            if self.on_keyframe_request is not None:
                self.on_keyframe_request()
        elif isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            await super()._handle_rtcp_packet(packet)

    async def _retransmit(self, sequence_number: int) -> None:
        plain = self._history[sequence_number % SENDER_HISTORY]
        if plain is None or int.from_bytes(plain[2:4], "big") != sequence_number:
            return
        if not self.started:
            return
        if self._rtx_pt is not None:
            rtx = wrap_rtx(
                RtpPacket.parse(plain, self._ext_map),
                payload_type=self._rtx_pt,
                sequence_number=self._rtx_seq,
                ssrc=self._rtx_ssrc,
            )
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
            plain = rtx.serialize(self._ext_map)
        try:
            self._send_plain(plain)
        except ConnectionError:
            return
        self.retransmitted += 1
        metrics.NACKS_ANSWERED.inc()

    def _sender_report(self) -> RtcpSrPacket:
        now = time.time()
        ntp = _clock.current_ntp_time()
        mapping = self.sr_source() if self.sr_source is not None else None
        if mapping is not None:
            pub_ntp, pub_rtp = mapping
            elapsed = (ntp - pub_ntp) / (1 << 32)
            rtp_ts = self.rewriter.to_subscriber_timestamp(
                int(pub_rtp + elapsed * self.clock_rate) & 0xFFFFFFFF
            )
        else:
            elapsed = now - self._last_send_time if self._last_send_time else 0.0
            rtp_ts = int(self.rewriter.last_out_timestamp + elapsed * self.clock_rate)
        return RtcpSrPacket(
            ssrc=self._ssrc,
            sender_info=RtcpSenderInfo(
                ntp_timestamp=ntp,
                rtp_timestamp=rtp_ts & 0xFFFFFFFF,
                packet_count=self.packets & 0xFFFFFFFF,
                octet_count=self.octets & 0xFFFFFFFF,
            ),
        )

    async def _run_sender_rtcp(self) -> None:
        try:
            while True:
                await asyncio.sleep(0.5 + random.random())
                if not self.packets:
                    continue
                packets: list[AnyRtcpPacket] = [self._sender_report()]
                if self._cname is not None:
                    packets.append(
                        RtcpSdesPacket(
                            chunks=[
                                RtcpSourceInfo(
                                    ssrc=self._ssrc, items=[(1, self._cname.encode("utf8"))]
                                )
                            ]
                        )
                    )
                await self._send_rtcp(packets)
        except asyncio.CancelledError:
            pass

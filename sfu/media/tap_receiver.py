"""TapReceiver: an aiortc receiver that hands RTP to the SFU instead of decoding it."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiortc.codecs import is_rtx
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpReceiveParameters,
)
from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unwrap_rtx,
)

from sfu import background, metrics
from sfu.media.internals import internal, set_internal

logger = logging.getLogger(__name__)


class RtpSink(Protocol):
    """Where a TapReceiver delivers each received RTP packet (a TrackFanout)."""

    def on_rtp(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None: ...

    def on_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None: ...


class TapReceiver(RTCRtpReceiver):
    """An RTCRtpReceiver that hands RTP packets to a sink instead of depacketizing and decoding.

    Kept from the stock receiver: receiver reports (StreamStatistics + its RTCP task), REMB from
    the remote bitrate estimator, RTX unwrapping and NACK generation for upstream loss. Dropped:
    the jitter buffer, the decoder thread and the remote track's frame queue.
    """

    def __init__(self, kind: str, transport: RTCDtlsTransport) -> None:
        super().__init__(kind, transport)
        self.sink: RtpSink | None = None
        self.codecs: dict[int, RTCRtpCodecParameters] = internal(self, "_RTCRtpReceiver__codecs")
        self._rtx_ssrc: dict[int, int] = internal(self, "_RTCRtpReceiver__rtx_ssrc")
        self._streams: dict[int, StreamStatistics] = internal(
            self, "_RTCRtpReceiver__remote_streams"
        )
        self._nack = internal(self, "_RTCRtpReceiver__nack_generator")
        self._estimator = internal(self, "_RTCRtpReceiver__remote_bitrate_estimator")
        self._rtcp_ssrc: int | None = None
        self.media_ssrc: int | None = None
        self.packets = 0
        self.octets = 0
        self.nacks_sent = 0
        self._rtx_pt: dict[int, bool] = {}  # payload type -> is RTX (is_rtx per packet costs)
        self._frame_bytes = 0  # payload bytes of the video frame in progress, for REMB

    def _set_rtcp_ssrc(self, ssrc: int) -> None:
        super()._set_rtcp_ssrc(ssrc)
        self._rtcp_ssrc = ssrc

    async def receive(self, parameters: RTCRtpReceiveParameters) -> None:
        if internal(self, "_RTCRtpReceiver__started"):
            return
        for codec in parameters.codecs:
            if codec.payloadType is not None:
                self.codecs[codec.payloadType] = codec
        self._rtx_pt.clear()
        for encoding in parameters.encodings:
            if encoding.rtx:
                self._rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc
        self.transport._register_rtp_receiver(self, parameters)
        set_internal(self, "_RTCRtpReceiver__rtcp_task", asyncio.ensure_future(self._run_rtcp()))
        set_internal(self, "_RTCRtpReceiver__started", True)

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        await super()._handle_rtcp_packet(packet)
        if isinstance(packet, RtcpSrPacket) and self.sink is not None:
            info = packet.sender_info
            self.sink.on_sender_report(packet.ssrc, info.ntp_timestamp, info.rtp_timestamp)

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """aiortc's entry point (packets that came the queued way, before the fast path)."""
        self.handle_rtp(packet, arrival_time_ms)

    def handle_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """One received RTP packet, synchronously (called by RtpFastPath from the socket
        callback). The rare RTCP it triggers (REMB, NACK) is sent by background tasks."""
        if not self._enabled:
            return
        if self._estimator is not None and packet.extensions.abs_send_time is not None:
            # The estimator is fed once per frame, with the frame's bytes, at its last packet
            # (send time and arrival of that packet): its groups become one per frame instead
            # of per 5 ms burst, the bytes and the rate are the same, for about a quarter of
            # the calls (it is pure Python and was the largest item of the receive path).
            self._frame_bytes += len(packet.payload) + packet.padding_size
            if packet.marker:
                remb = self._estimator.add(
                    abs_send_time=packet.extensions.abs_send_time,
                    arrival_time_ms=arrival_time_ms,
                    payload_size=self._frame_bytes,
                    ssrc=packet.ssrc,
                )
                self._frame_bytes = 0
                if self._rtcp_ssrc is not None and remb is not None:
                    background.spawn(
                        self._send_rtcp(
                            RtcpPsfbPacket(
                                fmt=RTCP_PSFB_APP,
                                ssrc=self._rtcp_ssrc,
                                media_ssrc=0,
                                fci=pack_remb_fci(*remb),
                            )
                        )
                    )
        codec = self.codecs.get(packet.payload_type)
        if codec is None:
            return
        stream = self._streams.get(packet.ssrc)
        if stream is None:
            stream = self._streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stream.add(packet)
        rtx = self._rtx_pt.get(packet.payload_type)
        if rtx is None:
            rtx = self._rtx_pt[packet.payload_type] = is_rtx(codec)
        if rtx:
            original_ssrc = self._rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if (
                original_ssrc is None
                or len(packet.payload) < 2
                or not isinstance(apt, int)
                or apt not in self.codecs
            ):
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
            codec = self.codecs[apt]
        else:
            self.media_ssrc = packet.ssrc
        if self._nack is not None and self._nack.add(packet):
            self.nacks_sent += 1
            metrics.NACKS_SENT.inc()
            background.spawn(self._send_rtcp_nack(packet.ssrc, sorted(self._nack.missing)))
        self.packets += 1
        self.octets += len(packet.payload)
        if self.sink is not None:
            self.sink.on_rtp(packet, codec)

    async def stop(self) -> None:
        await super().stop()
        self.release()

    def release(self) -> None:
        """Let go at once of what only a receiving receiver needs: the remote bitrate
        estimator (a thousand 1 ms buckets), the stream statistics, the sink. For a stopped
        receiver, and for the unused receivers of the SFU's send-only subscriber sections."""
        self.sink = None
        self._estimator = None
        set_internal(self, "_RTCRtpReceiver__remote_bitrate_estimator", None)
        self._streams.clear()

    def disable_remb(self) -> None:
        """Send no REMB: the remote bitrate estimator is no longer fed (a counting client's
        receivers, whose REMB the SFU ignores; the estimator is a large share of the
        per-packet receive cost)."""
        self._estimator = None

    async def send_pli(self) -> bool:
        """Ask the publisher for a keyframe. False if no media SSRC is known yet."""
        if self.media_ssrc is None:
            return False
        await self._send_rtcp_pli(self.media_ssrc)
        return True

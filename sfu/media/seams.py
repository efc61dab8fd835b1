"""Every place the SFU reaches into aiortc's private internals, and nothing else.

aiortc 1.16.0 is pinned exactly (pyproject.toml); `check_seams()` asserts that each internal
used here still exists, and tests/unit/test_seams.py runs it, so an upgrade fails loudly.

How it hooks in: `aiortc.rtcpeerconnection` builds receivers and senders through its module-level
names `RTCRtpReceiver` and `RTCRtpSender`, and `aiortc.rtcicetransport` builds its aioice
connection through `Connection`. Those three names are replaced (once, idempotently) by factories
that consult a context variable: inside a call on a `SeamPeerConnection` the variable holds that
connection's `PeerSetup`, so the SFU's peer connections get `TapReceiver`, `ForwardingSender`
and the port-range ICE connection, while every other `RTCPeerConnection` in the process (test
clients, the load tester) keeps stock behaviour. Tasks aiortc starts from inside those calls
copy the context, so they see the same setup.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import aiortc.rtcicetransport as _rtcicetransport
import aiortc.rtcpeerconnection as _rtcpeerconnection
from aioice import Connection
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc import clock as _clock
from aiortc.codecs import is_rtx
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import (
    RTCP_PSFB_APP,
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
    pack_remb_fci,
    unwrap_rtx,
    wrap_rtx,
)

from sfu import metrics
from sfu.ice.connection import IceConfig, make_connection_factory
from sfu.media.rewriter import RtpRewriter

logger = logging.getLogger(__name__)

SENDER_HISTORY = 1024
"""Packets kept per forwarding sender to answer NACKs (~1 s of 1 Mbit/s video)."""

_STOCK_RECEIVER = RTCRtpReceiver
_STOCK_SENDER = RTCRtpSender
_STOCK_CONNECTION = Connection

# The private attributes used below, checked by check_seams().
_RECEIVER_PRIVATE = (
    "_RTCRtpReceiver__codecs",
    "_RTCRtpReceiver__rtx_ssrc",
    "_RTCRtpReceiver__remote_streams",
    "_RTCRtpReceiver__nack_generator",
    "_RTCRtpReceiver__remote_bitrate_estimator",
    "_RTCRtpReceiver__started",
    "_RTCRtpReceiver__rtcp_task",
    "_RTCRtpReceiver__rtcp_ssrc",
    "_RTCRtpReceiver__transport",
)
_SENDER_PRIVATE = ("_RTCRtpSender__started",)


def _internal(obj: object, name: str) -> Any:
    """Read a private attribute of aiortc (listed in _RECEIVER_PRIVATE / checked by
    check_seams)."""
    return getattr(obj, name)


def _set_internal(obj: object, name: str, value: object) -> None:
    setattr(obj, name, value)


@dataclass(frozen=True, slots=True)
class PeerSetup:
    """How one SFU-side (or test-client) peer connection is built."""

    ice: IceConfig | None
    forwarding: bool
    """True on the SFU: receivers tap RTP without decoding, senders forward RTP."""


_SETUP: contextvars.ContextVar[PeerSetup | None] = contextvars.ContextVar(
    "sfu_peer_setup", default=None
)


class RtpSink(Protocol):
    """Where a TapReceiver delivers each received RTP packet (a TrackFanout)."""

    async def on_rtp(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None: ...

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
        self.codecs: dict[int, RTCRtpCodecParameters] = _internal(self, "_RTCRtpReceiver__codecs")
        self._rtx_ssrc: dict[int, int] = _internal(self, "_RTCRtpReceiver__rtx_ssrc")
        self._streams: dict[int, StreamStatistics] = _internal(
            self, "_RTCRtpReceiver__remote_streams"
        )
        self._nack = _internal(self, "_RTCRtpReceiver__nack_generator")
        self._estimator = _internal(self, "_RTCRtpReceiver__remote_bitrate_estimator")
        self._rtcp_ssrc: int | None = None
        self.media_ssrc: int | None = None
        self.packets = 0
        self.octets = 0
        self.nacks_sent = 0

    def _set_rtcp_ssrc(self, ssrc: int) -> None:
        super()._set_rtcp_ssrc(ssrc)
        self._rtcp_ssrc = ssrc

    async def receive(self, parameters: RTCRtpReceiveParameters) -> None:
        if _internal(self, "_RTCRtpReceiver__started"):
            return
        for codec in parameters.codecs:
            if codec.payloadType is not None:
                self.codecs[codec.payloadType] = codec
        for encoding in parameters.encodings:
            if encoding.rtx:
                self._rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc
        self.transport._register_rtp_receiver(self, parameters)
        _set_internal(self, "_RTCRtpReceiver__rtcp_task", asyncio.ensure_future(self._run_rtcp()))
        _set_internal(self, "_RTCRtpReceiver__started", True)

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        await super()._handle_rtcp_packet(packet)
        if isinstance(packet, RtcpSrPacket) and self.sink is not None:
            info = packet.sender_info
            self.sink.on_sender_report(packet.ssrc, info.ntp_timestamp, info.rtp_timestamp)

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        if not self._enabled:
            return
        if self._estimator is not None and packet.extensions.abs_send_time is not None:
            remb = self._estimator.add(
                abs_send_time=packet.extensions.abs_send_time,
                arrival_time_ms=arrival_time_ms,
                payload_size=len(packet.payload) + packet.padding_size,
                ssrc=packet.ssrc,
            )
            if self._rtcp_ssrc is not None and remb is not None:
                await self._send_rtcp(
                    RtcpPsfbPacket(
                        fmt=RTCP_PSFB_APP,
                        ssrc=self._rtcp_ssrc,
                        media_ssrc=0,
                        fci=pack_remb_fci(*remb),
                    )
                )
        codec = self.codecs.get(packet.payload_type)
        if codec is None:
            return
        stream = self._streams.get(packet.ssrc)
        if stream is None:
            stream = self._streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stream.add(packet)
        if is_rtx(codec):
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
            await self._send_rtcp_nack(packet.ssrc, sorted(self._nack.missing))
        self.packets += 1
        self.octets += len(packet.payload)
        if self.sink is not None:
            await self.sink.on_rtp(packet, codec)

    async def send_pli(self) -> bool:
        """Ask the publisher for a keyframe. False if no media SSRC is known yet."""
        if self.media_ssrc is None:
            return False
        await self._send_rtcp_pli(self.media_ssrc)
        return True


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
        self._history: list[RtpPacket | None] = [None] * SENDER_HISTORY
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

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.started:
            self.transport._unregister_rtp_sender(self)
            if self._rtcp_task is not None:
                self._rtcp_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._rtcp_task
            await self._send_rtcp([RtcpByePacket(sources=[self._ssrc])])
        self.on_keyframe_request = None
        self.on_started = None

    async def forward(self, packet: RtpPacket, payload_type: int) -> None:
        """Send one packet of the publisher's stream, rewritten for this subscriber."""
        seq, timestamp = self.rewriter.rewrite(packet.sequence_number, packet.timestamp)
        out = RtpPacket(
            payload_type=payload_type,
            marker=packet.marker,
            sequence_number=seq,
            timestamp=timestamp,
            ssrc=self._ssrc,
            payload=packet.payload,
        )
        ext = out.extensions
        ext.mid = self._mid
        ext.abs_send_time = (_clock.current_ntp_time() >> 14) & 0x00FFFFFF
        ext.audio_level = packet.extensions.audio_level
        self._history[seq % SENDER_HISTORY] = out
        await self.transport._send_rtp(out.serialize(self._ext_map))
        self.packets += 1
        self.octets += len(packet.payload)
        self._last_send_time = time.time()

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
        packet = self._history[sequence_number % SENDER_HISTORY]
        if packet is None or packet.sequence_number != sequence_number or not self.started:
            return
        if self._rtx_pt is not None:
            packet = wrap_rtx(
                packet,
                payload_type=self._rtx_pt,
                sequence_number=self._rtx_seq,
                ssrc=self._rtx_ssrc,
            )
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        try:
            await self.transport._send_rtp(packet.serialize(self._ext_map))
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


def _receiver_factory(kind: str, transport: RTCDtlsTransport) -> RTCRtpReceiver:
    setup = _SETUP.get()
    if setup is not None and setup.forwarding:
        return TapReceiver(kind, transport)
    return _STOCK_RECEIVER(kind, transport)


def _sender_factory(trackOrKind: Any, transport: RTCDtlsTransport) -> RTCRtpSender:
    setup = _SETUP.get()
    if setup is not None and setup.forwarding:
        return ForwardingSender(trackOrKind, transport)
    return _STOCK_SENDER(trackOrKind, transport)


def _connection_factory(*args: Any, **kwargs: Any) -> Connection:
    setup = _SETUP.get()
    if setup is not None and setup.ice is not None:
        return make_connection_factory(setup.ice)(*args, **kwargs)
    return _STOCK_CONNECTION(*args, **kwargs)


_installed = False


def install() -> None:
    """Replace aiortc's three module-level constructors with the context-aware factories."""
    global _installed
    if _installed:
        return
    check_seams()
    _set_internal(_rtcpeerconnection, "RTCRtpReceiver", _receiver_factory)
    _set_internal(_rtcpeerconnection, "RTCRtpSender", _sender_factory)
    _set_internal(_rtcicetransport, "Connection", _connection_factory)
    _installed = True


def check_seams() -> None:
    """Fail loudly if an aiortc/aioice internal this module relies on has moved."""
    problems: list[str] = []
    for module, name in (
        (_rtcpeerconnection, "RTCRtpReceiver"),
        (_rtcpeerconnection, "RTCRtpSender"),
        (_rtcicetransport, "Connection"),
    ):
        if not hasattr(module, name):
            problems.append(f"{module.__name__}.{name} is gone")
    init_code = RTCRtpReceiver.__init__.__code__
    for attr in _RECEIVER_PRIVATE:
        if attr not in init_code.co_names:
            problems.append(f"RTCRtpReceiver no longer sets {attr}")
    sender_code = RTCRtpSender.__init__.__code__
    for attr in _SENDER_PRIVATE:
        if attr not in sender_code.co_names:
            problems.append(f"RTCRtpSender no longer sets {attr}")
    for cls, method in (
        (RTCRtpReceiver, "_send_rtcp_pli"),
        (RTCRtpReceiver, "_send_rtcp_nack"),
        (RTCRtpReceiver, "_run_rtcp"),
        (RTCRtpReceiver, "_send_rtcp"),
        (RTCRtpSender, "_send_rtcp"),
        (RTCDtlsTransport, "_send_rtp"),
        (RTCDtlsTransport, "_register_rtp_sender"),
        (RTCDtlsTransport, "_register_rtp_receiver"),
    ):
        if not hasattr(cls, method):
            problems.append(f"{cls.__name__}.{method} is gone")
    if "_codecs" not in RTCRtpTransceiver.__init__.__code__.co_names:
        problems.append("RTCRtpTransceiver no longer keeps _codecs")
    if problems:
        raise RuntimeError("aiortc internals changed: " + "; ".join(problems))


_T = TypeVar("_T")


class SeamPeerConnection(RTCPeerConnection):
    """An RTCPeerConnection whose transceivers and ICE are built from a PeerSetup."""

    def __init__(self, setup: PeerSetup, configuration: RTCConfiguration | None = None) -> None:
        install()
        self.setup = setup
        super().__init__(
            configuration
            or RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )

    def _within(self, make: Callable[[], _T]) -> _T:
        token = _SETUP.set(self.setup)
        try:
            return make()
        finally:
            _SETUP.reset(token)

    async def _awaited(self, make: Callable[[], Awaitable[_T]]) -> _T:
        token = _SETUP.set(self.setup)
        try:
            return await make()
        finally:
            _SETUP.reset(token)

    def addTransceiver(self, trackOrKind: Any, direction: str = "sendrecv") -> RTCRtpTransceiver:
        return self._within(
            lambda: super(SeamPeerConnection, self).addTransceiver(trackOrKind, direction)
        )

    def addTrack(self, track: Any) -> RTCRtpSender:
        return self._within(lambda: super(SeamPeerConnection, self).addTrack(track))

    async def setRemoteDescription(self, sessionDescription: RTCSessionDescription) -> None:
        await self._awaited(
            lambda: super(SeamPeerConnection, self).setRemoteDescription(sessionDescription)
        )

    async def setLocalDescription(
        self, sessionDescription: RTCSessionDescription | None = None
    ) -> None:
        await self._awaited(
            lambda: super(SeamPeerConnection, self).setLocalDescription(sessionDescription)
        )

    async def createOffer(self) -> RTCSessionDescription:
        return await self._awaited(lambda: super(SeamPeerConnection, self).createOffer())

    async def createAnswer(self) -> RTCSessionDescription:
        return await self._awaited(lambda: super(SeamPeerConnection, self).createAnswer())


def sfu_peer_connection(ice: IceConfig) -> SeamPeerConnection:
    """A peer connection for the SFU side: port-range ICE, tap receivers, forwarding senders."""
    return SeamPeerConnection(PeerSetup(ice=ice, forwarding=True))


def client_peer_connection(ice: IceConfig | None) -> RTCPeerConnection:
    """A stock (decoding, encoding) peer connection whose ICE gathers on `ice.addresses`."""
    if ice is None:
        return RTCPeerConnection(RTCConfiguration(iceServers=[]))
    return SeamPeerConnection(PeerSetup(ice=ice, forwarding=False))


def transceiver_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The codecs negotiated for a transceiver (aiortc keeps them in `_codecs`)."""
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    return codecs

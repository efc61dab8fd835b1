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

import contextvars
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiortc.rtcicetransport as _rtcicetransport
import aiortc.rtcpeerconnection as _rtcpeerconnection
from aioice import Connection
from aioice.ice import CandidatePair
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport, RtpRouter
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
)
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

from sfu.ice.connection import IceConfig, SfuConnection, make_connection_factory
from sfu.media.forwarding_sender import ForwardingSender
from sfu.media.internals import (
    CONNECTION_PRIVATE,
    DTLS_PRIVATE,
    ICE_PRIVATE,
    RECEIVER_PRIVATE,
    ROUTER_ATTRIBUTES,
    SENDER_PRIVATE,
    TRACK_PRIVATE,
    TRANSCEIVER_PRIVATE,
    internal,
    set_internal,
)
from sfu.media.rtp_fast_path import RtpFastPath
from sfu.media.tap_receiver import RtpSink, TapReceiver

__all__ = [
    "ForwardingSender",
    "PeerSetup",
    "RtpSink",
    "SeamPeerConnection",
    "TapReceiver",
    "check_seams",
    "client_peer_connection",
    "install",
    "renew_sender",
    "sfu_peer_connection",
    "transceiver_codecs",
]

logger = logging.getLogger(__name__)

_STOCK_RECEIVER = RTCRtpReceiver
_STOCK_SENDER = RTCRtpSender
_STOCK_CONNECTION = Connection


@dataclass(frozen=True, slots=True)
class PeerSetup:
    """How one SFU-side (or test-client) peer connection is built."""

    ice: IceConfig | None
    forwarding: bool
    """True on the SFU: receivers tap RTP without decoding, senders forward RTP."""


_SETUP: contextvars.ContextVar[PeerSetup | None] = contextvars.ContextVar(
    "sfu_peer_setup", default=None
)


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
    set_internal(_rtcpeerconnection, "RTCRtpReceiver", _receiver_factory)
    set_internal(_rtcpeerconnection, "RTCRtpSender", _sender_factory)
    set_internal(_rtcicetransport, "Connection", _connection_factory)
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
    for attr in RECEIVER_PRIVATE:
        if attr not in init_code.co_names:
            problems.append(f"RTCRtpReceiver no longer sets {attr}")
    sender_code = RTCRtpSender.__init__.__code__
    for attr in SENDER_PRIVATE:
        if attr not in sender_code.co_names:
            problems.append(f"RTCRtpSender no longer sets {attr}")
    for cls, method in (
        (RTCRtpReceiver, "_send_rtcp_pli"),
        (RTCRtpReceiver, "_send_rtcp_nack"),  # and client_seams.observe_sent_nacks
        (RTCRtpReceiver, "_run_rtcp"),
        (RTCRtpReceiver, "_send_rtcp"),
        (RTCRtpReceiver, "_handle_rtp_packet"),  # client_seams.observe_received_rtp
        (RTCRtpSender, "_send_rtcp"),
        (RTCRtpSender, "_handle_rtcp_packet"),  # client_seams.observe_received_rtcp
        (RTCRtpSender, "_send_keyframe"),  # client_seams.on_keyframe_request
        (RTCDtlsTransport, "_send_rtp"),  # and client_seams.drop_outgoing_rtp
        (RTCDtlsTransport, "_handle_rtp_data"),  # client_seams.drop_incoming_rtp
        (RTCDtlsTransport, "_register_rtp_sender"),
        (RTCDtlsTransport, "_register_rtp_receiver"),
        (RtpRouter, "register_receiver"),  # client_seams.accept_renegotiated_codecs
        (ForwardingSender, "_send_plain"),  # client_seams.drop_forwarded_rtp
    ):
        if not hasattr(cls, method):
            problems.append(f"{cls.__name__}.{method} is gone")
    owners: tuple[tuple[type, tuple[str, ...]], ...] = (
        (RTCDtlsTransport, DTLS_PRIVATE),
        (RTCIceTransport, ICE_PRIVATE),
        (Connection, CONNECTION_PRIVATE),
        (MediaStreamTrack, TRACK_PRIVATE),
        (RtpRouter, ROUTER_ATTRIBUTES),
    )
    for owner, names in owners:
        code = vars(owner)["__init__"].__code__
        problems += [
            f"{owner.__name__} no longer sets {n}" for n in names if n not in code.co_names
        ]
    if not {"protocol", "remote_addr"} <= set(dir(CandidatePair)) | set(
        CandidatePair.__init__.__code__.co_names
    ):
        problems.append("aioice CandidatePair has no protocol/remote_addr")
    transceiver_code = RTCRtpTransceiver.__init__.__code__
    if "_codecs" not in transceiver_code.co_names:
        problems.append("RTCRtpTransceiver no longer keeps _codecs")
    for attr in TRANSCEIVER_PRIVATE:
        if attr not in transceiver_code.co_names:
            problems.append(f"RTCRtpTransceiver no longer sets {attr}")
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
        self._install_fast_paths()

    async def setLocalDescription(
        self, sessionDescription: RTCSessionDescription | None = None
    ) -> None:
        await self._awaited(
            lambda: super(SeamPeerConnection, self).setLocalDescription(sessionDescription)
        )
        self._install_fast_paths()

    def _install_fast_paths(self) -> None:
        """On the SFU, bind each DTLS transport's ICE connection to an RtpFastPath (once)."""
        if not self.setup.forwarding:
            return
        for transceiver in self.getTransceivers():
            dtls = transceiver.receiver.transport
            connection = internal(dtls.transport, "_connection")
            if isinstance(connection, SfuConnection) and connection.rtp_handler is None:
                connection.rtp_handler = RtpFastPath(dtls)

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


def renew_sender(transceiver: RTCRtpTransceiver) -> ForwardingSender:
    """Give a transceiver whose ForwardingSender has stopped its successor (the same stream,
    continued: ForwardingSender.successor), so its m-line can carry another track: aiortc
    cannot remove a transceiver, and keeps one sender for the transceiver's life."""
    old = transceiver.sender
    if not isinstance(old, ForwardingSender):
        raise TypeError("only a ForwardingSender's transceiver is renewed")
    sender = old.successor()
    set_internal(transceiver, TRANSCEIVER_PRIVATE[0], sender)
    return sender


def transceiver_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The codecs negotiated for a transceiver (aiortc keeps them in `_codecs`)."""
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    return codecs

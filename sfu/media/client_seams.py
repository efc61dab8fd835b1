"""The test client's and the load tester's hooks into aiortc (sfu/client, sfu/loadtest).

The SFU itself does not use them. Each private name they read or replace is listed in
sfu/media/internals.py and checked by seams.check_seams(). A hook that replaces a method does
so on one object, with an instance attribute that shadows the class's method; the class is
untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import AnyRtcpPacket, RtpPacket

from sfu.ice.connection import SfuConnection
from sfu.media.forwarding_sender import ForwardingSender
from sfu.media.internals import internal
from sfu.media.seams import transceiver_codecs
from sfu.media.tap_receiver import TapReceiver

logger = logging.getLogger(__name__)

# Instance attributes the hooks below add to aiortc objects (their own names, not aiortc's).
_OBSERVED_RTP = "_sfu_observed_rtp"
_OBSERVED_NACKS = "_sfu_observed_nacks"
_ORIGINAL_SEND_RTP = "_sfu_original_send_rtp"
_ORIGINAL_SEND_PLAIN = "_sfu_original_send_plain"
_ORIGINAL_HANDLE_RTP_DATA = "_sfu_original_handle_rtp_data"


# --- receivers --------------------------------------------------------------------------------


def accept_renegotiated_codecs(pc: RTCPeerConnection) -> None:
    """Make each started receiver accept the payload types its section now negotiates.

    The SFU reuses an ended subscription's section for the next track of the same kind,
    which may be in another codec (a VP8 screen share, then an H.264 one): the same SSRC,
    a payload type the re-offer added. aiortc's RTCRtpReceiver.receive() applies its
    parameters on its first call only (its codec table, and the payload types the
    transport's RtpRouter accepts for it, an SSRC being routed only with one of those), so
    every packet of the new codec would be dropped as unroutable and the track never play.
    A browser updates both on renegotiation. Codecs no longer offered are kept (packets
    still in flight)."""
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        if not internal(receiver, "_RTCRtpReceiver__started"):
            continue  # its first receive() takes the negotiated codecs
        codecs: dict[int, Any] = internal(receiver, "_RTCRtpReceiver__codecs")
        listed = transceiver_codecs(transceiver)
        negotiated = {c.payloadType: c for c in listed if c.payloadType is not None}
        added = [pt for pt in negotiated if pt not in codecs]
        codecs.update(negotiated)
        if added:
            router = internal(receiver.transport, "_rtp_router")
            router.register_receiver(receiver, ssrcs=[], payload_types=added)


def observe_received_rtp(receiver: RTCRtpReceiver, observe: Callable[[RtpPacket], None]) -> bool:
    """Call `observe(packet)` for each RTP packet reaching `receiver`, before it handles it.

    The receiver's entry point is shadowed by an instance attribute (the class is untouched):
    a TapReceiver's synchronous `handle_rtp`, which both aiortc's queued path and the
    socket-callback fast path (RtpFastPath) call; a stock receiver's `_handle_rtp_packet`.
    Once per receiver: returns False, doing nothing, if it is observed already."""
    attributes = vars(receiver)
    if attributes.get(_OBSERVED_RTP):
        return False
    if isinstance(receiver, TapReceiver):
        handle: Callable[[RtpPacket, int], None] = receiver.handle_rtp

        def observed_sync(packet: RtpPacket, arrival_time_ms: int) -> None:
            observe(packet)
            handle(packet, arrival_time_ms)

        attributes["handle_rtp"] = observed_sync
    else:
        original: Callable[..., Awaitable[None]] = receiver._handle_rtp_packet

        async def observed(packet: RtpPacket, *args: Any, **kwargs: Any) -> None:
            observe(packet)
            await original(packet, *args, **kwargs)

        attributes["_handle_rtp_packet"] = observed
    attributes[_OBSERVED_RTP] = True
    return True


def observe_sent_nacks(receiver: RTCRtpReceiver, observe: Callable[[int, list[int]], None]) -> bool:
    """Call `observe(media_ssrc, lost)` for each RTCP NACK `receiver` sends, before sending it
    (aiortc's `_send_rtcp_nack`, shadowed by an instance attribute; TapReceiver sends its
    NACKs the same way). Once per receiver: returns False, doing nothing, if it is observed
    already."""
    attributes = vars(receiver)
    if attributes.get(_OBSERVED_NACKS):
        return False
    original: Callable[[int, list[int]], Awaitable[None]] = receiver._send_rtcp_nack

    async def observed(media_ssrc: int, lost: list[int]) -> None:
        observe(media_ssrc, lost)
        await original(media_ssrc, lost)

    attributes["_send_rtcp_nack"] = observed
    attributes[_OBSERVED_NACKS] = True
    return True


@dataclass(frozen=True, slots=True)
class ReceivedStream:
    """One SSRC a receiver got packets on, with aiortc's statistics of it (what the
    receiver's RTCP receiver reports carry)."""

    ssrc: int
    statistics: StreamStatistics
    rtx: bool
    """True for a retransmission (RTX) stream, False for a media stream."""


def received_streams(receiver: RTCRtpReceiver) -> list[ReceivedStream]:
    """The receiver's per-SSRC receive statistics now (stock or tap receiver alike)."""
    streams: dict[int, StreamStatistics] = internal(receiver, "_RTCRtpReceiver__remote_streams")
    rtx_ssrcs: dict[int, int] = internal(receiver, "_RTCRtpReceiver__rtx_ssrc")
    return [
        ReceivedStream(ssrc, statistics, ssrc in rtx_ssrcs)
        for ssrc, statistics in list(streams.items())
    ]


# --- transports -------------------------------------------------------------------------------


def negotiated_srtp_profile(dtls: RTCDtlsTransport) -> bytes | None:
    """The OpenSSL name of the DTLS-SRTP profile `dtls` negotiated (b"SRTP_AEAD_AES_128_GCM",
    ...), read from its SSL connection; None before the handshake."""
    ssl = internal(dtls, "_ssl")
    try:
        profile = ssl.get_selected_srtp_profile() if ssl is not None else None
    except (AttributeError, ValueError):
        return None
    return profile if isinstance(profile, bytes) else None


def ssrc_routes(dtls: RTCDtlsTransport) -> Mapping[int, RTCRtpReceiver]:
    """The SSRC → receiver table of the transport's RTP router: aiortc's own dict, kept up to
    date as receivers register and as the router learns SSRCs from payload types."""
    table: dict[int, RTCRtpReceiver] = internal(dtls, "_rtp_router").ssrc_table
    return table


def socket_rtp_handler(dtls: RTCDtlsTransport) -> Callable[[bytes], bool] | None:
    """What takes SRTP datagrams in the socket callback of `dtls`'s ICE connection (an
    SfuConnection's `rtp_handler`: RtpFastPath on a forwarding peer connection); None on a
    stock aioice connection or before one is set."""
    connection = internal(dtls.transport, "_connection")
    return connection.rtp_handler if isinstance(connection, SfuConnection) else None


def set_socket_rtp_handler(dtls: RTCDtlsTransport, handler: Callable[[bytes], bool]) -> None:
    """Replace the socket-callback handler of `dtls`'s ICE connection (an SfuConnection)."""
    connection = internal(dtls.transport, "_connection")
    if not isinstance(connection, SfuConnection):
        raise TypeError(f"no socket RTP handler on a {type(connection).__name__}")
    connection.rtp_handler = handler


def drop_outgoing_rtp(transport: RTCDtlsTransport, should_drop: Callable[[bytes], bool]) -> None:
    """Discard each packet `transport` would send (plain RTP or RTCP, before SRTP) for which
    `should_drop(data)` is true. aiortc's `_send_rtp` is shadowed by an instance attribute;
    a later call replaces the filter (it wraps aiortc's method again, not the earlier
    filter). Not for a ForwardingSender's packets: see drop_forwarded_rtp."""
    attributes = vars(transport)
    original: Callable[[bytes], Awaitable[None]] = attributes.get(
        _ORIGINAL_SEND_RTP, transport._send_rtp
    )

    async def send_rtp(data: bytes) -> None:
        if should_drop(data):
            return
        await original(data)

    attributes[_ORIGINAL_SEND_RTP] = original
    attributes["_send_rtp"] = send_rtp


def drop_incoming_rtp(transport: RTCDtlsTransport, should_drop: Callable[[bytes], bool]) -> None:
    """Discard each decrypted RTP packet `transport` received for which `should_drop(data)`
    is true, before it is parsed and routed (aiortc's `_handle_rtp_data`, shadowed; a later
    call replaces the filter). Datagrams a socket RTP handler takes (RtpFastPath, on
    forwarding peer connections) never get there."""
    attributes = vars(transport)
    original: Callable[[bytes, int], Awaitable[None]] = attributes.get(
        _ORIGINAL_HANDLE_RTP_DATA, transport._handle_rtp_data
    )

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        if should_drop(data):
            return
        await original(data, arrival_time_ms)

    attributes[_ORIGINAL_HANDLE_RTP_DATA] = original
    attributes["_handle_rtp_data"] = handle_rtp_data


def drop_forwarded_rtp(sender: ForwardingSender, should_drop: Callable[[bytes], bool]) -> None:
    """As drop_outgoing_rtp, for a ForwardingSender, whose packets (its retransmissions too)
    never pass through the transport's `_send_rtp`: its `_send_plain` is shadowed."""
    attributes = vars(sender)
    original: Callable[[bytes], None] = attributes.get(_ORIGINAL_SEND_PLAIN, sender._send_plain)

    def send_plain(plain: bytes) -> None:
        if should_drop(plain):
            return
        original(plain)

    attributes[_ORIGINAL_SEND_PLAIN] = original
    attributes["_send_plain"] = send_plain


# --- senders and tracks -----------------------------------------------------------------------


class SenderSsrcs(NamedTuple):
    media: int
    rtx: int
    """Used once RTX is negotiated."""


def sender_ssrcs(sender: RTCRtpSender) -> SenderSsrcs:
    """The SSRCs `sender` sends media and retransmissions with (aiortc draws them at
    construction; a ForwardingSender's successor keeps them)."""
    return SenderSsrcs(sender._ssrc, sender._rtx_ssrc)


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Make each PLI or FIR that `sender` receives call `callback`, instead of aiortc's
    `_send_keyframe` (a flag for its encoder, which pre-encoded packets never consult)."""
    vars(sender)["_send_keyframe"] = callback


def observe_received_rtcp(sender: RTCRtpSender, observe: Callable[[AnyRtcpPacket], None]) -> None:
    """Call `observe(packet)` for each RTCP packet routed to `sender` (receiver reports, REMB,
    NACK, PLI...), before it handles it (its `_handle_rtcp_packet`, shadowed; a second call
    observes through the first)."""
    original: Callable[[AnyRtcpPacket], Awaitable[None]] = sender._handle_rtcp_packet

    async def observed(packet: AnyRtcpPacket) -> None:
        observe(packet)
        await original(packet)

    vars(sender)["_handle_rtcp_packet"] = observed


async def deliver_rtcp(sender: RTCRtpSender, packet: AnyRtcpPacket) -> None:
    """Hand `sender` an RTCP packet as if its transport had received it (tests)."""
    await sender._handle_rtcp_packet(packet)


def set_track_id(track: MediaStreamTrack, track_id: str) -> None:
    """Give a local track a chosen id (aiortc draws a uuid): the msid the remote side sees."""
    track._id = track_id

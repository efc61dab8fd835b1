"""RtpFastPath: incoming SRTP handled in the socket callback, off aiortc's coroutine chain.

aiortc receives every datagram through aioice's `asyncio.Queue` and four coroutine layers
(`Connection.recvfrom` → `RTCDtlsTransport._recv_next` → `_handle_rtp_data` →
`RTCRtpReceiver._handle_rtp_packet`): a future wake-up and a task step per packet, which under
load cost more than the forwarding itself. On the SFU every RTP receiver is a `TapReceiver`
whose work is synchronous, so the ICE socket's `datagram_received` hands SRTP (not SRTCP) to an
`RtpFastPath` bound to the DTLS transport, which unprotects, parses, routes and taps it in the
same call. Everything else — STUN, DTLS, SRTCP, datagrams before DTLS-SRTP keys exist or after
the transport closed — returns False and goes aiortc's way, unchanged.

What aiortc would do with the same datagram is kept: unprotect failures and unparsable packets
are dropped (logged at debug), the transport's receive counters are advanced, arrival time is
aiortc's clock (milliseconds since the NTP epoch), routing is the transport's own RtpRouter.
"""

from __future__ import annotations

import logging

import pylibsrtp
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtp import RtpPacket

from sfu import background
from sfu.media.clock import arrival_ms
from sfu.media.internals import internal, set_internal
from sfu.media.tap_receiver import TapReceiver

logger = logging.getLogger(__name__)

_RX_BYTES = "_RTCDtlsTransport__rx_bytes"
_RX_PACKETS = "_RTCDtlsTransport__rx_packets"


class RtpFastPath:
    """A synchronous consumer of SRTP datagrams for one DTLS transport (see module doc)."""

    __slots__ = ("_dtls", "dropped", "handled")

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls
        self.handled = 0
        self.dropped = 0

    def __call__(self, data: bytes) -> bool:
        """Handle `data` if it is SRTP on a connected transport; False to leave it to aiortc."""
        if len(data) < 12 or not 127 < data[0] < 192 or 191 < data[1] < 209:
            return False  # not RTP, or RTCP (RFC 5761 demultiplexing, as aiortc's is_rtcp)
        dtls = self._dtls
        srtp = dtls._rx_srtp
        if srtp is None or dtls._state is not DtlsState.CONNECTED:
            return False
        set_internal(dtls, _RX_BYTES, internal(dtls, _RX_BYTES) + len(data))
        set_internal(dtls, _RX_PACKETS, internal(dtls, _RX_PACKETS) + 1)
        try:
            plain = srtp.unprotect(data)
        except pylibsrtp.Error as exc:
            self.dropped += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%r: SRTP unprotect failed: %s", dtls, exc)
            return True
        try:
            packet = RtpPacket.parse(plain, dtls._rtp_header_extensions_map)
        except ValueError as exc:
            self.dropped += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%r: RTP parsing failed: %s", dtls, exc)
            return True
        receiver = dtls._rtp_router.route_rtp(packet)
        self.handled += 1
        if isinstance(receiver, TapReceiver):
            receiver.handle_rtp(packet, arrival_ms())
        elif receiver is not None:
            background.spawn(receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_ms()))
        return True

"""Access to aiortc's private attributes, in one place so each use is listed and checked
(see seams.check_seams)."""

from __future__ import annotations

from typing import Any

RECEIVER_PRIVATE = (
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
SENDER_PRIVATE = ("_RTCRtpSender__started",)
TRANSCEIVER_PRIVATE = ("_RTCRtpTransceiver__sender",)
"""A subscriber's inactive transceiver is given a fresh ForwardingSender when it is reused for
another track (aiortc's sender is fixed for a transceiver's life)."""
DTLS_PRIVATE = (
    "_tx_srtp",
    "_rx_srtp",
    "_state",
    "_rtp_router",
    "_rtp_header_extensions_map",
    "_RTCDtlsTransport__rx_bytes",
    "_RTCDtlsTransport__rx_packets",
    "_ssl",
)
"""ForwardingSender protects and sends on its own (RTCDtlsTransport's tx SRTP session and
state); RtpFastPath unprotects, parses and routes on its own (rx SRTP session, header extension
map, RTP router, receive counters); the load tester's HeaderCountingPath reads the negotiated
SRTP profile from `_ssl`."""
ICE_PRIVATE = ("_connection",)
"""RTCIceTransport's aioice Connection, whose `_nominated[1]` pair (protocol, remote_addr) the
ForwardingSender sends on."""


def internal(obj: object, name: str) -> Any:
    """Read a private attribute of aiortc (listed in RECEIVER_PRIVATE / checked by
    check_seams)."""
    return getattr(obj, name)


def set_internal(obj: object, name: str, value: object) -> None:
    setattr(obj, name, value)

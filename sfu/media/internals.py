"""Access to aiortc's private attributes, in one place so each use is listed and checked
(see seams.check_seams).

Users: seams.py, tap_receiver.py, forwarding_sender.py and rtp_fast_path.py (the SFU), and
client_seams.py (the test client's and the load tester's hooks)."""

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
"""TapReceiver's state; client_seams reads `__codecs` and `__started` (codecs added on
renegotiation) and `__remote_streams` and `__rtx_ssrc` (the load tester's loss counts)."""
SENDER_PRIVATE = ("_RTCRtpSender__started", "_ssrc", "_rtx_ssrc")
"""`_ssrc`/`_rtx_ssrc`: a ForwardingSender's successor keeps them; client_seams.sender_ssrcs
reads them (the test client's loss injection)."""
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
map, RTP router, receive counters); client_seams reads the negotiated SRTP profile from `_ssl`
and the RTP router's SSRC table (the load tester's header counting) and registers payload
types with the router (renegotiated codecs)."""
ICE_PRIVATE = ("_connection",)
"""RTCIceTransport's aioice Connection, whose `_nominated[1]` pair (protocol, remote_addr) the
ForwardingSender sends on; its `rtp_handler` (an SfuConnection's) is where RtpFastPath and the
load tester's HeaderCountingPath are installed (client_seams.socket_rtp_handler)."""
CONNECTION_PRIVATE = ("_nominated", "_protocols")
"""aioice's Connection: the nominated pairs (above), and the protocol list SfuConnection adds
its host sockets to (sfu/ice/connection.py)."""
TRACK_PRIVATE = ("_id",)
"""MediaStreamTrack's id, which a local track may choose (client_seams.set_track_id)."""
ROUTER_ATTRIBUTES = ("ssrc_table",)
"""RtpRouter's SSRC → receiver table (client_seams.ssrc_routes)."""


def internal(obj: object, name: str) -> Any:
    """Read a private attribute of aiortc (listed in RECEIVER_PRIVATE / checked by
    check_seams)."""
    return getattr(obj, name)


def set_internal(obj: object, name: str, value: object) -> None:
    setattr(obj, name, value)

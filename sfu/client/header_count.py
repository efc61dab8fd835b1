"""HeaderCountingPath: a counting subscriber reads the cleartext RTP header of SRTP packets.

SRTP encrypts the payload only (RFC 3711 §3.1): sequence number, timestamp, marker, payload
type and SSRC are readable as they arrive. A subscriber that only counts packets, frames, bytes
and loss (the load tester's receivers) therefore does not need to authenticate, decrypt and
fully parse each packet: this path takes the header, builds a small packet-like `RtpHeader`
and hands it to the TapReceiver as the full path would (receiver statistics for RR and loss,
NACK generation, the frame counter). Octets are the SRTP payload length minus the
authentication tag of the negotiated profile (16 bytes for AES-GCM, 10 for
AES_CM_128_HMAC_SHA1_80). What it cannot do from the header goes the full way (`RtpFastPath`):
RTX (the original sequence number is in the encrypted payload), a payload type or SSRC not
routed yet, padding-only packets are counted as payload (the padding length is encrypted).

Not for decoding subscribers (they use stock aiortc), nor for anything but the load tester and
tests: the payload is not authenticated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from aiortc.codecs import is_rtx
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtpPacket

from sfu.media.client_seams import negotiated_srtp_profile, ssrc_routes
from sfu.media.clock import arrival_ms
from sfu.media.tap_receiver import TapReceiver

SRTP_TAG_LENGTHS = {
    b"SRTP_AEAD_AES_256_GCM": 16,
    b"SRTP_AEAD_AES_128_GCM": 16,
    b"SRTP_AES128_CM_SHA1_80": 10,
    b"SRTP_AES128_CM_SHA1_32": 4,
}
"""Bytes after the payload of an SRTP packet, by the DTLS-SRTP profile's OpenSSL name."""


def negotiated_tag_length(dtls: RTCDtlsTransport) -> int | None:
    """The SRTP tag length of `dtls`'s negotiated profile; None before DTLS or if unknown."""
    profile = negotiated_srtp_profile(dtls)
    return SRTP_TAG_LENGTHS.get(profile) if profile is not None else None


class _NoExtensions:
    __slots__ = ()
    abs_send_time = None
    audio_level = None
    mid = None


_NO_EXTENSIONS = _NoExtensions()


class RtpHeader:
    """The fields of an RtpPacket a counting TapReceiver reads; `payload` is a memoryview of
    the still-encrypted payload, used for its length only."""

    __slots__ = ("marker", "payload", "payload_type", "sequence_number", "ssrc", "timestamp")
    padding_size = 0
    extensions = _NO_EXTENSIONS

    def __init__(
        self, payload_type: int, marker: bool, seq: int, ts: int, ssrc: int, payload: memoryview
    ) -> None:
        self.payload_type = payload_type
        self.marker = marker
        self.sequence_number = seq
        self.timestamp = ts
        self.ssrc = ssrc
        self.payload = payload


def parse_header(data: bytes, tag_length: int) -> RtpHeader | None:
    """The RTP header of an SRTP packet (RFC 3550 §5.1, extension and CSRCs skipped)."""
    if len(data) < 12 + tag_length or data[0] >> 6 != 2:
        return None
    first, second = data[0], data[1]
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10:  # header extension
        if len(data) < offset + 4:
            return None
        offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
    end = len(data) - tag_length
    if offset > end:
        return None
    return RtpHeader(
        second & 0x7F,
        bool(second & 0x80),
        int.from_bytes(data[2:4], "big"),
        int.from_bytes(data[4:8], "big"),
        int.from_bytes(data[8:12], "big"),
        memoryview(data)[offset:end],
    )


class HeaderCountingPath:
    """An ICE connection's `rtp_handler` for a counting subscriber (see module doc)."""

    __slots__ = ("_dtls", "_full", "_routes", "_tag_length", "counted")

    def __init__(
        self,
        dtls: RTCDtlsTransport,
        full: Callable[[bytes], bool],
        *,
        tag_length: int | None = None,
    ) -> None:
        """`tag_length`: None to read it from the negotiated DTLS-SRTP profile."""
        self._dtls = dtls
        self._full = full
        self._routes = ssrc_routes(dtls)
        self._tag_length = tag_length
        self.counted = 0

    def __call__(self, data: bytes) -> bool:
        if len(data) < 2 or 191 < data[1] < 209:
            return self._full(data)  # RTCP and non-RTP: the full path decides
        tag_length = self._tag_length
        if tag_length is None:
            tag_length = self._tag_length = negotiated_tag_length(self._dtls)
            if tag_length is None:
                return self._full(data)  # no profile (yet): decrypt
        header = parse_header(data, tag_length)
        if header is None:
            return self._full(data)
        receiver = self._routes.get(header.ssrc)
        if not isinstance(receiver, TapReceiver):
            return self._full(data)
        codec = receiver.codecs.get(header.payload_type)
        if codec is None or is_rtx(codec):
            return self._full(data)
        self.counted += 1
        receiver.handle_rtp(cast(RtpPacket, header), arrival_ms())
        return True

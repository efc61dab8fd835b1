"""Per-subscriber RTP header rewriting, kept free of sockets and aiortc so it can be unit tested.

A subscriber's sender has one SSRC and its own sequence-number and timestamp spaces. Incoming
values are shifted by fixed offsets chosen at the first forwarded packet, so a gap upstream stays
a gap downstream (a NACK for a rewritten number maps back to exactly one upstream packet) and a
late retransmission lands on the number the subscriber is missing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32


def seq_newer(a: int, b: int) -> bool:
    """True when 16-bit sequence number a comes after b (RFC 3550 arithmetic)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


@dataclass(slots=True)
class RtpRewriter:
    """Maps (payload type, sequence number, timestamp) from a publisher to one subscriber."""

    first_seq: int
    first_timestamp: int
    payload_types: dict[int, int] = field(default_factory=dict)
    """Publisher payload type → the subscriber's negotiated payload type for the same codec."""
    seq_offset: int = 0
    ts_offset: int = 0
    started: bool = False
    highest_out_seq: int = 0
    last_out_timestamp: int = 0

    def start(self, seq: int, timestamp: int) -> None:
        self.seq_offset = (self.first_seq - seq) % SEQ_MOD
        self.ts_offset = (self.first_timestamp - timestamp) % TS_MOD
        self.highest_out_seq = (self.first_seq - 1) % SEQ_MOD
        self.started = True

    def map_payload_type(self, payload_type: int) -> int | None:
        return self.payload_types.get(payload_type)

    def rewrite(self, seq: int, timestamp: int) -> tuple[int, int]:
        """Rewritten (sequence number, timestamp); starts the mapping on the first call."""
        if not self.started:
            self.start(seq, timestamp)
        out_seq = (seq + self.seq_offset) % SEQ_MOD
        out_ts = (timestamp + self.ts_offset) % TS_MOD
        if seq_newer(out_seq, self.highest_out_seq):
            self.highest_out_seq = out_seq
            self.last_out_timestamp = out_ts
        return out_seq, out_ts

    def to_subscriber_timestamp(self, timestamp: int) -> int:
        return (timestamp + self.ts_offset) % TS_MOD


MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ONE_BYTE_PROFILE = b"\xbe\xde"
_HEADER = struct.Struct("!BBHII")
_ABS = struct.Struct("!I")


class RtpWriter:
    """Serializes one subscriber's RTP packets: the 12-byte header and an RFC 8285 one-byte
    extension block with the subscriber's ids for mid, abs-send-time and audio level (the
    extensions the SFU negotiates). Precomputes what is the same for every packet."""

    __slots__ = ("_abs_id", "_level_id", "_mid_element", "ssrc")

    def __init__(self, ssrc: int, extensions: dict[str, int], mid: str | None) -> None:
        self.ssrc = ssrc
        mid_id = extensions.get(MID_URI)
        mid_bytes = mid.encode() if mid else b""
        self._mid_element = b""
        if mid_id and 0 < len(mid_bytes) <= 16:
            self._mid_element = bytes([(mid_id << 4) | (len(mid_bytes) - 1)]) + mid_bytes
        abs_id = extensions.get(ABS_SEND_TIME_URI)
        level_id = extensions.get(AUDIO_LEVEL_URI)
        self._abs_id = ((abs_id << 4) | 2) if abs_id else 0
        self._level_id = (level_id << 4) if level_id else 0

    def write(
        self,
        payload_type: int,
        marker: int,
        seq: int,
        timestamp: int,
        payload: bytes,
        abs_send_time: int,
        audio_level: tuple[bool, int] | None,
    ) -> bytes:
        body = self._mid_element
        if self._abs_id:
            body += _ABS.pack((self._abs_id << 24) | (abs_send_time & 0xFFFFFF))
        if self._level_id and audio_level is not None:
            body += bytes(
                [self._level_id, (0x80 if audio_level[0] else 0) | (audio_level[1] & 0x7F)]
            )
        if not body:
            return (
                _HEADER.pack(0x80, (marker << 7) | payload_type, seq, timestamp, self.ssrc)
                + payload
            )
        pad = -len(body) % 4
        if pad:
            body += b"\x00" * pad
        return (
            _HEADER.pack(0x90, (marker << 7) | payload_type, seq, timestamp, self.ssrc)
            + ONE_BYTE_PROFILE
            + (len(body) >> 2).to_bytes(2, "big")
            + body
            + payload
        )

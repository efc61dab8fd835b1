"""Per-subscriber RTP header rewriting, kept free of sockets and aiortc so it can be unit tested.

A subscriber's sender has one SSRC and its own sequence-number and timestamp spaces. Incoming
values are shifted by fixed offsets chosen at the first forwarded packet, so a gap upstream stays
a gap downstream (a NACK for a rewritten number maps back to exactly one upstream packet) and a
late retransmission lands on the number the subscriber is missing.
"""

from __future__ import annotations

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

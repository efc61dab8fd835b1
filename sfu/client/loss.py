"""Test hook: drop first transmissions of outgoing video RTP, to exercise upstream NACK.

The hook filters what one DTLS transport sends (stock senders), or what one ForwardingSender
sends (the direct publisher, whose packets never pass through the transport's send path), with
``sfu.media.client_seams.drop_outgoing_rtp`` / ``drop_forwarded_rtp``. RTCP always passes, and
so does every retransmission: RTX packets carry the RTX SSRC (not a media SSRC in the set), and
a plain retransmission repeats a (SSRC, sequence number) already seen.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable

from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtpPacket, is_rtcp

from sfu.media.client_seams import drop_forwarded_rtp, drop_outgoing_rtp
from sfu.media.forwarding_sender import ForwardingSender

logger = logging.getLogger(__name__)

DropPredicate = Callable[[RtpPacket], bool]

SEEN_WINDOW = 4096
"""How many recent (SSRC, sequence number) pairs are remembered to recognise retransmissions."""


class OutgoingVideoDropper:
    """Decides, per outgoing RTP packet, whether it is dropped; counts what it dropped."""

    def __init__(self, predicate: DropPredicate) -> None:
        self.predicate = predicate
        self.video_ssrcs: set[int] = set()
        self.rtx_ssrcs: set[int] = set()
        """RTX SSRCs of the same senders: only counted, never dropped."""
        self.dropped_packets = 0
        self.first_transmissions = 0
        self.retransmissions = 0
        """RTX packets plus plain repeats of an already seen sequence number."""
        self._seen: set[tuple[int, int]] = set()
        self._order: deque[tuple[int, int]] = deque()

    @classmethod
    def fraction(cls, fraction: float, seed: int = 0) -> OutgoingVideoDropper:
        """Drop each first transmission with probability ``fraction`` (seeded, reproducible)."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be within [0, 1], got {fraction}")
        rng = random.Random(seed)
        return cls(lambda _packet: rng.random() < fraction)

    def should_drop(self, data: bytes) -> bool:
        if len(data) < 12 or is_rtcp(data):
            return False
        ssrc = int.from_bytes(data[8:12], "big")
        if ssrc in self.rtx_ssrcs:
            self.retransmissions += 1
            return False
        if ssrc not in self.video_ssrcs:
            return False
        key = (ssrc, int.from_bytes(data[2:4], "big"))
        if key in self._seen:
            self.retransmissions += 1  # a retransmission without RTX
            return False
        self._seen.add(key)
        self._order.append(key)
        if len(self._order) > SEEN_WINDOW:
            self._seen.discard(self._order.popleft())
        self.first_transmissions += 1
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            return False
        if self.predicate(packet):
            self.dropped_packets += 1
            return True
        return False

    def install(self, transport: RTCDtlsTransport) -> None:
        """Filter what ``transport`` sends (client_seams.drop_outgoing_rtp); a later call on
        the same transport replaces the filter, so installing again changes nothing."""
        drop_outgoing_rtp(transport, self.should_drop)

    def install_on_sender(self, sender: ForwardingSender) -> None:
        """Filter the plain RTP ``sender`` sends, before SRTP (client_seams.drop_forwarded_rtp);
        installing again changes nothing. Its retransmissions go the same way and always
        pass."""
        drop_forwarded_rtp(sender, self.should_drop)

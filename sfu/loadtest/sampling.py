"""What each receiving client got, sampled once a second without decoding.

A subscription is one remote track at one receiver. Its counters (frames, RTP packets, payload
bytes) come from ``sfu.client`` (``RtpFrameCounter`` / ``count_received_packets``, or the
decoding consumer for the sampled receiver); loss comes from the receiver's own RTP statistics
(aiortc's per-SSRC ``StreamStatistics``, the same numbers its receiver reports carry) and the
NACKs it sent (``count_sent_nacks``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiortc import RTCPeerConnection, RTCRtpReceiver

from sfu.client.remote import RemoteTrackInfo
from sfu.loadtest.report import LossCounters, SubscriptionResult
from sfu.media.client_seams import received_streams
from sfu.media.tap_receiver import TapReceiver

logger = logging.getLogger(__name__)

SETTLE_S = 1.0
"""Rates are measured from this long after a subscription's first frame (the first keyframe
and the jitter of the start are left out)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    at: float
    frames: int
    packets: int
    octets: int


def snapshot(info: RemoteTrackInfo, receiver: RTCRtpReceiver | None, at: float) -> Snapshot:
    """Counters now. A tap receiver (``decode=False``) counts packets and payload bytes itself,
    wherever RTP reaches it from (aiortc's receive chain or a synchronous fast path), so its
    counts are used; a decoding receiver's come from ``count_received_packets``."""
    if isinstance(receiver, TapReceiver):
        return Snapshot(at=at, frames=info.frames, packets=receiver.packets, octets=receiver.octets)
    return Snapshot(at=at, frames=info.frames, packets=info.packets, octets=info.octets)


@dataclass(slots=True)
class SubscriptionTracker:
    """Snapshots of one subscription: the baseline of its steady window, the previous and
    the latest tick."""

    room_id: str
    receiver: str
    receiver_role: str
    publisher_role: str
    info: RemoteTrackInfo
    decoded: bool
    rtp_receiver: RTCRtpReceiver | None = None
    """The receiver of the track's m-line (looked up once it exists)."""
    baseline: Snapshot | None = None
    previous: Snapshot | None = None
    last: Snapshot | None = None

    def observe(self, now: float) -> float | None:
        """Take a snapshot; returns the frame rate since the previous one while frames flow."""
        current = snapshot(self.info, self.rtp_receiver, now)
        first = self.info.first_frame_at
        if self.baseline is None and first is not None and now >= first + SETTLE_S:
            self.baseline = current
        previous, self.previous, self.last = self.previous, current, current
        if previous is None or previous.frames == 0 or current.at <= previous.at:
            return None
        return (current.frames - previous.frames) / (current.at - previous.at)

    def result(self, loss: LossCounters) -> SubscriptionResult:
        info = self.info
        end = self.last
        packets = end.packets if end is not None else self.info.packets
        octets = end.octets if end is not None else self.info.octets
        fps: float | None = None
        kbps: float | None = None
        window = 0.0
        start = self.baseline
        if end is not None and start is not None and end.at > start.at:
            window = end.at - start.at
            fps = (end.frames - start.frames) / window
            kbps = (end.octets - start.octets) * 8 / window / 1000
        elif (
            info.first_frame_at is not None
            and info.last_frame_at is not None
            and info.last_frame_at > info.first_frame_at
        ):
            # Shorter than the settle time: the whole span from the first to the last frame.
            window = info.last_frame_at - info.first_frame_at
            fps = (info.frames - 1) / window
        return SubscriptionResult(
            room_id=self.room_id,
            receiver=self.receiver,
            receiver_role=self.receiver_role,
            publisher_role=self.publisher_role,
            kind=info.kind,
            source=info.source,
            decoded=self.decoded,
            frames=info.frames,
            packets=packets,
            bytes=octets,
            window_s=window,
            fps=fps,
            kbps=kbps,
            first_frame_s=info.first_frame_latency_s,
            width=info.width,
            height=info.height,
            loss=loss,
        )


def receiver_of(pc: RTCPeerConnection | None, mid: str | None) -> RTCRtpReceiver | None:
    """The receiver of the transceiver with this mid, if there is one yet."""
    if pc is None or mid is None:
        return None
    for transceiver in pc.getTransceivers():
        if transceiver.mid == mid:
            receiver: RTCRtpReceiver = transceiver.receiver
            return receiver
    return None


def loss_counters(receiver: RTCRtpReceiver | None, info: RemoteTrackInfo) -> LossCounters:
    """Loss of one subscription from its receiver's per-SSRC statistics
    (client_seams.received_streams)."""
    counters = LossCounters(
        nack_packets_sent=info.nack_packets_sent,
        nacked_sequence_numbers=info.nacked_sequence_numbers,
    )
    if receiver is None:
        return counters
    for received in received_streams(receiver):
        stream = received.statistics
        if stream.base_seq is None or stream.max_seq is None:
            continue
        if received.rtx:
            counters.retransmissions_received += int(stream.packets_received)
        else:
            counters.packets_expected += int(stream.packets_expected)
            counters.packets_received += int(stream.packets_received)
    counters.lost_before_retransmission = max(
        0, counters.packets_expected - counters.packets_received
    )
    return counters

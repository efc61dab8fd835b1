"""What the client knows about each remote track, and how it counts what arrives.

Two modes, chosen per client:
- ``decode=True``: a stock aiortc receiver depacketizes and decodes; a consumer task pulls the
  remote track and counts decoded frames (video: size; audio: samples).
- ``decode=False``: the seams' tap receiver hands RTP packets to :class:`RtpFrameCounter` without
  depacketizing or decoding; a frame is counted per RTP marker bit (video) or per packet (audio).
Either way, every RTP packet reaching the receiver (RTX included) is counted per track.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import av
from aiortc import MediaStreamTrack, RTCRtpReceiver
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from sfu.media.client_seams import observe_received_rtp, observe_sent_nacks

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class RemoteTrackInfo:
    """A track announced by a ``subscribe_offer``, with what has been received of it."""

    track_id: str
    participant_id: str
    source: str
    kind: str
    mid: str | None = None
    offered_at: float = field(default_factory=time.monotonic)
    """Monotonic time of the ``subscribe_offer`` that first announced the track."""
    active: bool = True
    """False once a later ``subscribe_offer`` no longer lists it."""
    track: MediaStreamTrack | None = None
    """aiortc's RemoteStreamTrack (its id is the msid track id) once the "track" event fired."""
    frames: int = 0
    packets: int = 0
    octets: int = 0
    samples: int = 0
    first_frame_at: float | None = None
    last_frame_at: float | None = None
    width: int = 0
    height: int = 0
    nack_packets_sent: int = 0
    """RTCP NACK packets this client's receiver sent for the track."""
    nacked_sequence_numbers: int = 0
    """Sequence numbers listed in those NACKs (one is listed again in each later NACK until
    it arrives or is given up)."""

    @property
    def first_frame_latency_s(self) -> float | None:
        """Seconds from the announcing ``subscribe_offer`` to the first frame."""
        if self.first_frame_at is None:
            return None
        return self.first_frame_at - self.offered_at

    def count_frame(self, now: float) -> None:
        self.frames += 1
        if self.first_frame_at is None:
            self.first_frame_at = now
        self.last_frame_at = now


Resolver = Callable[[], RemoteTrackInfo | None]
"""Returns the track currently carried by one subscriber transceiver (m-lines can be reused)."""


async def consume_decoded(track: MediaStreamTrack, resolve: Resolver) -> None:
    """Pull decoded frames from a remote track until it ends, counting them."""
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        info = resolve()
        if info is None:
            continue
        info.count_frame(time.monotonic())
        if isinstance(frame, av.VideoFrame):
            info.width, info.height = frame.width, frame.height
        elif isinstance(frame, av.AudioFrame):
            info.samples += frame.samples


class RtpFrameCounter:
    """A seams ``RtpSink`` for ``decode=False``: counts frames from RTP without decoding."""

    def __init__(self, resolve: Resolver) -> None:
        self._resolve = resolve

    def on_rtp(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        info = self._resolve()
        if info is None:
            return
        if info.kind == "audio":
            info.count_frame(time.monotonic())  # samples are only counted when decoding
        elif packet.marker:
            info.count_frame(time.monotonic())

    def on_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        return None


def count_received_packets(receiver: RTCRtpReceiver, resolve: Resolver) -> None:
    """Count each RTP packet (RTX included) and its payload octets reaching the receiver,
    whichever way it comes (client_seams.observe_received_rtp). Once per receiver."""

    def count(packet: RtpPacket) -> None:
        info = resolve()
        if info is not None:
            info.packets += 1
            info.octets += len(packet.payload)

    observe_received_rtp(receiver, count)


def count_sent_nacks(receiver: RTCRtpReceiver, resolve: Resolver) -> None:
    """Count the NACKs the receiver sends and the sequence numbers they list (once per
    receiver)."""

    def count(media_ssrc: int, lost: list[int]) -> None:
        info = resolve()
        if info is not None:
            info.nack_packets_sent += 1
            info.nacked_sequence_numbers += len(lost)

    observe_sent_nacks(receiver, count)


def track_infos_from_offer(
    tracks: object, known: dict[str, RemoteTrackInfo], now: float
) -> dict[str, str]:
    """Update ``known`` from a ``subscribe_offer``'s ``tracks``; returns mid → track_id.

    Tracks no longer listed are marked inactive (their counters are kept).
    """
    listed: dict[str, RemoteTrackInfo] = {}
    if isinstance(tracks, dict):
        for track_id, raw in tracks.items():
            if not isinstance(track_id, str) or not isinstance(raw, dict):
                logger.warning("ignoring malformed track entry %r in subscribe_offer", track_id)
                continue
            mid = raw.get("mid")
            info = known.get(track_id)
            if info is None:
                info = RemoteTrackInfo(
                    track_id=track_id,
                    participant_id=str(raw.get("participant_id", "")),
                    source=str(raw.get("source", "")),
                    kind=str(raw.get("kind", "")),
                    offered_at=now,
                )
                known[track_id] = info
            info.mid = str(mid) if mid is not None else info.mid
            info.active = True
            listed[track_id] = info
    for track_id, info in known.items():
        if track_id not in listed:
            info.active = False
    return {info.mid: track_id for track_id, info in listed.items() if info.mid is not None}


def cancel_all(tasks: set[asyncio.Task[None]]) -> list[asyncio.Task[None]]:
    """Cancel every task of a set; returns them so the caller can await them (bounded)."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    tasks.clear()
    return pending

"""Errors and plain data of the client: published tracks and stats summaries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiortc import MediaStreamTrack, RTCRtpTransceiver

from sfu.client.remote import RemoteTrackInfo

if TYPE_CHECKING:
    from sfu.client.direct_publish import DirectPacer


class JoinRefused(Exception):
    """The SFU closed the socket before ``joined`` (or refused the WebSocket handshake)."""

    def __init__(self, close_code: int | None, reason: str) -> None:
        super().__init__(f"join refused: close code {close_code} {reason!r}")
        self.close_code = close_code
        self.reason = reason


class SfuErrorReply(Exception):
    """The SFU answered a request with an ``error`` message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SfuConnectionClosed(ConnectionError):
    """The socket closed while waiting for a message that never came."""

    def __init__(self, close_code: int | None, reason: str) -> None:
        super().__init__(f"socket closed (code {close_code} {reason!r})")
        self.close_code = close_code
        self.reason = reason


@dataclass(slots=True)
class LocalTrack:
    """A track this client publishes (the SFU side of a published track is
    sfu.media.publisher.PublishedTrack)."""

    track: MediaStreamTrack
    source: str
    transceiver: RTCRtpTransceiver
    active: bool = True
    pacer: DirectPacer | None = None
    """With ``publish_mode="direct"``: what sends the track's clip (the track's ``recv`` is
    never called then)."""

    @property
    def frames_sent(self) -> int:
        """Encoded frames handed out (by the pacer, or by the track's ``recv``)."""
        if self.pacer is not None:
            return self.pacer.frames_sent
        return int(getattr(self.track, "packets_sent", 0))

    @property
    def keyframe_requests(self) -> int:
        if self.pacer is not None:
            return self.pacer.keyframe_requests
        return int(getattr(self.track, "keyframe_requests", 0))

    @property
    def track_id(self) -> str:
        return str(self.track.id)


@dataclass(frozen=True, slots=True)
class RemoteTrackStats:
    track_id: str
    participant_id: str
    source: str
    kind: str
    active: bool
    frames: int
    packets: int
    octets: int
    samples: int
    width: int
    height: int
    first_frame_latency_s: float | None


@dataclass(frozen=True, slots=True)
class PublishedTrackStats:
    track_id: str
    source: str
    kind: str
    active: bool
    packets_sent: int
    keyframe_requests: int


@dataclass(frozen=True, slots=True)
class ClientStats:
    participant_id: str
    remote: dict[str, RemoteTrackStats]
    published: dict[str, PublishedTrackStats]
    dropped_packets: int
    messages: int


def build_stats(
    participant_id: str,
    remote_tracks: dict[str, RemoteTrackInfo],
    published_tracks: dict[str, LocalTrack],
    *,
    dropped_packets: int,
    messages: int,
) -> ClientStats:
    """Per remote track: frames, packets, first-frame latency since the announcing
    ``subscribe_offer``; per published track: packets sent and keyframe requests."""
    remote = {
        tid: RemoteTrackStats(
            track_id=tid,
            participant_id=info.participant_id,
            source=info.source,
            kind=info.kind,
            active=info.active,
            frames=info.frames,
            packets=info.packets,
            octets=info.octets,
            samples=info.samples,
            width=info.width,
            height=info.height,
            first_frame_latency_s=info.first_frame_latency_s,
        )
        for tid, info in remote_tracks.items()
    }
    published = {
        tid: PublishedTrackStats(
            track_id=tid,
            source=p.source,
            kind=str(p.track.kind),
            active=p.active,
            packets_sent=p.frames_sent,
            keyframe_requests=p.keyframe_requests,
        )
        for tid, p in published_tracks.items()
    }
    return ClientStats(
        participant_id=participant_id,
        remote=remote,
        published=published,
        dropped_packets=dropped_packets,
        messages=messages,
    )

"""Errors and plain data of the client: published tracks and stats summaries."""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import MediaStreamTrack, RTCRtpTransceiver

from sfu.client.remote import RemoteTrackInfo


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
class PublishedTrack:
    track: MediaStreamTrack
    source: str
    transceiver: RTCRtpTransceiver
    active: bool = True

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
    published_tracks: dict[str, PublishedTrack],
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
            packets_sent=int(getattr(p.track, "packets_sent", 0)),
            keyframe_requests=int(getattr(p.track, "keyframe_requests", 0)),
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

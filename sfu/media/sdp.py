"""What an offer says about the tracks a participant sends. Pure parsing, no peer connection."""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import sdp as aiortc_sdp

from sfu.core.errors import InvalidSdp

MAX_SDP_BYTES = 32 * 1024
MAX_MEDIA_SECTIONS = 16
SENDING = ("sendonly", "sendrecv")


@dataclass(frozen=True, slots=True)
class OfferedTrack:
    """A media section of an offer in which the remote side sends a track."""

    mid: str
    kind: str
    track_id: str


def parse_description(sdp: str) -> aiortc_sdp.SessionDescription:
    if len(sdp.encode()) > MAX_SDP_BYTES:
        raise InvalidSdp(f"SDP larger than {MAX_SDP_BYTES} bytes")
    if not sdp.startswith("v=0"):
        raise InvalidSdp("SDP must start with v=0")
    try:
        description = aiortc_sdp.SessionDescription.parse(sdp)
    except (
        ValueError,
        IndexError,
        KeyError,
        TypeError,
        AttributeError,
        AssertionError,
        StopIteration,
    ) as exc:
        raise InvalidSdp(f"SDP could not be parsed: {exc}") from None
    if not description.media:
        raise InvalidSdp("SDP has no media section")
    if len(description.media) > MAX_MEDIA_SECTIONS:
        raise InvalidSdp(f"more than {MAX_MEDIA_SECTIONS} media sections")
    return description


def msid_track_id(media: aiortc_sdp.MediaDescription) -> str | None:
    if media.msid is None:
        return None
    bits = media.msid.split()
    return bits[1] if len(bits) >= 2 else None


def forwardable(media: aiortc_sdp.MediaDescription) -> bool:
    """Whether a section offers a codec the SFU forwards: Opus for audio; VP8, or H.264 with
    packetization-mode 1, for video."""
    for codec in media.rtp.codecs:
        mime = codec.mimeType.lower()
        if media.kind == "audio" and mime == "audio/opus":
            return True
        if media.kind == "video" and mime == "video/vp8":
            return True
        if (
            media.kind == "video"
            and mime == "video/h264"
            and str(codec.parameters.get("packetization-mode", "0")) == "1"
        ):
            return True
    return False


def sending_tracks(description: aiortc_sdp.SessionDescription) -> list[OfferedTrack]:
    """Audio and video sections the offerer sends on (not rejected, sendonly or sendrecv)."""
    tracks: list[OfferedTrack] = []
    for media in description.media:
        if media.kind not in ("audio", "video") or media.port == 0:
            continue
        if media.direction not in SENDING:
            continue
        mid = media.rtp.muxId
        track_id = msid_track_id(media)
        if not mid or not track_id:
            raise InvalidSdp(f"a sending {media.kind} section has no mid or msid")
        if not forwardable(media):
            raise InvalidSdp(
                f"{media.kind} section {mid} offers no codec the SFU forwards "
                "(Opus; VP8 or H.264 packetization-mode 1)"
            )
        tracks.append(OfferedTrack(mid=mid, kind=media.kind, track_id=track_id))
    return tracks

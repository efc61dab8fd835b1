"""Is this RTP payload the first packet of a keyframe? Codec-specific, no decoding."""

from __future__ import annotations

from collections.abc import Callable

H264_NAL_IDR = 5
H264_NAL_SPS = 7
H264_STAP_A = 24
H264_FU_A = 28


def vp8_descriptor_size(payload: bytes) -> int:
    """Length of the VP8 payload descriptor (RFC 7741 §4.2) at the start of an RTP payload;
    the VP8 data follows it. ValueError if the descriptor is truncated, as aiortc's
    `VpxPayloadDescriptor.parse` (same rules, without building the descriptor object)."""
    size = len(payload)
    if not size:
        raise ValueError("VP8 payload descriptor is empty")
    if not payload[0] & 0x80:  # X: no extension byte
        return 1
    if size < 2:
        raise ValueError("VP8 payload descriptor: truncated extension byte")
    ext = payload[1]
    pos = 2
    if ext & 0x80:  # I: picture id, 7 or 15 bits
        if size <= pos:
            raise ValueError("VP8 payload descriptor: truncated PictureID")
        pos += 2 if payload[pos] & 0x80 else 1
    if ext & 0x40:  # L: TL0PICIDX
        pos += 1
    if ext & 0x30:  # T or K: TID/KEYIDX byte
        pos += 1
    if pos > size:
        raise ValueError("VP8 payload descriptor is truncated")
    return pos


def vp8_starts_keyframe(payload: bytes) -> bool:
    """RFC 7741: S bit set, partition 0, and the VP8 frame tag's P bit clear."""
    if not payload:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x07:  # S bit, PartID
        return False
    try:
        pos = vp8_descriptor_size(payload)
    except ValueError:
        return False
    if len(payload) <= pos:
        return False
    return not payload[pos] & 0x01


def h264_starts_keyframe(payload: bytes) -> bool:
    """RFC 6184: a packet that carries an SPS, or starts an IDR slice."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (H264_NAL_IDR, H264_NAL_SPS):
        return True
    if nal_type == H264_STAP_A:
        pos = 1
        while pos + 2 < len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            inner = payload[pos + 2] & 0x1F
            if inner in (H264_NAL_IDR, H264_NAL_SPS):
                return True
            pos += 2 + size
        return False
    if nal_type == H264_FU_A and len(payload) > 1:
        header = payload[1]
        return bool(header & 0x80) and (header & 0x1F) in (H264_NAL_IDR, H264_NAL_SPS)
    return False


def always(payload: bytes) -> bool:
    """Audio: every packet is a fine place to start."""
    return True


def keyframe_detector(mime_type: str) -> Callable[[bytes], bool]:
    mime = mime_type.lower()
    if mime == "video/vp8":
        return vp8_starts_keyframe
    if mime == "video/h264":
        return h264_starts_keyframe
    return always

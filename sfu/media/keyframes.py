"""Is this RTP payload the first packet of a keyframe? Codec-specific, no decoding."""

from __future__ import annotations

from collections.abc import Callable

H264_NAL_IDR = 5
H264_NAL_SPS = 7
H264_STAP_A = 24
H264_FU_A = 28


def vp8_starts_keyframe(payload: bytes) -> bool:
    """RFC 7741: S bit set, partition 0, and the VP8 frame tag's P bit clear."""
    if not payload:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x07:  # S bit, PartID
        return False
    pos = 1
    if first & 0x80:  # X: extension byte follows
        if len(payload) < 2:
            return False
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id
            if len(payload) <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/KEYIDX byte
            pos += 1
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

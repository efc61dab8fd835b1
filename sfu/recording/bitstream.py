"""Codec bitstream facts the recorder needs without decoding: is this frame a keyframe, what
are its dimensions, and can an RTP payload start a frame after loss."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from sfu.media.keyframes import (
    H264_NAL_IDR,
    H264_NAL_SPS,
    H264_STAP_A,
    vp8_starts_keyframe,
)

_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


OPUS_HEAD_MAGIC = b"OpusHead"
OPUS_HEAD_SIZE = 19
_OPUS_HEAD = struct.Struct("<8sBBHIhB")


@dataclass(frozen=True, slots=True)
class OpusHead:
    """The Opus identification header (RFC 7845 §5.1), Matroska's CodecPrivate for A_OPUS.

    The recorder's choice for WebRTC audio (see `webrtc`):

    - `channels` 2: the SDP of WebRTC Opus always reads `opus/48000/2` (RFC 7587 §7) and a
      sender may switch between mono and stereo packets at any time (the TOC byte's `s` bit);
      every Opus decoder renders either kind to the declared count, so 2 never loses a stereo
      packet, and a mono one comes out as two equal channels. (`sprop-stereo=0` only says the
      sender prefers mono; it is no promise, so it does not change this.)
    - `pre_skip` 0: RTP carries no pre-skip. A browser plays every packet it receives at its
      RTP timestamp without dropping the encoder's look-ahead (312 samples for libopus), and
      the recorder's pts 0 is the first packet it wrote, which need not be the encoder's
      first (a track recorded from a later join, a new file after a restart). Declaring 312
      would make decoders drop 6.5 ms of real audio and shift the track 6.5 ms earlier
      against the video it was played with; 0 keeps every sample where listeners heard it
      (Matroska's CodecDelay, which must equal pre-skip, stays 0 too).
    - `input_rate` 48000 (informational: WebRTC Opus runs at 48 kHz), `gain` 0 dB, mapping
      family 0 (mono or stereo, no channel mapping table).
    """

    channels: int = 2
    pre_skip: int = 0
    input_rate: int = 48_000
    gain_q8: int = 0
    """Output gain in dB as Q7.8 fixed point (256 = +1 dB)."""
    mapping_family: int = 0
    version: int = 1

    @classmethod
    def webrtc(cls) -> OpusHead:
        return cls()

    def to_bytes(self) -> bytes:
        if self.mapping_family == 0 and self.channels not in (1, 2):
            raise ValueError(f"Opus mapping family 0 carries 1 or 2 channels, not {self.channels}")
        return _OPUS_HEAD.pack(
            OPUS_HEAD_MAGIC,
            self.version,
            self.channels,
            self.pre_skip,
            self.input_rate,
            self.gain_q8,
            self.mapping_family,
        )

    @classmethod
    def parse(cls, data: bytes) -> OpusHead:
        """Read the 19-byte header of mapping family 0 (ValueError if it is not one)."""
        if len(data) < OPUS_HEAD_SIZE or not data.startswith(OPUS_HEAD_MAGIC):
            raise ValueError("not an OpusHead")
        _, version, channels, pre_skip, rate, gain, family = _OPUS_HEAD.unpack_from(data)
        if version >> 4 != 0:  # RFC 7845: major version (upper 4 bits) must be 0
            raise ValueError(f"OpusHead version {version} is not supported")
        return cls(channels, pre_skip, rate, gain, family, version)


def codec_name(mime_or_name: str) -> str:
    """'video/VP8' / 'VP8' / 'vp8' → 'vp8' (also 'h264', 'opus')."""
    name = mime_or_name.rsplit("/", 1)[-1].lower()
    if name not in ("vp8", "h264", "opus"):
        raise ValueError(f"codec {mime_or_name!r} cannot be recorded")
    return name


def annexb_nal_units(data: bytes) -> list[bytes]:
    """Split an Annex-B byte stream (00 00 01 / 00 00 00 01 start codes) into NAL units."""
    units: list[bytes] = []
    pos = data.find(b"\x00\x00\x01")
    while pos >= 0:
        start = pos + 3
        nxt = data.find(b"\x00\x00\x01", start)
        end = len(data) if nxt < 0 else nxt
        unit = data[start:end].rstrip(b"\x00") if nxt >= 0 else data[start:end]
        if unit:
            units.append(unit)
        pos = nxt
    return units


def is_keyframe(codec: str, data: bytes) -> bool:
    """A whole depayloaded frame: VP8 frame tag P bit clear; H.264 holds an IDR slice."""
    if codec == "vp8":
        return bool(data) and not data[0] & 0x01
    if codec == "h264":
        return any(unit[0] & 0x1F == H264_NAL_IDR for unit in annexb_nal_units(data))
    return True


def can_resync(codec: str, payload: bytes) -> bool:
    """May a frame start with this RTP payload after loss (video: only a keyframe's first
    packet; H.264: a packet carrying the SPS, so the parameter sets are never missing)."""
    if codec == "vp8":
        return vp8_starts_keyframe(payload)
    if codec == "h264":
        if not payload:
            return False
        nal_type = payload[0] & 0x1F
        if nal_type == H264_NAL_SPS:
            return True
        if nal_type == H264_STAP_A:
            pos = 1
            while pos + 2 < len(payload):
                size = (payload[pos] << 8) | payload[pos + 1]
                if payload[pos + 2] & 0x1F == H264_NAL_SPS:
                    return True
                pos += 2 + size
        return False
    return True


def vp8_dimensions(frame: bytes) -> tuple[int, int] | None:
    """RFC 6386 §9.1: keyframe tag (3 bytes), start code 9d 01 2a, 14-bit width and height."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def bit(self) -> int:
        byte = self.pos >> 3
        if byte >= len(self.data):
            raise ValueError("SPS truncated")
        value = (self.data[byte] >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


def _unescape(nal: bytes) -> bytes:
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def h264_sps_dimensions(sps: bytes) -> tuple[int, int]:
    """Width and height (after cropping) from an SPS NAL unit (header byte included)."""
    r = _Bits(_unescape(sps[1:]))
    profile_idc = r.bits(8)
    r.bits(16)  # constraint flags, level_idc
    r.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_planes = 0
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc == 3:
            separate_planes = r.bit()
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.bit()  # qpprime_y_zero_transform_bypass_flag
        if r.bit():  # seq_scaling_matrix_present_flag
            for index in range(8 if chroma_format_idc != 3 else 12):
                if r.bit():
                    _skip_scaling_list(r, 16 if index < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.bit()
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.bit()
    if not frame_mbs_only:
        r.bit()  # mb_adaptive_frame_field_flag
    r.bit()  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_units * 16
    if r.bit():  # frame_cropping_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        chroma_array_type = 0 if separate_planes else chroma_format_idc
        sub_w = 2 if chroma_array_type in (1, 2) else 1
        sub_h = 2 if chroma_array_type == 1 else 1
        unit_x = 1 if chroma_array_type == 0 else sub_w
        unit_y = (2 - frame_mbs_only) * (1 if chroma_array_type == 0 else sub_h)
        width -= (left + right) * unit_x
        height -= (top + bottom) * unit_y
    return width, height


def _skip_scaling_list(r: _Bits, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale:
            next_scale = (last + r.se() + 256) % 256
        last = next_scale or last


def frame_dimensions(codec: str, frame: bytes) -> tuple[int, int] | None:
    """Dimensions carried by a keyframe (None if it does not carry them)."""
    if codec == "vp8":
        return vp8_dimensions(frame)
    if codec == "h264":
        for unit in annexb_nal_units(frame):
            if unit[0] & 0x1F == H264_NAL_SPS:
                try:
                    return h264_sps_dimensions(unit)
                except ValueError:
                    return None
    return None

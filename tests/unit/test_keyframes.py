"""Keyframe start detection on RTP payloads: VP8 (RFC 7741) and H.264 (RFC 6184), hand-built
and from real libvpx output packetized by aiortc."""

from __future__ import annotations

import fractions
from typing import TypedDict

import av
import numpy
import pytest
from aiortc.codecs.vpx import Vp8Encoder, VpxPayloadDescriptor
from av.video.frame import PictureType
from hypothesis import given
from hypothesis import strategies as st

from sfu.media.keyframes import (
    always,
    h264_starts_keyframe,
    keyframe_detector,
    vp8_descriptor_size,
    vp8_starts_keyframe,
)

# --- VP8 ------------------------------------------------------------------------------------

# VP8 payload header (RFC 6386 9.1): 3-byte frame tag, P (bit 0 of the first byte) clear on a
# keyframe, then the start code 9d 01 2a and the dimensions.
VP8_KEY = bytes([0x50, 0x2A, 0x00, 0x9D, 0x01, 0x2A, 0x40, 0x01, 0xF0, 0x00])
VP8_DELTA = bytes([0x31, 0x0B, 0x00, 0x12, 0x34, 0x56])

X, N, S = 0x80, 0x20, 0x10
I_BIT, L_BIT, T_BIT, K_BIT = 0x80, 0x40, 0x20, 0x10


class Vp8Extensions(TypedDict, total=False):
    """The optional fields of `vp8_descriptor`."""

    picture_id: int
    long_picture_id: bool
    tl0picidx: int
    tid: int
    keyidx: int


def vp8_descriptor(
    *,
    start: bool = True,
    part_id: int = 0,
    picture_id: int | None = None,
    long_picture_id: bool = False,
    tl0picidx: int | None = None,
    tid: int | None = None,
    keyidx: int | None = None,
) -> bytes:
    """An RFC 7741 payload descriptor, byte by byte."""
    first = (S if start else 0) | part_id
    ext = 0
    tail = b""
    if picture_id is not None:
        ext |= I_BIT
        if long_picture_id:
            tail += bytes([0x80 | (picture_id >> 8) & 0x7F, picture_id & 0xFF])
        else:
            tail += bytes([picture_id & 0x7F])
    if tl0picidx is not None:
        ext |= L_BIT
        tail += bytes([tl0picidx])
    if tid is not None or keyidx is not None:
        ext |= (T_BIT if tid is not None else 0) | (K_BIT if keyidx is not None else 0)
        tail += bytes([((tid or 0) << 6) | (keyidx or 0)])
    if ext:
        return bytes([first | X, ext]) + tail
    return bytes([first]) + tail


def test_vp8_minimal_descriptor() -> None:
    assert vp8_starts_keyframe(vp8_descriptor() + VP8_KEY)
    assert not vp8_starts_keyframe(vp8_descriptor() + VP8_DELTA)


def test_vp8_non_reference_bit_does_not_matter() -> None:
    assert vp8_starts_keyframe(bytes([S | N]) + VP8_KEY)


# Descriptor bytes are chosen odd before a keyframe and even before a delta frame, so a parser
# that stops one byte early or late reads the wrong P bit and fails.
@pytest.mark.parametrize(
    ("options_key", "options_delta"),
    [
        ({"picture_id": 0x11}, {"picture_id": 0x10}),
        (
            {"picture_id": 0x1235, "long_picture_id": True},
            {"picture_id": 0x1234, "long_picture_id": True},
        ),
        (
            {"picture_id": 0x7FFF, "long_picture_id": True},
            {"picture_id": 0x7FFE, "long_picture_id": True},
        ),
        ({"tl0picidx": 0x03}, {"tl0picidx": 0x02}),
        ({"tid": 1, "keyidx": 1}, {"tid": 1, "keyidx": 2}),
        ({"tid": 0}, {"tid": 2}),
        ({"keyidx": 3}, {"keyidx": 4}),
        (
            {
                "picture_id": 0x0101,
                "long_picture_id": True,
                "tl0picidx": 0x55,
                "tid": 0,
                "keyidx": 5,
            },
            {
                "picture_id": 0x0100,
                "long_picture_id": True,
                "tl0picidx": 0x54,
                "tid": 0,
                "keyidx": 6,
            },
        ),
        (
            {"picture_id": 0x21, "tl0picidx": 0x01, "keyidx": 1},
            {"picture_id": 0x22, "tl0picidx": 0x02, "keyidx": 2},
        ),
    ],
)
def test_vp8_extensions(options_key: Vp8Extensions, options_delta: Vp8Extensions) -> None:
    assert vp8_starts_keyframe(vp8_descriptor(**options_key) + VP8_KEY)
    assert not vp8_starts_keyframe(vp8_descriptor(**options_delta) + VP8_DELTA)


def test_vp8_x_without_any_extension() -> None:
    assert vp8_starts_keyframe(bytes([X | S, 0x00]) + VP8_KEY)
    assert not vp8_starts_keyframe(bytes([X | S, 0x00]) + VP8_DELTA)


@pytest.mark.parametrize("part_id", [1, 2, 7])
def test_vp8_other_partition_is_not_a_start(part_id: int) -> None:
    assert not vp8_starts_keyframe(vp8_descriptor(part_id=part_id) + VP8_KEY)


def test_vp8_continuation_is_not_a_start() -> None:
    assert not vp8_starts_keyframe(vp8_descriptor(start=False) + VP8_KEY)
    assert not vp8_starts_keyframe(vp8_descriptor(start=False, picture_id=3) + VP8_KEY)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        bytes([S]),
        bytes([X | S]),
        bytes([X | S, I_BIT]),
        bytes([X | S, I_BIT, 0x80]),
        bytes([X | S, I_BIT, 0x80, 0x01]),
        bytes([X | S, I_BIT | L_BIT, 0x05, 0x00]),
        bytes([X | S, T_BIT, 0x40]),
    ],
)
def test_vp8_truncated_is_not_a_keyframe(payload: bytes) -> None:
    assert vp8_starts_keyframe(payload) is False


@given(
    start=st.booleans(),
    part_id=st.integers(0, 7),
    picture_id=st.none() | st.integers(0, 0x7FFF),
    tl0picidx=st.none() | st.integers(0, 255),
    tid=st.none() | st.integers(0, 3),
    keyidx=st.none() | st.integers(0, 31),
    key=st.booleans(),
)
def test_vp8_agrees_with_aiortcs_descriptor(
    start: bool,
    part_id: int,
    picture_id: int | None,
    tl0picidx: int | None,
    tid: int | None,
    keyidx: int | None,
    key: bool,
) -> None:
    descriptor = VpxPayloadDescriptor(
        partition_start=int(start),
        partition_id=part_id,
        picture_id=picture_id,
        tl0picidx=tl0picidx,
        tid=(tid, 0) if tid is not None else None,
        keyidx=keyidx,
    )
    payload = bytes(descriptor) + (VP8_KEY if key else VP8_DELTA)
    assert vp8_starts_keyframe(payload) is (start and part_id == 0 and key)


@given(st.binary(max_size=12))
def test_vp8_descriptor_size_agrees_with_aiortcs_parser(payload: bytes) -> None:
    """The recorder strips descriptors with vp8_descriptor_size instead of aiortc's parser:
    same data for every input, and ValueError exactly where aiortc raises it."""
    try:
        _, expected = VpxPayloadDescriptor.parse(payload)
    except ValueError:
        with pytest.raises(ValueError):
            vp8_descriptor_size(payload)
        return
    assert payload[vp8_descriptor_size(payload) :] == expected


def _vp8_packets(count: int, keyframes_at: set[int]) -> list[tuple[bool, list[bytes]]]:
    """Encode `count` noisy frames with libvpx, forcing keyframes; packetize with aiortc."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = 160, 120
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, 30)
    codec.options = {"deadline": "realtime", "lag-in-frames": "0", "cpu-used": "8"}
    packer = Vp8Encoder()
    rng = numpy.random.default_rng(7)
    out: list[tuple[bool, list[bytes]]] = []
    for index in range(count):
        pixels = rng.integers(0, 255, (120, 160, 3), dtype=numpy.uint8)
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        frame.time_base = fractions.Fraction(1, 30)
        if index in keyframes_at:
            frame.pict_type = PictureType.I
        for packet in codec.encode(frame):
            payloads, _ = packer.pack(packet)
            out.append((bool(packet.is_keyframe), payloads))
    return out


def test_vp8_real_libvpx_frames() -> None:
    frames = _vp8_packets(8, keyframes_at={5})
    assert [key for key, _ in frames] == [True, False, False, False, False, True, False, False]
    assert any(len(payloads) > 1 for _, payloads in frames)
    for key, payloads in frames:
        assert vp8_starts_keyframe(payloads[0]) is key
        assert not any(vp8_starts_keyframe(p) for p in payloads[1:])


def test_vp8_real_frames_through_aiortcs_encoder() -> None:
    encoder = Vp8Encoder()
    results = []
    for index, force in enumerate([False, False, False, True, False]):
        frame = av.VideoFrame(160, 120, "yuv420p")
        frame.time_base = fractions.Fraction(1, 90000)
        frame.pts = index * 3000
        payloads, _ = encoder.encode(frame, force_keyframe=force)
        results.append(vp8_starts_keyframe(payloads[0]))
    assert results == [True, False, False, True, False]


# --- H.264 ----------------------------------------------------------------------------------

IDR = bytes([0x65, 0x88, 0x84, 0x00])
SPS = bytes([0x67, 0x42, 0xE0, 0x1F, 0xDA])
PPS = bytes([0x68, 0xCE, 0x3C, 0x80])
SEI = bytes([0x06, 0x05, 0x01])
SLICE = bytes([0x41, 0x9A, 0x02])
SLICE_REF = bytes([0x61, 0x9A, 0x02])


def stap_a(*nals: bytes) -> bytes:
    body = b"".join(len(nal).to_bytes(2, "big") + nal for nal in nals)
    return bytes([0x78]) + body


def fu_a(nal_type: int, *, start: bool, end: bool = False, nri: int = 3) -> bytes:
    indicator = (nri << 5) | 28
    header = (0x80 if start else 0) | (0x40 if end else 0) | nal_type
    return bytes([indicator, header, 0xAA, 0xBB])


@pytest.mark.parametrize(
    ("payload", "key"),
    [
        (IDR, True),
        (SPS, True),
        (PPS, False),
        (SEI, False),
        (SLICE, False),
        (SLICE_REF, False),
        (stap_a(SPS, PPS), True),
        (stap_a(SPS, PPS, IDR), True),
        (stap_a(PPS, IDR), True),
        (stap_a(SEI, PPS, IDR), True),
        (stap_a(PPS, SEI), False),
        (stap_a(PPS, SLICE), False),
        (fu_a(5, start=True), True),
        (fu_a(5, start=False), False),
        (fu_a(5, start=False, end=True), False),
        (fu_a(1, start=True), False),
        (fu_a(1, start=False, end=True), False),
        (fu_a(5, start=True, nri=0), True),
    ],
)
def test_h264(payload: bytes, key: bool) -> None:
    assert h264_starts_keyframe(payload) is key


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        bytes([0x7C]),
        bytes([0x78]),
        bytes([0x78, 0x00]),
        bytes([0x78, 0xFF, 0xFF, 0x68]),
        stap_a(PPS)[:-2],
    ],
)
def test_h264_truncated_is_not_a_keyframe(payload: bytes) -> None:
    assert h264_starts_keyframe(payload) is False


@given(st.binary(max_size=64))
def test_detectors_never_raise(payload: bytes) -> None:
    assert isinstance(vp8_starts_keyframe(payload), bool)
    assert isinstance(h264_starts_keyframe(payload), bool)


# --- choosing a detector --------------------------------------------------------------------


def test_keyframe_detector_by_mime_type() -> None:
    assert keyframe_detector("video/VP8") is vp8_starts_keyframe
    assert keyframe_detector("VIDEO/vp8") is vp8_starts_keyframe
    assert keyframe_detector("video/H264") is h264_starts_keyframe
    assert keyframe_detector("audio/opus") is always
    assert always(b"")

"""RtpWriter's bytes, read back with aiortc's own parser and the subscriber's extension ids."""

from __future__ import annotations

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from hypothesis import given
from hypothesis import strategies as st

from sfu.media.rewriter import ABS_SEND_TIME_URI, AUDIO_LEVEL_URI, MID_URI, RtpWriter


def ext_map(ids: dict[str, int]) -> HeaderExtensionsMap:
    mapping = HeaderExtensionsMap()
    mapping.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=i, uri=uri) for uri, i in ids.items()
            ]
        )
    )
    return mapping


VIDEO = {MID_URI: 1, ABS_SEND_TIME_URI: 3}
AUDIO = {MID_URI: 1, AUDIO_LEVEL_URI: 2}


@given(
    pt=st.integers(0, 127),
    marker=st.integers(0, 1),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(min_size=1, max_size=1200),
    abs_time=st.integers(0, 0xFFFFFF),
    mid=st.sampled_from(["0", "1", "12", "video-main"]),
)
def test_video_packet_round_trips(
    pt: int, marker: int, seq: int, ts: int, ssrc: int, payload: bytes, abs_time: int, mid: str
) -> None:
    data = RtpWriter(ssrc, VIDEO, mid).write(pt, marker, seq, ts, payload, abs_time, None)
    packet = RtpPacket.parse(data, ext_map(VIDEO))
    assert (packet.payload_type, packet.marker, packet.sequence_number) == (pt, marker, seq)
    assert (packet.timestamp, packet.ssrc, packet.payload) == (ts, ssrc, payload)
    assert packet.extensions.mid == mid
    assert packet.extensions.abs_send_time == abs_time
    assert packet.extensions.audio_level is None
    assert packet.padding_size == 0


@given(vad=st.booleans(), level=st.integers(0, 127))
def test_audio_level_round_trips(vad: bool, level: int) -> None:
    data = RtpWriter(7, AUDIO, "1").write(111, 1, 5, 960, b"\x01\x02", 0, (vad, level))
    packet = RtpPacket.parse(data, ext_map(AUDIO))
    assert packet.extensions.audio_level == (vad, level)
    assert packet.extensions.mid == "1"
    assert packet.extensions.abs_send_time is None


def test_matches_aiortc_serializer_byte_for_byte() -> None:
    mapping = ext_map(VIDEO)
    ours = RtpWriter(0x01020304, VIDEO, "0").write(96, 1, 4242, 123456, b"abc", 0x0A0B0C, None)
    theirs = RtpPacket(
        payload_type=96,
        marker=1,
        sequence_number=4242,
        timestamp=123456,
        ssrc=0x01020304,
        payload=b"abc",
    )
    theirs.extensions.mid = "0"
    theirs.extensions.abs_send_time = 0x0A0B0C
    assert ours == theirs.serialize(mapping)


def test_no_negotiated_extensions_gives_a_plain_header() -> None:
    data = RtpWriter(9, {}, "0").write(100, 0, 1, 2, b"xyz", 5, (True, 3))
    assert len(data) == 12 + 3
    assert data[0] == 0x80
    packet = RtpPacket.parse(data)
    assert packet.payload == b"xyz"

"""Offer parsing: size and section limits, and which sections count as sent tracks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiortc import AudioStreamTrack, RTCConfiguration, RTCPeerConnection, VideoStreamTrack
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.core.errors import InvalidSdp, SfuError
from sfu.media.sdp import (
    MAX_MEDIA_SECTIONS,
    MAX_SDP_BYTES,
    OfferedTrack,
    msid_track_id,
    parse_description,
    sending_tracks,
)

SESSION = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"


def video_section(mid: int, direction: str = "sendonly", port: int = 9) -> str:
    return (
        f"m=video {port} UDP/TLS/RTP/SAVPF 97\r\n"
        "c=IN IP4 0.0.0.0\r\n"
        f"a={direction}\r\n"
        f"a=mid:{mid}\r\n"
        f"a=msid:stream track-{mid}\r\n"
        "a=rtcp-mux\r\n"
        "a=rtpmap:97 VP8/90000\r\n"
    )


@dataclass
class Offer:
    sdp: str
    video_id: str
    audio_id: str


@pytest.fixture
async def offer() -> AsyncIterator[Offer]:
    """A real aiortc offer: video sendonly, audio sendrecv, video recvonly, audio inactive."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video, audio = VideoStreamTrack(), AudioStreamTrack()
    pc.addTransceiver(video, "sendonly")
    pc.addTransceiver(audio, "sendrecv")
    pc.addTransceiver("video", "recvonly")
    pc.addTransceiver("audio", "inactive")
    description = await pc.createOffer()
    yield Offer(description.sdp, video.id, audio.id)
    video.stop()
    audio.stop()
    await pc.close()


# --- limits ---------------------------------------------------------------------------------


def test_parses_a_small_offer() -> None:
    description = parse_description(SESSION + video_section(0))
    assert [m.kind for m in description.media] == ["video"]


def test_size_limit_counts_bytes() -> None:
    base = SESSION + video_section(0)
    pad_line = "a=x-pad:{}\r\n"
    fill = MAX_SDP_BYTES - len(base.encode()) - len(pad_line.format("").encode())
    at_limit = base + pad_line.format("p" * fill)
    assert len(at_limit.encode()) == MAX_SDP_BYTES
    parse_description(at_limit)
    with pytest.raises(InvalidSdp) as caught:
        parse_description(base + pad_line.format("p" * (fill + 1)))
    assert caught.value.code == "invalid_sdp"
    # multi-byte characters count as what they weigh on the wire
    with pytest.raises(InvalidSdp):
        parse_description(base + pad_line.format("é" * (fill // 2 + 1)))


def test_media_section_limit() -> None:
    sixteen = SESSION + "".join(video_section(i) for i in range(MAX_MEDIA_SECTIONS))
    assert len(parse_description(sixteen).media) == MAX_MEDIA_SECTIONS
    seventeen = sixteen + video_section(MAX_MEDIA_SECTIONS)
    with pytest.raises(InvalidSdp) as caught:
        parse_description(seventeen)
    assert caught.value.code == "invalid_sdp"


@pytest.mark.parametrize(
    "sdp",
    [
        "",
        "hello",
        SESSION,
        "o=- 1 1 IN IP4 0.0.0.0\r\n" + video_section(0),
        SESSION + "m=video nine UDP/TLS/RTP/SAVPF 97\r\n",
        SESSION + "m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=rtpmap:97\r\n",
        SESSION + "m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=fingerprint:sha-256\r\n",
        SESSION + "m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=ssrc:1 cname\r\n",
    ],
)
def test_unparsable_is_invalid_sdp(sdp: str) -> None:
    with pytest.raises(InvalidSdp) as caught:
        parse_description(sdp)
    assert caught.value.code == "invalid_sdp"


@pytest.mark.parametrize(
    "line",
    [
        "a=rtcp:9 IN IP4",  # aiortc: `assert m` fails -> AssertionError
        "a=fmtp:120 apt=97",  # aiortc: next() over no codec -> StopIteration
    ],
)
def test_aiortc_parser_failures_become_invalid_sdp(line: str) -> None:
    """A browser-supplied SDP that aiortc's parser chokes on is the client's error, not a crash
    of the signalling handler (StopIteration inside a coroutine even turns into RuntimeError)."""
    with pytest.raises(InvalidSdp) as caught:
        parse_description(SESSION + video_section(0) + line + "\r\n")
    assert caught.value.code == "invalid_sdp"


_lines = st.sampled_from(
    [
        "a=sendonly",
        "a=recvonly",
        "a=mid:1",
        "a=msid:s t",
        "a=rtpmap:97 VP8/90000",
        "a=fmtp:97 x=1",
        "a=rtcp-fb:97 nack",
        "a=ssrc:1 cname:x",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=group:BUNDLE 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "m=video 0 UDP/TLS/RTP/SAVPF 97",
        "c=IN IP4 0.0.0.0",
    ]
) | st.text(alphabet=st.sampled_from("am=:/ 0179xIPN"), max_size=24)


@settings(max_examples=300, deadline=None)
@given(st.lists(_lines, max_size=12))
def test_parser_raises_only_invalid_sdp(lines: list[str]) -> None:
    sdp = SESSION + video_section(0) + "".join(line + "\r\n" for line in lines)
    try:
        sending_tracks(parse_description(sdp))
    except SfuError as exc:
        assert exc.code == "invalid_sdp"


# --- sending tracks -------------------------------------------------------------------------


async def test_sending_tracks_of_an_aiortc_offer(offer: Offer) -> None:
    tracks = sending_tracks(parse_description(offer.sdp))
    assert tracks == [
        OfferedTrack(mid="0", kind="video", track_id=offer.video_id),
        OfferedTrack(mid="1", kind="audio", track_id=offer.audio_id),
    ]


async def test_rejected_section_is_not_sent(offer: Offer) -> None:
    rejected = offer.sdp.replace("m=video 9 ", "m=video 0 ", 1)
    assert rejected != offer.sdp
    tracks = sending_tracks(parse_description(rejected))
    assert [t.mid for t in tracks] == ["1"]


async def test_stopped_sending_section_is_not_sent(offer: Offer) -> None:
    for direction in ("recvonly", "inactive"):
        changed = offer.sdp.replace("a=sendonly", f"a={direction}", 1)
        assert [t.mid for t in sending_tracks(parse_description(changed))] == ["1"]


async def test_sending_section_without_msid_is_invalid(offer: Offer) -> None:
    lines = offer.sdp.split("\r\n")
    first_msid = next(i for i, line in enumerate(lines) if line.startswith("a=msid:"))
    del lines[first_msid]
    with pytest.raises(InvalidSdp) as caught:
        sending_tracks(parse_description("\r\n".join(lines)))
    assert caught.value.code == "invalid_sdp"


def test_sending_section_without_mid_is_invalid() -> None:
    section = video_section(0).replace("a=mid:0\r\n", "")
    with pytest.raises(InvalidSdp):
        sending_tracks(parse_description(SESSION + section))


def test_receive_only_sections_need_no_msid() -> None:
    section = video_section(0, "recvonly").replace("a=msid:stream track-0\r\n", "")
    assert sending_tracks(parse_description(SESSION + section)) == []


def test_application_section_is_ignored() -> None:
    data = (
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
        "c=IN IP4 0.0.0.0\r\na=mid:9\r\na=sctp-port:5000\r\n"
    )
    tracks = sending_tracks(parse_description(SESSION + data + video_section(1)))
    assert tracks == [OfferedTrack(mid="1", kind="video", track_id="track-1")]


def test_msid_track_id() -> None:
    media = parse_description(SESSION + video_section(3)).media[0]
    assert msid_track_id(media) == "track-3"
    media.msid = "only-stream"
    assert msid_track_id(media) is None
    media.msid = None
    assert msid_track_id(media) is None


def _offer_with(video_codecs: str, fmtp: str = "") -> str:
    return (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
        "a=msid-semantic:WMS *\r\n"
        f"m=video 9 UDP/TLS/RTP/SAVPF 100\r\nc=IN IP4 0.0.0.0\r\na=sendonly\r\na=mid:0\r\n"
        "a=msid:s t1\r\na=rtcp-mux\r\n"
        f"a=rtpmap:100 {video_codecs}\r\n{fmtp}"
        "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\n"
    )


def test_a_section_without_a_forwarded_codec_is_refused() -> None:
    from sfu.core.errors import InvalidSdp
    from sfu.media.sdp import parse_description, sending_tracks

    assert sending_tracks(parse_description(_offer_with("VP8/90000")))[0].track_id == "t1"
    h264 = _offer_with("H264/90000", "a=fmtp:100 packetization-mode=1;profile-level-id=42e01f\r\n")
    assert sending_tracks(parse_description(h264))[0].kind == "video"
    for codec, fmtp in (
        ("VP9/90000", ""),
        ("AV1/90000", ""),
        ("H264/90000", "a=fmtp:100 packetization-mode=0;profile-level-id=42e01f\r\n"),
    ):
        with pytest.raises(InvalidSdp) as refused:
            sending_tracks(parse_description(_offer_with(codec, fmtp)))
        assert refused.value.code == "invalid_sdp"
        assert "no codec the SFU forwards" in refused.value.message

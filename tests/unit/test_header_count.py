"""HeaderCountingPath without sockets: real SRTP (pylibsrtp) packets, a real DTLS transport
object and TapReceiver; the counts must equal what decrypting and parsing would give."""

from __future__ import annotations

import asyncio
import os

import pytest
from aiortc import RTCCertificate, RTCIceGatherer, RTCIceTransport
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpDecodingParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpReceiveParameters,
)
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from pylibsrtp import Policy, Session

from sfu.client.header_count import HeaderCountingPath, negotiated_tag_length, parse_header
from sfu.media.client_seams import observe_sent_nacks, received_streams
from sfu.media.internals import internal, set_internal
from sfu.media.rtp_fast_path import RtpFastPath
from sfu.media.tap_receiver import TapReceiver

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
RTX = RTCRtpCodecParameters(
    mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96}
)
SSRC = 0x0A0B0C0D
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


class Counter:
    def __init__(self) -> None:
        self.seen: list[tuple[int, int, bool, int]] = []

    def on_rtp(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        self.seen.append(
            (packet.sequence_number, packet.timestamp, bool(packet.marker), len(packet.payload))
        )

    def on_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        return None


def _packet(seq: int, *, marker: bool = False, size: int = 900, csrc: int = 0) -> RtpPacket:
    packet = RtpPacket(
        payload_type=96,
        marker=int(marker),
        sequence_number=seq,
        timestamp=seq // 3 * 3000,
        ssrc=SSRC,
        payload=bytes([0x10]) + os.urandom(size - 1),
    )
    packet.csrc = [0x11111111 + i for i in range(csrc)]
    return packet


def test_parse_header_agrees_with_rtppacket_parse() -> None:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpReceiveParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=3, uri=ABS_SEND_TIME)]
        )
    )
    for with_ext, csrc in ((False, 0), (True, 0), (True, 2)):
        packet = _packet(4242, marker=True, csrc=csrc)
        if with_ext:
            packet.extensions.abs_send_time = 0x123456
        wire = packet.serialize(extensions) + bytes(10)  # room for an SRTP tag
        header = parse_header(wire, 10)
        parsed = RtpPacket.parse(wire[:-10], extensions)
        assert header is not None
        assert header.sequence_number == parsed.sequence_number == 4242
        assert header.timestamp == parsed.timestamp
        assert header.ssrc == parsed.ssrc == SSRC
        assert header.payload_type == parsed.payload_type == 96
        assert header.marker == bool(parsed.marker)
        assert bytes(header.payload) == parsed.payload
    assert parse_header(b"\x80\x60" + bytes(12), 10) is None  # shorter than header + tag
    assert parse_header(b"\x40" + bytes(40), 10) is None  # not RTP version 2


@pytest.fixture
async def wired() -> tuple[RTCDtlsTransport, TapReceiver, Counter, Session]:
    dtls = RTCDtlsTransport(
        RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()]
    )
    receiver = TapReceiver("video", dtls)
    counter = Counter()
    receiver.sink = counter
    receiver.codecs[96] = VP8
    receiver.codecs[97] = RTX
    internal(dtls, "_register_rtp_receiver")(
        receiver,
        RTCRtpReceiveParameters(
            codecs=[VP8, RTX], encodings=[RTCRtpDecodingParameters(ssrc=SSRC, payloadType=96)]
        ),
    )
    key = os.urandom(30)
    set_internal(dtls, "_rx_srtp", Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND)))
    set_internal(dtls, "_state", DtlsState.CONNECTED)
    return dtls, receiver, counter, Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND))


async def test_counts_equal_what_decrypting_gives(
    wired: tuple[RTCDtlsTransport, TapReceiver, Counter, Session],
) -> None:
    dtls, receiver, counter, tx = wired
    nacks: list[tuple[int, list[int]]] = []
    observe_sent_nacks(receiver, lambda ssrc, lost: nacks.append((ssrc, lost)))
    assert negotiated_tag_length(dtls) is None  # no DTLS handshake here: decrypt until known
    assert HeaderCountingPath(dtls, lambda data: False)(tx.protect(_packet(1).serialize())) is False
    full = RtpFastPath(dtls)
    path = HeaderCountingPath(dtls, full, tag_length=10)
    sent = [_packet(seq, marker=seq % 3 == 2, size=200 + seq) for seq in range(1000, 1030)]
    sent.pop(10)  # one lost: the NACK generator and the statistics see the gap
    for packet in sent:
        assert path(tx.protect(packet.serialize())) is True
    expected = [(p.sequence_number, p.timestamp, bool(p.marker), len(p.payload)) for p in sent]
    assert counter.seen == expected
    assert full.handled == 0  # the SSRC was signalled: headers only
    assert path.counted == len(sent)
    (stream,) = received_streams(receiver)
    assert (stream.ssrc, stream.rtx) == (SSRC, False)
    assert stream.statistics.packets_received == len(sent)
    assert stream.statistics.packets_expected == len(sent) + 1
    await asyncio.sleep(0)  # the NACK is sent by a background task
    assert receiver.nacks_sent == 1 and nacks == [(SSRC, [1010])]


async def test_rtx_and_rtcp_take_the_full_path(
    wired: tuple[RTCDtlsTransport, TapReceiver, Counter, Session],
) -> None:
    dtls, _, counter, tx = wired
    full = RtpFastPath(dtls)
    path = HeaderCountingPath(dtls, full, tag_length=10)
    rtx = RtpPacket(payload_type=97, sequence_number=7, timestamp=0, ssrc=SSRC, payload=b"ab")
    path(tx.protect(rtx.serialize()))
    assert (full.handled, path.counted) == (1, 0)  # RTX: decrypted for its original number
    unsignalled = _packet(1)
    unsignalled.ssrc = SSRC + 1
    path(tx.protect(unsignalled.serialize()))
    assert (full.handled, path.counted) == (2, 0)  # an SSRC not routed yet: the full path
    unsignalled.sequence_number = 2
    path(tx.protect(unsignalled.serialize()))
    assert (full.handled, path.counted) == (2, 1)  # the router learnt it: headers from now
    rtcp_like = b"\x80\xc8" + bytes(40)
    assert path(rtcp_like) is False  # SRTCP: aiortc's way
    assert [s for s, *_ in counter.seen] == [1, 2]

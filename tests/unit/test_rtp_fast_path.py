"""RtpFastPath without sockets: a real DTLS transport object with a known SRTP key, real
pylibsrtp sessions protecting the packets, a TapReceiver registered on the transport's router."""

from __future__ import annotations

import os

import pytest
from aiortc import RTCCertificate, RTCIceGatherer, RTCIceTransport
from aiortc.clock import current_ms, current_ntp_time
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpDecodingParameters,
    RTCRtpReceiveParameters,
)
from aiortc.rtp import RtcpRrPacket, RtpPacket
from pylibsrtp import Policy, Session

from sfu.media.clock import abs_send_time_now, arrival_ms
from sfu.media.internals import internal, set_internal
from sfu.media.rtp_fast_path import RtpFastPath
from sfu.media.tap_receiver import TapReceiver

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
SSRC = 0x1234ABCD


class Sink:
    def __init__(self) -> None:
        self.packets: list[tuple[int, bytes, str]] = []

    def on_rtp(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        self.packets.append((packet.sequence_number, packet.payload, codec.mimeType))

    def on_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        return None


def _sessions() -> tuple[Session, Session]:
    key = os.urandom(30)  # AES_CM_128_HMAC_SHA1_80: 16-byte key + 14-byte salt
    rx = Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND)
    tx = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND)
    return Session(policy=rx), Session(policy=tx)


def _packet(seq: int, payload: bytes = b"\x10\x00\x9d\x01\x2a" + bytes(40)) -> bytes:
    return RtpPacket(
        payload_type=96, sequence_number=seq, timestamp=seq * 3000, ssrc=SSRC, payload=payload
    ).serialize()


@pytest.fixture
async def wired() -> tuple[RTCDtlsTransport, TapReceiver, Sink, Session]:
    ice = RTCIceTransport(RTCIceGatherer())
    dtls = RTCDtlsTransport(ice, [RTCCertificate.generateCertificate()])
    receiver = TapReceiver("video", dtls)
    sink = Sink()
    receiver.sink = sink
    receiver.codecs[96] = VP8
    internal(dtls, "_register_rtp_receiver")(
        receiver,
        RTCRtpReceiveParameters(
            codecs=[VP8], encodings=[RTCRtpDecodingParameters(ssrc=SSRC, payloadType=96)]
        ),
    )
    rx, tx = _sessions()
    set_internal(dtls, "_rx_srtp", rx)
    set_internal(dtls, "_state", DtlsState.CONNECTED)
    return dtls, receiver, sink, tx


async def test_srtp_is_unprotected_routed_and_tapped(
    wired: tuple[RTCDtlsTransport, TapReceiver, Sink, Session],
) -> None:
    dtls, receiver, sink, tx = wired
    fast = RtpFastPath(dtls)
    rx_before = internal(dtls, "_RTCDtlsTransport__rx_packets")
    sent = [_packet(seq) for seq in range(100, 110)]
    for plain in sent:
        assert fast(tx.protect(plain)) is True
    assert [seq for seq, _, _ in sink.packets] == list(range(100, 110))
    assert all(mime == "video/VP8" for _, _, mime in sink.packets)
    assert sink.packets[0][1] == RtpPacket.parse(sent[0]).payload
    assert receiver.packets == 10
    assert receiver.media_ssrc == SSRC
    assert fast.handled == 10
    assert internal(dtls, "_RTCDtlsTransport__rx_packets") == rx_before + 10


async def test_what_is_not_srtp_goes_aiortcs_way(
    wired: tuple[RTCDtlsTransport, TapReceiver, Sink, Session],
) -> None:
    dtls, _, sink, tx = wired
    fast = RtpFastPath(dtls)
    rtcp = tx.protect_rtcp(bytes(RtcpRrPacket(ssrc=1, reports=[])))
    assert fast(rtcp) is False  # SRTCP: aiortc's RTCP handling
    assert fast(b"\x16\xfe\xfd" + bytes(20)) is False  # DTLS record
    assert fast(b"\x80\x60") is False  # too short for RTP
    set_internal(dtls, "_state", DtlsState.CLOSED)
    assert fast(tx.protect(_packet(1))) is False  # closed transport: not ours to handle
    assert sink.packets == []
    assert fast.handled == 0


async def test_forged_and_replayed_packets_are_dropped(
    wired: tuple[RTCDtlsTransport, TapReceiver, Sink, Session],
) -> None:
    dtls, receiver, sink, tx = wired
    fast = RtpFastPath(dtls)
    good = tx.protect(_packet(7))
    forged = good[:-1] + bytes([good[-1] ^ 0xFF])  # authentication tag broken
    assert fast(forged) is True
    assert fast(good) is True
    assert fast(good) is True  # replay
    assert [seq for seq, _, _ in sink.packets] == [7]
    assert fast.dropped == 2
    assert receiver.packets == 1


def test_clocks_match_aiortcs() -> None:
    assert abs(arrival_ms() - current_ms()) <= 5
    ours, theirs = abs_send_time_now(), (current_ntp_time() >> 14) & 0xFFFFFF
    # 1/262144 s units; allow 5 ms and the 24-bit wrap (every 64 s)
    assert min(abs(ours - theirs), 0x1000000 - abs(ours - theirs)) <= 1311

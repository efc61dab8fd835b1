"""RTP packets of a pre-encoded clip, as a publisher would send them (the recorder's tests and
`bench/recording` feed them to a TrackRecorder)."""

from __future__ import annotations

from fractions import Fraction

import av
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from sfu.client.clips import Clip

CODECS = {
    "vp8": RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
    "h264": RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102),
    "opus": RTCRtpCodecParameters(
        mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111
    ),
}


def packetize(clip: Clip, *, seq0: int = 65000, ts0: int = 4294960000) -> list[RtpPacket]:
    """aiortc's own packetizers; sequence numbers and timestamps wrap on purpose."""
    encoder: Vp8Encoder | H264Encoder | None = None
    if clip.codec == "vp8":
        encoder = Vp8Encoder()
    elif clip.codec == "h264":
        encoder = H264Encoder()
    packets: list[RtpPacket] = []
    seq = seq0
    for unit in clip.units:
        if encoder is None:
            payloads, ts = [unit.data], unit.pts_ticks
        else:
            pkt = av.Packet(unit.data)
            pkt.pts = unit.pts_ticks
            pkt.time_base = Fraction(1, clip.clock_rate)
            payloads, ts = encoder.pack(pkt)
        for i, payload in enumerate(payloads):
            packets.append(
                RtpPacket(
                    payload_type=CODECS[clip.codec].payloadType or 0,
                    marker=int(i == len(payloads) - 1),
                    sequence_number=seq & 0xFFFF,
                    timestamp=(ts0 + ts) & 0xFFFFFFFF,
                    ssrc=1234,
                    payload=payload,
                )
            )
            seq += 1
    return packets

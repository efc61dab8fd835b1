"""Recorded Opus carries an OpusHead (RFC 7845 §5.1) as Matroska codec private data."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from sfu.client.clips import get_clip, load_clip
from sfu.recording.assembler import Frame
from sfu.recording.bitstream import OPUS_HEAD_SIZE, OpusHead
from sfu.recording.recorder import TrackRecorder
from sfu.recording.writer import MatroskaWriter

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
FRAME_SAMPLES = 960  # 20 ms at 48 kHz


def test_webrtc_opus_head_bytes() -> None:
    head = OpusHead.webrtc().to_bytes()
    assert len(head) == OPUS_HEAD_SIZE == 19
    # magic, version 1, 2 channels, pre-skip 0 (LE16), 48000 Hz (LE32), gain 0 (LE16), family 0
    assert head == b"OpusHead" + bytes([1, 2, 0, 0, 0x80, 0xBB, 0, 0, 0, 0, 0])
    assert OpusHead.parse(head) == OpusHead(channels=2, pre_skip=0, input_rate=48000)
    custom = OpusHead(channels=1, pre_skip=312, gain_q8=-256)
    assert OpusHead.parse(custom.to_bytes()) == custom
    assert custom.to_bytes()[10:12] == (312).to_bytes(2, "little")
    with pytest.raises(ValueError):
        OpusHead(channels=3).to_bytes()
    with pytest.raises(ValueError):
        OpusHead.parse(b"OpusTags" + head[8:])
    with pytest.raises(ValueError):
        OpusHead.parse(head[:18])


def _packets(units: list[bytes], *, ts0: int = 4294960000, seq0: int = 65500) -> list[RtpPacket]:
    """One RTP packet per Opus packet, 20 ms apart; timestamps and sequence numbers wrap."""
    return [
        RtpPacket(
            payload_type=111,
            marker=0,
            sequence_number=(seq0 + i) & 0xFFFF,
            timestamp=(ts0 + i * FRAME_SAMPLES) & 0xFFFFFFFF,
            ssrc=4321,
            payload=data,
        )
        for i, data in enumerate(units)
    ]


def _stream_head(path: Path) -> tuple[bytes, int]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        extradata = stream.codec_context.extradata or b""
        return extradata, stream.codec_context.channels


def _decode(path: Path) -> list[av.AudioFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(container.streams.audio[0]))


async def test_recorded_opus_has_opus_head_and_decodes(tmp_path: Path) -> None:
    """Through the recorder (RTP in, Matroska out) the file's audio stream has the 19-byte
    OpusHead with the documented fields, the bytes are in the file itself, and it decodes to
    the clip's duration with no sample dropped at the start (pre-skip 0)."""
    clip = load_clip(get_clip("opus", seconds=2))
    path = tmp_path / "mic.mkv"
    recorder = TrackRecorder(path, "opus")
    recorder.start()
    for i, packet in enumerate(_packets([u.data for u in clip.units])):
        recorder.tap(packet, OPUS)
        if i % 25 == 0:
            await asyncio.sleep(0)
    await recorder.close()
    assert recorder.frames_written == len(clip.units)

    extradata, channels = _stream_head(path)
    assert extradata.startswith(b"OpusHead") and len(extradata) == OPUS_HEAD_SIZE
    head = OpusHead.parse(extradata)
    assert (head.version, head.channels, head.pre_skip) == (1, 2, 0)
    assert (head.input_rate, head.gain_q8, head.mapping_family) == (48000, 0, 0)
    assert channels == 2
    assert extradata in path.read_bytes(), "the OpusHead is not in the file (CodecPrivate)"

    frames = _decode(path)
    assert frames[0].pts == 0
    assert frames[0].samples == FRAME_SAMPLES, "samples were skipped at the start"
    assert all(f.layout.name == "stereo" for f in frames)
    samples = sum(f.samples for f in frames)
    assert abs(samples / 48000 - clip.duration_s) < 0.03
    with av.open(str(path)) as container:
        assert container.duration is not None
        assert abs(container.duration / 1e6 - clip.duration_s) < 0.1


def _mono_opus_packets(seconds: float) -> list[bytes]:
    """A mono 440 Hz tone encoded with libopus, as a browser microphone usually sends it."""
    encoder = av.CodecContext.create("libopus", "w")
    assert isinstance(encoder, av.AudioCodecContext)
    encoder.sample_rate = 48000
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.bit_rate = 32000
    encoder.open()
    units: list[bytes] = []
    count = math.ceil(seconds * 48000 / FRAME_SAMPLES)
    for index in range(count):
        t = (np.arange(FRAME_SAMPLES) + index * FRAME_SAMPLES) / 48000
        pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = index * FRAME_SAMPLES
        units += [bytes(p) for p in encoder.encode(frame)]
    units += [bytes(p) for p in encoder.encode(None)]
    return units


def test_mono_packets_decode_to_two_equal_channels(tmp_path: Path) -> None:
    """Channel count 2 with mono packets (the TOC's stereo bit clear): two equal channels."""
    units = _mono_opus_packets(1.0)
    assert all(not unit[0] & 0x04 for unit in units), "the encoder made stereo packets"
    path = tmp_path / "mono.mkv"
    writer = MatroskaWriter(path, "opus")
    for i, data in enumerate(units):
        assert writer.write(Frame(i * FRAME_SAMPLES, data, True, float(i)))
    writer.close()
    assert OpusHead.parse(_stream_head(path)[0]).channels == 2
    frames = _decode(path)
    pcm = np.concatenate([f.to_ndarray().reshape(2, -1) for f in frames], axis=1)
    assert pcm.shape[0] == 2 and pcm.shape[1] >= 47000
    assert np.array_equal(pcm[0], pcm[1])
    assert float(np.abs(pcm).max()) > 0.1  # the tone, not silence


def test_writer_declares_what_it_is_given(tmp_path: Path) -> None:
    """A caller that knows better (say, a mono-only sender) can declare 1 channel."""
    units = _mono_opus_packets(0.2)
    path = tmp_path / "one.mkv"
    writer = MatroskaWriter(path, "opus", opus_head=OpusHead(channels=1))
    for i, data in enumerate(units):
        writer.write(Frame(i * FRAME_SAMPLES, data, True, float(i)))
    writer.close()
    extradata, channels = _stream_head(path)
    assert OpusHead.parse(extradata).channels == 1 and channels == 1
    assert _decode(path)[0].layout.name == "mono"

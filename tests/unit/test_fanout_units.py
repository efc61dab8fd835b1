"""Fan-out building blocks: codec matching between publisher and subscriber, and the upstream
keyframe-request throttle."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiortc.codecs import CODECS
from aiortc.rtcpeerconnection import is_codec_compatible
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from sfu.media.fanout import KeyframeThrottle, codec_key, map_payload_types

WAIT = 5.0


def vp8(pt: int) -> RTCRtpCodecParameters:
    return RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=pt)


def rtx(pt: int, apt: int) -> RTCRtpCodecParameters:
    return RTCRtpCodecParameters(
        mimeType="video/rtx", clockRate=90000, payloadType=pt, parameters={"apt": apt}
    )


def h264(pt: int, profile: str | None, mode: str | None = "1") -> RTCRtpCodecParameters:
    parameters: dict[str, str | int | None] = {"level-asymmetry-allowed": "1"}
    if profile is not None:
        parameters["profile-level-id"] = profile
    if mode is not None:
        parameters["packetization-mode"] = mode
    return RTCRtpCodecParameters(
        mimeType="video/H264", clockRate=90000, payloadType=pt, parameters=parameters
    )


def opus(pt: int, clock: int = 48000) -> RTCRtpCodecParameters:
    return RTCRtpCodecParameters(mimeType="audio/opus", clockRate=clock, channels=2, payloadType=pt)


# --- codec_key / map_payload_types ----------------------------------------------------------


def test_vp8_maps_across_payload_types() -> None:
    assert map_payload_types([vp8(96)], [vp8(120)]) == {96: 120}
    assert codec_key(vp8(96)) == codec_key(RTCRtpCodecParameters("VIDEO/vp8", 90000, None, 1))


def test_rtx_is_never_mapped() -> None:
    publisher = [vp8(96), rtx(97, 96)]
    subscriber = [vp8(100), rtx(101, 100)]
    assert map_payload_types(publisher, subscriber) == {96: 100}
    assert map_payload_types([rtx(97, 96)], [rtx(97, 96)]) == {}


def test_unknown_codec_is_not_mapped() -> None:
    assert map_payload_types([vp8(96)], [h264(102, "42e01f")]) == {}
    assert map_payload_types([vp8(96), opus(111)], [opus(109)]) == {111: 109}


def test_clock_rate_is_part_of_the_codec() -> None:
    assert map_payload_types([opus(111)], [opus(111, clock=16000)]) == {}


def test_codec_without_payload_type_is_skipped() -> None:
    assert map_payload_types([vp8(96)], [RTCRtpCodecParameters("video/VP8", 90000)]) == {}
    assert map_payload_types([RTCRtpCodecParameters("video/VP8", 90000)], [vp8(96)]) == {}


def test_aiortc_codec_list_maps_onto_itself() -> None:
    """aiortc offers VP8 (97), H.264 baseline 42001f (99) and constrained baseline 42e01f (101):
    a subscriber negotiating the same list must get every payload type unchanged."""
    video = CODECS["video"]
    assert map_payload_types(video, video) == {97: 97, 99: 99, 101: 101}
    assert map_payload_types(CODECS["audio"], CODECS["audio"]) == {96: 96, 9: 9, 0: 0, 8: 8}


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("42e01f", "42e01f"),
        ("42e01f", "42E01F"),  # spelling of the same value
        ("42e01f", "42c01f"),  # constraint_set0 differs: still constrained baseline
        ("42e01f", "42401f"),  # constraint_set1 alone makes it constrained baseline
        ("42001f", "42001f"),  # baseline
        ("42001f", "42e01f"),  # baseline vs constrained baseline: different profiles
        ("42001f", "4d001f"),  # baseline vs main
        ("4d001f", "4d401f"),  # main, constraint_set1 on or off: same profile
        ("640c1f", "64001f"),  # constrained high vs high
        ("640c1f", "640c1f"),
    ],
)
def test_h264_profiles_map_exactly_when_aiortc_calls_them_compatible(a: str, b: str) -> None:
    publisher, subscriber = h264(102, a), h264(125, b)
    compatible = is_codec_compatible(publisher, subscriber)
    assert map_payload_types([publisher], [subscriber]) == ({102: 125} if compatible else {})


def test_h264_baseline_and_constrained_baseline_stay_apart() -> None:
    publisher = [h264(99, "42001f"), h264(101, "42e01f")]
    subscriber = [h264(101, "42001f"), h264(99, "42e01f")]
    assert map_payload_types(publisher, subscriber) == {99: 101, 101: 99}


def test_h264_packetization_mode_must_match() -> None:
    assert map_payload_types([h264(102, "42e01f", "1")], [h264(108, "42e01f", "0")]) == {}
    assert map_payload_types([h264(102, "42e01f", None)], [h264(108, "42e01f", "0")]) == {102: 108}


# --- KeyframeThrottle -----------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.times: list[float] = []
        self.fired = asyncio.Event()

    def __call__(self) -> None:
        self.times.append(time.monotonic())
        self.fired.set()

    async def next_fire(self) -> None:
        self.fired.clear()
        await asyncio.wait_for(self.fired.wait(), WAIT)


INTERVAL = 0.1


async def test_first_request_fires_at_once() -> None:
    sent = Recorder()
    throttle = KeyframeThrottle(INTERVAL, sent)
    throttle.request()
    assert len(sent.times) == 1
    throttle.close()


async def test_requests_inside_the_interval_coalesce_into_one_delayed_fire() -> None:
    sent = Recorder()
    throttle = KeyframeThrottle(INTERVAL, sent)
    throttle.request()
    start = sent.times[0]
    for _ in range(5):
        throttle.request()
        await asyncio.sleep(0.005)
    assert len(sent.times) == 1
    await sent.next_fire()
    assert len(sent.times) == 2
    assert sent.times[1] - start >= INTERVAL - 0.005
    await asyncio.sleep(3 * INTERVAL)
    assert len(sent.times) == 2
    throttle.close()


async def test_request_after_the_interval_fires_at_once() -> None:
    sent = Recorder()
    throttle = KeyframeThrottle(INTERVAL, sent)
    throttle.request()
    await asyncio.sleep(INTERVAL * 1.5)
    throttle.request()
    assert len(sent.times) == 2
    throttle.close()


async def test_zero_interval_never_delays() -> None:
    sent = Recorder()
    throttle = KeyframeThrottle(0.0, sent)
    for _ in range(3):
        throttle.request()
    assert len(sent.times) == 3


async def test_close_cancels_the_pending_fire() -> None:
    sent = Recorder()
    throttle = KeyframeThrottle(INTERVAL, sent)
    throttle.request()
    throttle.request()
    throttle.close()
    await asyncio.sleep(2 * INTERVAL)
    assert len(sent.times) == 1


async def test_at_most_one_fire_per_interval_when_the_loop_was_busy() -> None:
    """The pending fire is due but the loop was blocked; a request arriving before the timer
    callback runs must not add a second PLI next to the pending one."""
    sent = Recorder()
    throttle = KeyframeThrottle(INTERVAL, sent)
    throttle.request()
    throttle.request()  # pending, due at +INTERVAL
    time.sleep(INTERVAL * 1.5)  # the event loop is busy past the due time
    throttle.request()
    await asyncio.sleep(INTERVAL / 2)
    assert len(sent.times) == 2, [round(t - sent.times[0], 3) for t in sent.times]
    throttle.close()

"""`sfu loadtest` statistics, report, metrics parsing, loss counting, progress and chart."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpDecodingParameters,
    RTCRtpReceiveParameters,
    RTCRtpRtxParameters,
)
from aiortc.rtp import RtpPacket
from PIL import Image

from sfu.client.remote import RemoteTrackInfo
from sfu.loadtest.chart import write_chart
from sfu.loadtest.metrics_poll import MetricsPoller, SfuSample, parse_metrics
from sfu.loadtest.progress import Progress, ProgressState
from sfu.loadtest.report import (
    JoinRecord,
    LossCounters,
    RunFacts,
    SubscriptionResult,
    TimelinePoint,
    build_result,
    distribution,
    percentile,
    text_table,
)
from sfu.loadtest.sampling import SETTLE_S, SubscriptionTracker, loss_counters
from sfu.media.tap_receiver import TapReceiver

# --- percentiles -----------------------------------------------------------------------------


@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy(q: float) -> None:
    rng = random.Random(q)
    for size in (1, 2, 3, 10, 101):
        values = [rng.uniform(0, 10) for _ in range(size)]
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_edges() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0], 50) == 1.5
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="within"):
        percentile([1.0], 101)


def test_distribution_skips_missing_values() -> None:
    d = distribution([None, 4.0, 1.0, None, 2.0, 3.0])
    assert (d.n, d.min, d.max, d.mean, d.p50) == (4, 1.0, 4.0, 2.5, 2.5)
    empty = distribution([None])
    assert empty.n == 0 and empty.p99 is None


# --- the result document ---------------------------------------------------------------------


def _sub(receiver: str, kind: str, fps: float, *, lost: int = 0) -> SubscriptionResult:
    return SubscriptionResult(
        room_id="r1",
        receiver=receiver,
        receiver_role="mentor",
        publisher_role="mentee",
        kind=kind,
        source="camera" if kind == "video" else "microphone",
        decoded=False,
        frames=100,
        packets=400,
        bytes=100_000,
        window_s=4.0,
        fps=fps,
        kbps=900.0,
        first_frame_s=0.1,
        loss=LossCounters(
            packets_expected=400 + lost,
            packets_received=400,
            lost_before_retransmission=lost,
            retransmissions_received=lost,
            nack_packets_sent=lost,
            nacked_sequence_numbers=2 * lost,
        ),
    )


def _facts(**overrides: Any) -> RunFacts:
    facts = RunFacts(
        started_at="2025-01-01T00:00:00+00:00",
        wall_s=10.0,
        rooms_requested=2,
        rooms_created=["r1", "r2"],
        room_failures={},
        rooms_deleted=2,
        rooms_left_behind=[],
        max_rooms_live=2,
        steady_from_s=2.0,
        sfu_counter_changes={"sfu_nacks_received_total": 6.0, "sfu_nacks_sent_total": 1.0},
        sfu_scrape_errors=0,
        client_cpu_seconds=3.0,
        errors=[],
    )
    for key, value in overrides.items():
        setattr(facts, key, value)
    return facts


def _point(t: float, rooms: int, sfu: float | None, client: float | None) -> TimelinePoint:
    return TimelinePoint(
        t_s=t,
        rooms_live=rooms,
        sfu_cpu_cores=sfu,
        sfu_rss_mib=100.0 + t,
        client_cpu_cores=client,
        video_fps_mean=30.0,
        video_fps_min=29.0,
        video_subscriptions_flowing=2,
    )


def _joins() -> list[JoinRecord]:
    return [
        JoinRecord("r1", "mentor", "u1", ok=True, join_s=0.01, publish_s=0.03),
        JoinRecord("r1", "mentee", "u2", ok=True, join_s=0.03, publish_s=0.05),
        JoinRecord("r2", "mentor", "u3", failure="4429"),
        JoinRecord("r2", "mentee", "u4", failure="4503"),
        JoinRecord("r2", "observer", "u5", failure="4429"),
    ]


def test_build_result() -> None:
    subs = [_sub("a", "video", 30.0, lost=3), _sub("b", "video", 28.0), _sub("a", "audio", 50.0)]
    timeline = [_point(1.0, 1, None, None), _point(2.0, 2, 0.4, 0.2), _point(3.0, 2, 0.6, 0.4)]
    result = build_result({"rooms": 2}, _joins(), subs, timeline, _facts())
    json.dumps(result)  # serialisable as it is
    joins = result["joins"]
    assert (joins["attempted"], joins["succeeded"], joins["failed"]) == (5, 2, 3)
    assert joins["failed_by_code"] == {"4429": 2, "4503": 1}
    assert joins["join_s"]["n"] == 2 and joins["join_s"]["p50"] == pytest.approx(0.02)
    assert result["video"]["fps"]["min"] == 28.0 and result["audio"]["subscriptions"] == 1
    loss = result["loss"]
    assert loss["packets_expected"] == 1203 and loss["lost_before_retransmission"] == 3
    assert loss["loss_ratio_before_retransmission"] == pytest.approx(3 / 1203)
    assert loss["nacked_sequence_numbers"] == 6
    assert loss["sfu_nacked_sequence_numbers_from_subscribers"] == 6.0
    # steady window: samples from t = 2 s; 2 video subscriptions flowing = 2 streams
    assert result["sfu"]["cpu_cores_steady_mean"] == pytest.approx(0.5)
    assert result["sfu"]["cpu_s_per_s_per_stream"] == pytest.approx(0.25)
    assert result["client"]["cpu_s_per_s_per_stream"] == pytest.approx(0.15)
    assert result["client"]["cheaper_per_stream_than_sfu"] is True
    assert result["sfu"]["rss_mib_max"] == 103.0 and result["sfu"]["samples"] == 2
    table = text_table(result)
    assert "2/5 ok; failed by code: 4429: 2, 4503: 1" in table
    assert "SFU_WS_PER_IP" in table  # rate-limited joins name the settings to raise
    assert "costs more CPU per stream" not in table


def test_report_warns_when_the_client_is_dearer() -> None:
    timeline = [_point(3.0, 2, 0.2, 0.8)]
    result = build_result({}, _joins()[:2], [_sub("a", "video", 30.0)], timeline, _facts())
    assert result["client"]["cheaper_per_stream_than_sfu"] is False
    assert "costs more CPU per stream than the SFU" in text_table(result)
    assert "--publisher direct" not in text_table(result)
    stock = build_result(
        {"publisher": "stock"}, _joins()[:2], [_sub("a", "video", 30.0)], timeline, _facts()
    )
    assert "stock publisher" in text_table(stock) and "try --publisher direct" in text_table(stock)


def test_rooms_per_node() -> None:
    facts = _facts(room_nodes={"r2": "node-b", "r1": "node-a", "r3": "node-b"})
    result = build_result({}, _joins(), [], [_point(3.0, 2, 0.4, 0.2)], facts)
    json.dumps(result)
    assert result["rooms_per_node"] == {"node-a": 1, "node-b": 2}
    assert list(result["rooms_per_node"]) == ["node-a", "node-b"]  # sorted by node id
    assert result["rooms"]["node_of"] == {"r1": "node-a", "r2": "node-b", "r3": "node-b"}
    table = text_table(result)
    assert "rooms per node              node-a: 1, node-b: 2" in table
    assert "the --url node only" in table  # the SFU CPU read is one node's


def test_rooms_on_one_node_or_unknown() -> None:
    one = build_result({}, [], [], [], _facts(room_nodes={"r1": "sfu-1", "r2": "sfu-1"}))
    assert one["rooms_per_node"] == {"sfu-1": 2}
    assert "node-a" not in text_table(one) and "--url node only" not in text_table(one)
    unknown = build_result({}, [], [], [], _facts())  # no room's node known
    assert unknown["rooms_per_node"] == {} and unknown["rooms"]["node_of"] == {}
    assert "rooms per node              -" in text_table(unknown)


def test_result_without_any_sample() -> None:
    result = build_result({}, [], [], [], _facts(steady_from_s=None))
    assert result["sfu"]["cpu_cores_steady_mean"] is None
    assert result["client"]["cheaper_per_stream_than_sfu"] is None
    assert result["loss"]["loss_ratio_before_retransmission"] == 0.0
    assert "joins" in text_table(result)


# --- /metrics --------------------------------------------------------------------------------

METRICS = """# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
process_resident_memory_bytes 1.048576e+08
sfu_rtp_packets_out_total{kind="audio"} 10.0
sfu_rtp_packets_out_total{kind="video"} 32.0
sfu_rtp_packets_out_created{kind="video"} 1.7e+09
sfu_rooms 3.0
sfu_nacks_received_total NaN
"""


def test_parse_metrics_sums_labels_and_skips_others() -> None:
    values = parse_metrics(
        METRICS,
        (
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "sfu_rtp_packets_out_total",
            "sfu_rooms",
            "sfu_nacks_received_total",
        ),
    )
    assert values == {
        "process_cpu_seconds_total": 12.5,
        "process_resident_memory_bytes": 104857600.0,
        "sfu_rtp_packets_out_total": 42.0,
        "sfu_rooms": 3.0,
    }


def test_cpu_rate_and_counter_changes() -> None:
    poller = MetricsPoller.__new__(MetricsPoller)
    poller.first = SfuSample(10.0, 5.0, 1e8, {"sfu_nacks_sent_total": 2.0})
    poller.last = None
    assert poller.rate(poller.first) is None
    later = SfuSample(12.0, 6.0, 1e8, {"sfu_nacks_sent_total": 7.0})
    assert poller.rate(later) == pytest.approx(0.5)
    assert poller.counter_changes(later) == {"sfu_nacks_sent_total": 5.0}
    assert poller.counter_changes(None) == {}


# --- loss and rates from a receiver ------------------------------------------------------------


VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
RTX = RTCRtpCodecParameters(
    mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96}
)


async def test_loss_counters_from_sequence_gaps_across_wraparound() -> None:
    """A real receiver's statistics: media on 1001 with three gaps, repaired over RTX (1002)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = TapReceiver("video", pc.addTransceiver("video", "recvonly").receiver.transport)
    await receiver.receive(
        RTCRtpReceiveParameters(
            codecs=[VP8, RTX],
            encodings=[
                RTCRtpDecodingParameters(
                    ssrc=1001, payloadType=96, rtx=RTCRtpRtxParameters(ssrc=1002)
                )
            ],
        )
    )
    try:
        sent = [(65530 + i) % 65536 for i in range(20)]  # crosses the 16-bit wrap
        lost = {sent[4], sent[11], sent[12]}
        for seq in sent:
            if seq not in lost:
                receiver.handle_rtp(RtpPacket(96, sequence_number=seq, ssrc=1001, payload=b"x"), 0)
        for rtx_seq, seq in enumerate(sorted(lost)):
            original = seq.to_bytes(2, "big") + b"x"
            receiver.handle_rtp(
                RtpPacket(97, sequence_number=rtx_seq, ssrc=1002, payload=original), 0
            )
        info = RemoteTrackInfo("t", "p", "camera", "video", nack_packets_sent=2)
        info.nacked_sequence_numbers = 3
        counters = loss_counters(receiver, info)
        assert counters == LossCounters(
            packets_expected=20,
            packets_received=17,
            lost_before_retransmission=3,
            retransmissions_received=3,
            nack_packets_sent=2,
            nacked_sequence_numbers=3,
        )
        assert loss_counters(None, info).packets_expected == 0
    finally:
        await receiver.stop()
        await pc.close()


def test_tracker_measures_from_the_settle_point() -> None:
    info = RemoteTrackInfo("t", "p", "camera", "video")
    tracker = SubscriptionTracker("r", "u", "mentor", "mentee", info, decoded=False)
    assert tracker.observe(100.0) is None  # nothing yet
    info.first_frame_at = 100.5
    info.frames, info.octets, info.packets = 15, 15_000, 60
    assert tracker.observe(101.0) is None  # previous tick had no frames
    info.frames, info.octets, info.packets = 45, 45_000, 180
    assert tracker.observe(102.0) == pytest.approx(30.0)
    assert tracker.baseline is not None and tracker.baseline.at >= 100.5 + SETTLE_S
    info.frames, info.octets, info.packets = 105, 120_000, 420
    assert tracker.observe(104.0) == pytest.approx(30.0)
    result = tracker.result(LossCounters())
    assert result.window_s == pytest.approx(2.0)
    assert result.fps == pytest.approx(30.0)
    assert result.kbps == pytest.approx(75_000 * 8 / 2.0 / 1000)
    assert (result.frames, result.packets, result.bytes) == (105, 420, 120_000)


def test_tracker_shorter_than_settle_uses_first_to_last_frame() -> None:
    info = RemoteTrackInfo("t", "p", "camera", "video")
    tracker = SubscriptionTracker("r", "u", "mentor", "mentee", info, decoded=False)
    info.first_frame_at, info.last_frame_at, info.frames = 10.0, 10.5, 16
    tracker.observe(10.6)
    result = tracker.result(LossCounters())
    assert result.fps == pytest.approx(30.0) and result.kbps is None


# --- progress and chart ------------------------------------------------------------------------


def _state(elapsed: float) -> ProgressState:
    return ProgressState(elapsed, 10.0, 1, 2, 2, 0, 29.5, 0.25)


def test_progress_plain_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(True, stream)
    for second in range(1, 10):
        progress.update(_state(float(second)))
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["1.0/10", "6.0/10", "9.0/10"]
    assert "rooms 1/2  joins 2 ok 0 failed  fps min 29.5  SFU cores 0.25" in lines[0]


def test_progress_bar_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress(True, stream)
    progress.update(_state(5.0))
    progress.finish()
    assert stream.getvalue().startswith("\r[" + "#" * 12 + "." * 12 + "]")
    assert stream.getvalue().endswith("\n")
    silent = io.StringIO()
    Progress(False, silent).update(_state(1.0))
    assert silent.getvalue() == ""


@pytest.mark.parametrize("nodes", [{}, {"r1": "node-a", "r2": "node-b", "r3": "node-b"}])
def test_chart_is_a_png(tmp_path: Path, nodes: dict[str, str]) -> None:
    timeline = [_point(float(t), min(t, 3), 0.1 * t, 0.05 * t) for t in range(1, 8)]
    result = build_result({"rooms": 3}, [], [], timeline, _facts(room_nodes=nodes))
    path = tmp_path / "chart.png"
    write_chart(result, path)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (800, 600)

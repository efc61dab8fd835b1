"""Statistics, the JSON result and the closing table of `sfu loadtest`.

Everything here is plain data: the runner fills :class:`JoinRecord`, :class:`SubscriptionResult`
and :class:`TimelinePoint`, and :func:`build_result` turns them into the JSON document
(``schema`` ``sfu-loadtest/1``; every duration in seconds, every rate per second).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEMA = "sfu-loadtest/1"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (the
    usual "type 7" definition, as numpy's default). Raises ValueError when empty."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within [0, 100], got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return float(ordered[low])
    weight = position - low
    return float(ordered[low] * (1.0 - weight) + ordered[high] * weight)


@dataclass(frozen=True, slots=True)
class Distribution:
    n: int
    mean: float | None
    min: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


def distribution(values: Iterable[float | None]) -> Distribution:
    """Count, mean, min, p50/p95/p99 and max of the values given (None values are skipped)."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return Distribution(0, None, None, None, None, None, None)
    return Distribution(
        n=len(present),
        mean=sum(present) / len(present),
        min=min(present),
        p50=percentile(present, 50),
        p95=percentile(present, 95),
        p99=percentile(present, 99),
        max=max(present),
    )


@dataclass(slots=True)
class JoinRecord:
    """One participant's join: WebSocket to ``joined``, then (publishers) the publish."""

    room_id: str
    role: str
    user: str
    ok: bool = False
    join_s: float | None = None
    """From opening the WebSocket to receiving ``joined``."""
    publish_s: float | None = None
    """From sending ``publish_offer`` to applying ``publish_answer`` (publishers only)."""
    failure: str | None = None
    """Why it failed: the close code (``"4503"``), ``"http_<status>"`` for a refused
    handshake, ``"timeout"``, ``"connection_error"`` or ``"publish_<error code>"``."""
    detail: str = ""
    closed_during_run: str | None = None
    """The close code when the SFU closed a joined participant's socket before the end."""


@dataclass(slots=True)
class LossCounters:
    """Per subscription, from the receiver's RTP statistics and the NACKs it sent."""

    packets_expected: int = 0
    """Media-SSRC sequence numbers spanned (highest - first + 1, with wrap-around)."""
    packets_received: int = 0
    """Media-SSRC packets received (first transmissions and plain retransmissions)."""
    lost_before_retransmission: int = 0
    """``packets_expected - packets_received`` (floored at 0): lost on the way, before any
    RTX repair."""
    retransmissions_received: int = 0
    """Packets received on the RTX SSRC (repairs of NACKed packets)."""
    nack_packets_sent: int = 0
    """RTCP NACK packets the client's receiver sent for this subscription."""
    nacked_sequence_numbers: int = 0
    """Sequence numbers listed in those NACKs (repeated in later NACKs until repaired)."""


@dataclass(slots=True)
class SubscriptionResult:
    """One remote track at one receiver (a "subscription")."""

    room_id: str
    receiver: str
    receiver_role: str
    publisher_role: str
    kind: str
    source: str
    decoded: bool
    """True when frames were counted after decoding (the sampled, decoding receiver)."""
    frames: int
    packets: int
    bytes: int
    """RTP payload bytes received (RTX included)."""
    window_s: float
    """The steady window the rates are measured over (from 1 s after the first frame)."""
    fps: float | None
    """Frames per second over the window (video: one per marker bit, or decoded frames;
    audio: one per packet, or decoded frames)."""
    kbps: float | None
    first_frame_s: float | None
    """From the ``subscribe_offer`` announcing the track to its first frame."""
    width: int = 0
    height: int = 0
    loss: LossCounters = field(default_factory=LossCounters)


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    t_s: float
    """Seconds since the first join started."""
    rooms_live: int
    sfu_cpu_cores: float | None
    sfu_rss_mib: float | None
    client_cpu_cores: float | None
    video_fps_mean: float | None
    video_fps_min: float | None
    video_subscriptions_flowing: int


@dataclass(slots=True)
class RunFacts:
    """What the runner knows besides joins, subscriptions and the timeline."""

    started_at: str
    wall_s: float
    rooms_requested: int
    rooms_created: list[str]
    room_failures: dict[str, int]
    rooms_deleted: int
    rooms_left_behind: list[str]
    max_rooms_live: int
    steady_from_s: float | None
    sfu_counter_changes: dict[str, float]
    sfu_scrape_errors: int
    client_cpu_seconds: float
    errors: list[str]
    room_nodes: dict[str, str] = field(default_factory=dict)
    """Room id -> the node that holds it (the room object's ``node_id``), where known."""


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _steady(timeline: Sequence[TimelinePoint], start: float | None) -> list[TimelinePoint]:
    if start is not None:
        points = [p for p in timeline if p.t_s >= start]
        if points:
            return points
    return list(timeline)


def rooms_per_node(room_nodes: dict[str, str]) -> dict[str, int]:
    """How many rooms each node holds, by node id."""
    return dict(sorted(Counter(room_nodes.values()).items()))


def failure_counts(joins: Iterable[JoinRecord]) -> dict[str, int]:
    return dict(sorted(Counter(j.failure for j in joins if j.failure).items()))


def build_result(
    options: dict[str, Any],
    joins: Sequence[JoinRecord],
    subscriptions: Sequence[SubscriptionResult],
    timeline: Sequence[TimelinePoint],
    facts: RunFacts,
) -> dict[str, Any]:
    """The JSON document (see the module docstring and docs/operations.md)."""
    video = [s for s in subscriptions if s.kind == "video"]
    audio = [s for s in subscriptions if s.kind == "audio"]
    steady = _steady(timeline, facts.steady_from_s)
    sfu_cores = _mean(p.sfu_cpu_cores for p in steady)
    client_cores = _mean(p.client_cpu_cores for p in steady)
    # A forwarded stream: one publisher's video (+ audio) to one receiver (docs/benchmarks.md).
    streams = sum(1 for s in video if s.frames > 0)
    totals = {
        f.name: sum(int(getattr(s.loss, f.name)) for s in subscriptions)
        for f in fields(LossCounters)
    }
    expected = totals["packets_expected"]
    sfu_per_stream = sfu_cores / streams if sfu_cores is not None and streams else None
    client_per_stream = client_cores / streams if client_cores is not None and streams else None
    rss = [p.sfu_rss_mib for p in timeline if p.sfu_rss_mib is not None]
    return {
        "schema": SCHEMA,
        "started_at": facts.started_at,
        "wall_s": facts.wall_s,
        "options": options,
        "rooms": {
            "requested": facts.rooms_requested,
            "created": len(facts.rooms_created),
            "ids": facts.rooms_created,
            "failed_by_status": facts.room_failures,
            "max_live": facts.max_rooms_live,
            "deleted": facts.rooms_deleted,
            "left_behind": facts.rooms_left_behind,
            "node_of": dict(sorted(facts.room_nodes.items())),
        },
        "rooms_per_node": rooms_per_node(facts.room_nodes),
        "joins": {
            "attempted": len(joins),
            "succeeded": sum(1 for j in joins if j.ok),
            "failed": sum(1 for j in joins if not j.ok),
            "failed_by_code": failure_counts(joins),
            "closed_during_run_by_code": dict(
                sorted(Counter(j.closed_during_run for j in joins if j.closed_during_run).items())
            ),
            "join_s": asdict(distribution(j.join_s for j in joins if j.ok)),
            "publish_s": asdict(distribution(j.publish_s for j in joins if j.ok)),
            "records": [asdict(j) for j in joins],
        },
        "first_frame_s": asdict(distribution(s.first_frame_s for s in video)),
        "video": {
            "subscriptions": len(video),
            "fps": asdict(distribution(s.fps for s in video)),
            "kbps": asdict(distribution(s.kbps for s in video)),
            "decoded_subscriptions": sum(1 for s in video if s.decoded and s.frames > 0),
        },
        "audio": {
            "subscriptions": len(audio),
            "packets_per_s": asdict(distribution(s.fps for s in audio)),
            "kbps": asdict(distribution(s.kbps for s in audio)),
        },
        "loss": {
            **totals,
            "loss_ratio_before_retransmission": (
                totals["lost_before_retransmission"] / expected if expected else 0.0
            ),
            "sfu_nacked_sequence_numbers_from_subscribers": facts.sfu_counter_changes.get(
                "sfu_nacks_received_total"
            ),
            "sfu_nacks_answered_from_history": facts.sfu_counter_changes.get(
                "sfu_nacks_answered_total"
            ),
            "sfu_nack_packets_sent_to_publishers": facts.sfu_counter_changes.get(
                "sfu_nacks_sent_total"
            ),
        },
        "subscriptions": [asdict(s) for s in subscriptions],
        "sfu": {
            "cpu_cores_steady_mean": sfu_cores,
            "cpu_cores_max": max((p.sfu_cpu_cores or 0.0 for p in timeline), default=None),
            "rss_mib_max": max(rss) if rss else None,
            "rss_mib_last": rss[-1] if rss else None,
            "cpu_s_per_s_per_stream": sfu_per_stream,
            "counter_changes": facts.sfu_counter_changes,
            "scrape_errors": facts.sfu_scrape_errors,
            "samples": sum(1 for p in timeline if p.sfu_cpu_cores is not None),
        },
        "client": {
            "cpu_cores_steady_mean": client_cores,
            "cpu_seconds_total": facts.client_cpu_seconds,
            "cpu_s_per_s_per_stream": client_per_stream,
            "forwarded_streams": streams,
            "cheaper_per_stream_than_sfu": (
                client_per_stream < sfu_per_stream
                if client_per_stream is not None and sfu_per_stream is not None
                else None
            ),
        },
        "steady_from_s": facts.steady_from_s,
        "timeline": [asdict(p) for p in timeline],
        "errors": facts.errors,
    }


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{float(value):.{digits}f}"


def _dist(d: dict[str, Any], digits: int = 2, scale: float = 1.0) -> str:
    if not d["n"]:
        return "-"
    return " / ".join(_num(d[k] * scale, digits) for k in ("p50", "p95", "p99"))


def _per_node(counts: dict[str, int]) -> str:
    if not counts:
        return "-"
    return ", ".join(f"{node}: {count}" for node, count in counts.items())


def text_table(result: dict[str, Any]) -> str:
    """The short summary printed at the end of a run."""
    rooms, joins, video, loss = result["rooms"], result["joins"], result["video"], result["loss"]
    sfu, client = result["sfu"], result["client"]
    failed = ", ".join(f"{k}: {v}" for k, v in joins["failed_by_code"].items()) or "none"
    rows = [
        (
            "rooms",
            f"{rooms['created']}/{rooms['requested']} created, max {rooms['max_live']} "
            f"live, {len(rooms['left_behind'])} left behind",
        ),
        ("rooms per node", _per_node(result.get("rooms_per_node") or {})),
        ("joins", f"{joins['succeeded']}/{joins['attempted']} ok; failed by code: {failed}"),
        ("join ms p50/p95/p99", _dist(joins["join_s"], 0, 1000.0)),
        ("publish ms p50/p95/p99", _dist(joins["publish_s"], 0, 1000.0)),
        ("first frame ms p50/p95/p99", _dist(result["first_frame_s"], 0, 1000.0)),
        (
            "video fps min/mean",
            f"{_num(video['fps']['min'])} / {_num(video['fps']['mean'])} "
            f"over {video['subscriptions']} subscriptions ({video['decoded_subscriptions']} "
            "decoded)",
        ),
        ("video kbit/s mean", _num(video["kbps"]["mean"], 0)),
        (
            "loss before RTX",
            f"{loss['lost_before_retransmission']}/{loss['packets_expected']} "
            f"({loss['loss_ratio_before_retransmission'] * 100:.2f} %), "
            f"{loss['retransmissions_received']} RTX received, "
            f"{loss['nack_packets_sent']} NACKs sent",
        ),
        (
            "SFU CPU cores mean/max",
            f"{_num(sfu['cpu_cores_steady_mean'], 3)} / "
            f"{_num(sfu['cpu_cores_max'], 3)}; RSS max {_num(sfu['rss_mib_max'], 0)} MiB",
        ),
        (
            "CPU-s/s per stream",
            f"SFU {_num(sfu['cpu_s_per_s_per_stream'], 4)}, "
            f"client {_num(client['cpu_s_per_s_per_stream'], 4)} "
            f"({client['forwarded_streams']} streams, "
            f"{result['options'].get('publisher', 'stock')} publisher)",
        ),
    ]
    churn = result.get("churn")
    if churn:
        rows.insert(
            1,
            (
                "churn",
                f"{churn['rooms_turned_over']} rooms turned over (each lived "
                f"{churn['room_lifetime_s']:g} s), {churn['rooms_recorded']} recorded",
            ),
        )
    width = max(len(name) for name, _ in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    if len(result.get("rooms_per_node") or {}) > 1:
        lines.append(
            "note: the rooms are on several nodes; the SFU CPU, RSS and counters are those of "
            "the --url node only"
        )
    if client["cheaper_per_stream_than_sfu"] is False:
        lines.append(
            "warning: the client costs more CPU per stream than the SFU; on a shared machine "
            "it saturates first and the SFU's limit is not measured"
            + (" (try --publisher direct)" if result["options"].get("publisher") == "stock" else "")
        )
    if joins["failed_by_code"].get("4429") or joins["failed_by_code"].get("http_429"):
        lines.append(
            "warning: joins were rate limited (4429): raise SFU_WS_PER_IP, "
            "SFU_REST_RATE_PER_IP and SFU_REST_BURST_PER_IP on the SFU for a load test"
        )
    return "\n".join(lines)

"""What bench/forwarding measures per case, the fits over K, and its verdict and report.

With several rounds every (server, K) has several cases: a fit is made over the median CPU of
each K (one round: the measured values) and over each round alone, whose spread (min-max) is
reported with the medians.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TARGET_RATIO = 30.0
TARGET_FPS = 29.0


@dataclass
class Case:
    server: str
    k: int
    window_s: float = 0.0
    cpu_s_per_s: float = 0.0
    """Server CPU (user + system, all threads) per wall second over the window."""
    user_s_per_s: float = 0.0
    system_s_per_s: float = 0.0
    bench_cpu_s_per_s: float = 0.0
    rss_mib: float = 0.0
    video_fps: list[float] = field(default_factory=list)
    audio_fps: list[float] = field(default_factory=list)
    packets_per_s: list[float] = field(default_factory=list)
    """RTP packets (video + audio, RTX included) received per second, per subscriber."""
    video_kbps: list[float] = field(default_factory=list)
    """Video RTP payload received per subscriber, kbit/s."""
    published_fps: float = 0.0
    first_decoded_frame_s: float | None = None
    first_frame_s: list[float | None] = field(default_factory=list)
    """Per subscriber, from its subscribe_offer to its first video frame (decoded for
    subscriber 0, RTP for the others)."""
    error: str | None = None
    round: int = 0


@dataclass
class Fit:
    server: str
    fixed: float
    per_stream: float
    ks: list[int]
    points: str
    """"all": every measured K; "kept_up": only the K where every subscriber got >= 29 fps."""


@dataclass
class Summary:
    """One server and K over the rounds: medians and spread."""

    server: str
    k: int
    rounds: int
    cpu_median: float
    cpu_min: float
    cpu_max: float
    min_fps_median: float
    decoded_fps_median: float


def kept_up(case: Case) -> bool:
    return bool(case.video_fps) and case.error is None and min(case.video_fps) >= TARGET_FPS


def fit(cases: list[Case], points: str) -> Fit | None:
    """Least squares CPU-s/s = fixed + per_stream * K over the median CPU of each K among the
    chosen cases (>= 2 K values)."""
    usable = [c for c in cases if c.window_s > 0 and (points == "all" or kept_up(c))]
    by_k: dict[int, list[float]] = {}
    for c in usable:
        by_k.setdefault(c.k, []).append(c.cpu_s_per_s)
    if len(by_k) < 2:
        return None
    ks = np.array(sorted(by_k), dtype=float)
    cpu = np.array([statistics.median(by_k[k]) for k in sorted(by_k)], dtype=float)
    design = np.column_stack([np.ones_like(ks), ks])
    (fixed, slope), *_ = np.linalg.lstsq(design, cpu, rcond=None)
    return Fit(usable[0].server, float(fixed), float(slope), sorted(by_k), points)


def round_fits(cases: list[Case], server: str) -> dict[int, Fit]:
    """Round → the fit over every K of that round alone, for one server."""
    out = {}
    for r in sorted({c.round for c in cases if c.server == server}):
        found = fit([c for c in cases if c.server == server and c.round == r], "all")
        if found is not None:
            out[r] = found
    return out


def summaries(cases: list[Case]) -> list[Summary]:
    keys: dict[tuple[str, int], list[Case]] = {}
    for c in cases:
        if c.window_s > 0 and c.video_fps:
            keys.setdefault((c.server, c.k), []).append(c)
    out = []
    for (server, k), group in keys.items():
        cpu = [c.cpu_s_per_s for c in group]
        out.append(
            Summary(
                server=server,
                k=k,
                rounds=len(group),
                cpu_median=statistics.median(cpu),
                cpu_min=min(cpu),
                cpu_max=max(cpu),
                min_fps_median=statistics.median(min(c.video_fps) for c in group),
                decoded_fps_median=statistics.median(c.video_fps[0] for c in group),
            )
        )
    return out


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(cases: list[Case]) -> str:
    head = (
        "| server | K | CPU-s/s (user + sys) | RSS MiB | video fps min / mean "
        "| decoded fps (sub 0) | video kbit/s mean | audio pkt/s min | first decoded frame s "
        "| first frame max s | bench CPU-s/s |"
    )
    rows = [head, "|" + "---|" * 11]
    for c in cases:
        if not c.video_fps:
            rows.append(f"| {c.server} | {c.k} | failed: {c.error} |" + " |" * 8)
            continue
        firsts = [f for f in c.first_frame_s if f is not None]
        rows.append(
            f"| {c.server} | {c.k} "
            f"| {c.cpu_s_per_s:.4f} ({c.user_s_per_s:.3f} + {c.system_s_per_s:.3f}) "
            f"| {c.rss_mib:.0f} "
            f"| {min(c.video_fps):.1f} / {sum(c.video_fps) / len(c.video_fps):.1f} "
            f"| {c.video_fps[0]:.1f} | {sum(c.video_kbps) / len(c.video_kbps):.0f} "
            f"| {min(c.audio_fps):.1f} "
            f"| {_fmt(c.first_decoded_frame_s)} | {_fmt(max(firsts) if firsts else None)} "
            f"| {c.bench_cpu_s_per_s:.3f} |"
        )
    return "\n".join(rows)


def summary_table(rows: list[Summary]) -> str:
    lines = [
        "| server | K | rounds | CPU-s/s median | min-max | video fps min (median) "
        "| decoded fps (median) |",
        "|" + "---|" * 7,
    ]
    for s in rows:
        lines.append(
            f"| {s.server} | {s.k} | {s.rounds} | {s.cpu_median:.4f} "
            f"| {s.cpu_min:.4f}..{s.cpu_max:.4f} | {s.min_fps_median:.1f} "
            f"| {s.decoded_fps_median:.1f} |"
        )
    return "\n".join(lines)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0 or numerator <= 0:
        return None
    return numerator / denominator


def _per_packet(cases: list[Case], server: str, found: Fit | None) -> tuple[float | None, ...]:
    mine = [c for c in cases if c.server == server]
    packets = [p for c in mine for p in c.packets_per_s]
    mean_packets = sum(packets) / len(packets) if packets else None
    per_packet_us = None
    if found is not None and mean_packets:
        per_packet_us = found.per_stream / mean_packets * 1e6
    min_fps = min((min(c.video_fps) for c in mine if c.video_fps), default=None)
    return per_packet_us, mean_packets, min_fps


def pion_verdict(cases: list[Case], fits: dict[str, Fit]) -> dict[str, Any]:
    """The SFU against Pion: ratios sfu/pion of the per-stream and fixed costs (all-K fits
    over medians), their range over the rounds, and of the median CPU at each K."""
    sfu, pion = fits.get("sfu/all"), fits.get("pion/all")
    sfu_rounds, pion_rounds = round_fits(cases, "sfu"), round_fits(cases, "pion")
    ratios = [
        _ratio(sfu_rounds[r].per_stream, pion_rounds[r].per_stream)
        for r in sfu_rounds
        if r in pion_rounds
    ]
    per_round = [r for r in ratios if r is not None]
    medians = {(s.server, s.k): s.cpu_median for s in summaries(cases)}
    by_k = {
        str(k): _ratio(medians[("sfu", k)], medians[("pion", k)])
        for (server, k) in medians
        if server == "sfu" and ("pion", k) in medians
    }
    per_packet_us, packets, min_fps = _per_packet(cases, "pion", pion)
    pion_cases = [c for c in cases if c.server == "pion"]
    return {
        "per_stream_ratio_sfu_over_pion": _ratio(
            sfu.per_stream if sfu else None, pion.per_stream if pion else None
        ),
        "per_stream_ratio_rounds_min_max": (
            [min(per_round), max(per_round)] if per_round else None
        ),
        "fixed_ratio_sfu_over_pion": _ratio(
            sfu.fixed if sfu else None, pion.fixed if pion else None
        ),
        "cpu_ratio_sfu_over_pion_by_k": by_k,
        "pion_min_video_fps": min_fps,
        "pion_fps_met": bool(pion_cases) and all(kept_up(c) for c in pion_cases),
        "pion_us_per_forwarded_packet": per_packet_us,
        "pion_packets_per_stream_per_s": packets,
    }


def verdict(cases: list[Case], fits: dict[str, Fit]) -> dict[str, Any]:
    """The ratio uses the SFU's fit over every K and the baseline's fit over the K where it
    kept up (at saturation its CPU is capped while it delivers fewer frames); the ratio with
    the baseline's all-K fit is given too."""
    sfu_fit = fits.get("sfu/all")
    relay_kept = fits.get("relay/kept_up")
    relay_all = fits.get("relay/all")

    def ratio(relay: Fit | None) -> float | None:
        if sfu_fit is None or relay is None or sfu_fit.per_stream <= 0:
            return None
        return relay.per_stream / sfu_fit.per_stream

    main_ratio = ratio(relay_kept) if relay_kept is not None else ratio(relay_all)
    sfu_cases = [c for c in cases if c.server == "sfu"]
    per_packet_us, mean_packets, min_fps = _per_packet(cases, "sfu", sfu_fit)
    result: dict[str, Any] = {
        "ratio_per_stream_relay_over_sfu": main_ratio,
        "ratio_basis": "relay/kept_up" if relay_kept is not None else "relay/all",
        "ratio_with_relay_all_k": ratio(relay_all),
        "ratio_target": TARGET_RATIO,
        "ratio_met": main_ratio is not None and main_ratio >= TARGET_RATIO,
        "sfu_min_video_fps": min_fps,
        "fps_target": TARGET_FPS,
        "fps_met": bool(sfu_cases) and all(kept_up(c) for c in sfu_cases),
        "sfu_us_per_forwarded_packet": per_packet_us,
        "sfu_packets_per_stream_per_s": mean_packets,
    }
    if any(c.server == "pion" for c in cases):
        result["pion"] = pion_verdict(cases, fits)
    return result


def _range(pair: list[float] | None, digits: int) -> str:
    return "-" if not pair else f"{pair[0]:.{digits}f}..{pair[1]:.{digits}f}"


def _pion_lines(result: dict[str, Any], cases: list[Case]) -> list[str]:
    p = result["verdict"]["pion"]
    lines = []
    for server in ("sfu", "pion"):
        found = list(round_fits(cases, server).values())
        if len(found) > 1:
            slopes = [f.per_stream for f in found]
            fixed = [f.fixed for f in found]
            lines.append(
                f"{server} per round: per_stream {min(slopes):.4f}..{max(slopes):.4f}, "
                f"fixed {min(fixed):.4f}..{max(fixed):.4f} ({len(found)} rounds)"
            )
    by_k = ", ".join(f"K={k}: {_fmt(r, 1)}" for k, r in p["cpu_ratio_sfu_over_pion_by_k"].items())
    lines.append(
        f"sfu/pion per forwarded stream: {_fmt(p['per_stream_ratio_sfu_over_pion'], 1)} "
        f"(rounds {_range(p['per_stream_ratio_rounds_min_max'], 1)}); "
        f"fixed cost: {_fmt(p['fixed_ratio_sfu_over_pion'], 1)}; "
        f"median CPU by K: {by_k or '-'}"
    )
    lines.append(
        f"Pion min video fps per subscriber: {_fmt(p['pion_min_video_fps'], 1)} "
        f"(>= {TARGET_FPS:g}: {'met' if p['pion_fps_met'] else 'NOT met'})"
    )
    if p["pion_us_per_forwarded_packet"] is not None:
        lines.append(
            f"Pion per forwarded packet: {p['pion_us_per_forwarded_packet']:.1f} us "
            f"({p['pion_packets_per_stream_per_s']:.0f} packets/s per stream)"
        )
    return lines


def report(result: dict[str, Any]) -> str:
    cases = [Case(**c) for c in result["cases"]]
    config = result["config"]
    lines = [
        f"sfu {result['machine']['sfu_revision']}; "
        f"machine: {result['machine']['nproc']} CPUs, {result['machine']['cpu_model']}; "
        f"server CPUs {config['server_cpus']}, bench CPUs {config['bench_cpus']}; "
        f"window {config['window_s']:g} s; clip {config['video_clip_kbps']:.0f} kbit/s",
        table(cases),
        "",
    ]
    if config.get("rounds", 1) > 1 or any(c.server == "pion" for c in cases):
        lines += [summary_table(summaries(cases)), ""]
    for key, f in result["fits"].items():
        lines.append(
            f"fit {key}: CPU-s/s = {f['fixed']:.4f} + {f['per_stream']:.4f} x K "
            f"(K = {', '.join(map(str, f['ks']))})"
        )
    v = result["verdict"]
    if any(c.server == "relay" for c in cases):
        lines.append(
            f"per-stream ratio relay/sfu ({v['ratio_basis']}): "
            f"{_fmt(v['ratio_per_stream_relay_over_sfu'], 1)} "
            f"(target >= {TARGET_RATIO:g}: {'met' if v['ratio_met'] else 'NOT met'}); "
            f"with relay/all: {_fmt(v['ratio_with_relay_all_k'], 1)}"
        )
    if any(c.server == "sfu" for c in cases):
        lines.append(
            f"SFU min video fps per subscriber: {_fmt(v['sfu_min_video_fps'], 1)} "
            f"(target >= {TARGET_FPS:g}: {'met' if v['fps_met'] else 'NOT met'})"
        )
    if v["sfu_us_per_forwarded_packet"] is not None:
        lines.append(
            f"SFU per forwarded packet: {v['sfu_us_per_forwarded_packet']:.1f} us "
            f"({v['sfu_packets_per_stream_per_s']:.0f} packets/s per stream)"
        )
    if "pion" in v:
        lines += _pion_lines(result, cases)
    for name, why in config.get("skipped", {}).items():
        lines.append(f"skipped {name}: {why}")
    return "\n".join(lines)

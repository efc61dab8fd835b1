"""Forwarding benchmark: the SFU against a stock aiortc ``MediaRelay`` server (bench/relay_server).

One publisher sends a pre-encoded 640x480 30 fps VP8 clip of about 1 Mbit/s plus Opus
(``PacedPacketTrack``: ``av.Packet`` objects, never encoded at run time); K subscribers receive
it, for each K first through the SFU, then through the baseline. Each server runs as its own
process, restarted for every K; psutil measures its CPU time (user + system, all threads) over
a steady-state window that starts after every subscriber has its first video frame and a
warm-up, and its RSS at the end of the window.

Subscriber 0 decodes (stock aiortc receiver: decoded fps and time to the first decoded frame);
the others count frames from RTP without decoding (one per marker bit), so the subscribers'
own CPU stays small. A "forwarded stream" is one subscription to the publisher's video + audio.
CPU = fixed + per_stream * K is fitted by least squares over K.

Run inside a loopback-only network namespace::

    unshare -n sh -c 'ip link set lo up && python -m bench.forwarding --json out.json'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import (
    LOOPBACK,
    VIDEO,
    camera,
    machine,
    microphone,
    pin,
)
from bench.servers import RelayServer, Server, SfuServer

if __package__ in (None, ""):  # run as `python bench/forwarding.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import numpy as np
import psutil
from aiortc import MediaStreamTrack

from sfu.client.client import SfuClient
from sfu.client.clips import PacedPacketTrack
from sfu.client.remote import RemoteTrackInfo

TARGET_RATIO = 30.0
TARGET_FPS = 29.0
FIRST_FRAME_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 15.0
CLOSE_TIMEOUT_S = 15.0


# --- servers under test ---------------------------------------------------------------------


# --- one case: one server, K subscribers ----------------------------------------------------


@dataclass
class Sample:
    at: float
    server_user: float
    server_system: float
    bench_cpu: float
    video_frames: list[int]
    audio_frames: list[int]
    packets: list[int]
    video_octets: list[int]
    published_video: int


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


def _video(info: RemoteTrackInfo) -> bool:
    return info.kind == "video"


def _track(client: SfuClient, kind: str) -> RemoteTrackInfo | None:
    return next((i for i in client.remote_tracks.values() if i.kind == kind), None)


def _cpu(proc: Any) -> tuple[float, float]:
    times = proc.cpu_times()
    return float(times.user), float(times.system)


def _sample(server: Any, bench: Any, subs: list[SfuClient], video: PacedPacketTrack) -> Sample:
    vids = [_track(s, "video") for s in subs]
    auds = [_track(s, "audio") for s in subs]
    user, system = _cpu(server)
    return Sample(
        at=time.monotonic(),
        server_user=user,
        server_system=system,
        bench_cpu=sum(_cpu(bench)),
        video_frames=[v.frames if v else 0 for v in vids],
        audio_frames=[a.frames if a else 0 for a in auds],
        packets=[
            (v.packets if v else 0) + (a.packets if a else 0)
            for v, a in zip(vids, auds, strict=True)
        ],
        video_octets=[v.octets if v else 0 for v in vids],
        published_video=video.packets_sent,
    )


def _rates(before: list[int], after: list[int], span: float) -> list[float]:
    return [(b - a) / span for a, b in zip(before, after, strict=True)]


async def _close_all(clients: list[SfuClient]) -> None:
    if clients:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def run_case(
    server: Server,
    k: int,
    *,
    window: float,
    warmup: float,
    server_cpus: set[int] | None,
    audio: bool = True,
) -> Case:
    case = Case(server=server.name, k=k)
    server.start()
    clients: list[SfuClient] = []
    try:
        pin(server.pid, server_cpus)
        print(f"{server.name} K={k}: server pid {server.pid}", flush=True)
        room = await server.prepare()
        publisher = await SfuClient.connect(
            server.ws_url,
            server.token(room, "publisher", "mentor"),
            ice=LOOPBACK,
            decode=False,
            timeout=CONNECT_TIMEOUT_S,
        )
        clients.append(publisher)
        video = camera()
        tracks: dict[MediaStreamTrack, str] = {video: "camera"}
        if audio:
            tracks[microphone()] = "microphone"
        await publisher.publish(tracks, timeout=CONNECT_TIMEOUT_S)
        subs: list[SfuClient] = []
        for index in range(k):
            sub = await SfuClient.connect(
                server.ws_url,
                server.token(room, f"sub{index}", "observer"),
                ice=LOOPBACK,
                decode=index == 0,
                timeout=CONNECT_TIMEOUT_S,
            )
            subs.append(sub)
            clients.append(sub)
        deadline = time.monotonic() + FIRST_FRAME_TIMEOUT_S
        for sub in subs:
            remaining = max(0.1, deadline - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await sub.wait_frames(_video, 1, timeout=remaining)
        firsts = [_track(s, "video") for s in subs]
        case.first_frame_s = [f.first_frame_latency_s if f else None for f in firsts]
        case.first_decoded_frame_s = case.first_frame_s[0]
        if any(f is None for f in case.first_frame_s):
            case.error = "a subscriber got no video frame within the timeout"
        await asyncio.sleep(warmup)
        proc = psutil.Process(server.pid)
        bench = psutil.Process()
        pin(server.pid, server_cpus)  # threads started since (decoders, encoders, executors)
        before = _sample(proc, bench, subs, video)
        await asyncio.sleep(window)
        after = _sample(proc, bench, subs, video)
        case.rss_mib = float(proc.memory_info().rss) / 2**20
        span = after.at - before.at
        case.window_s = span
        case.user_s_per_s = (after.server_user - before.server_user) / span
        case.system_s_per_s = (after.server_system - before.server_system) / span
        case.cpu_s_per_s = case.user_s_per_s + case.system_s_per_s
        case.bench_cpu_s_per_s = (after.bench_cpu - before.bench_cpu) / span
        case.video_fps = _rates(before.video_frames, after.video_frames, span)
        case.audio_fps = _rates(before.audio_frames, after.audio_frames, span)
        case.packets_per_s = _rates(before.packets, after.packets, span)
        case.video_kbps = [
            r * 8 / 1000 for r in _rates(before.video_octets, after.video_octets, span)
        ]
        case.published_fps = (after.published_video - before.published_video) / span
    finally:
        await _close_all(clients)
        server.stop()
    return case


# --- analysis and output --------------------------------------------------------------------


@dataclass
class Fit:
    server: str
    fixed: float
    per_stream: float
    ks: list[int]
    points: str
    """"all": every measured K; "kept_up": only the K where every subscriber got >= 29 fps."""


def kept_up(case: Case) -> bool:
    return bool(case.video_fps) and case.error is None and min(case.video_fps) >= TARGET_FPS


def fit(cases: list[Case], points: str) -> Fit | None:
    """Least squares CPU-s/s = fixed + per_stream * K over the chosen cases (>= 2 K values)."""
    usable = [c for c in cases if c.window_s > 0 and (points == "all" or kept_up(c))]
    if len({c.k for c in usable}) < 2:
        return None
    ks = np.array([c.k for c in usable], dtype=float)
    cpu = np.array([c.cpu_s_per_s for c in usable], dtype=float)
    design = np.column_stack([np.ones_like(ks), ks])
    (fixed, slope), *_ = np.linalg.lstsq(design, cpu, rcond=None)
    return Fit(usable[0].server, float(fixed), float(slope), [c.k for c in usable], points)


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


def _command() -> str:
    if __package__:
        return " ".join(["python", "-m", "bench.forwarding", *sys.argv[1:]])
    return " ".join(["python", *sys.argv])


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
    min_fps = min((min(c.video_fps) for c in sfu_cases if c.video_fps), default=None)
    packets = [p for c in sfu_cases for p in c.packets_per_s]
    mean_packets = sum(packets) / len(packets) if packets else None
    per_packet_us = None
    if sfu_fit is not None and mean_packets:
        per_packet_us = sfu_fit.per_stream / mean_packets * 1e6
    return {
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


def _cpus(text: str) -> set[int] | None:
    if text == "auto":
        return None
    return {int(part) for part in text.split(",") if part.strip()} or None


def pinning(args: argparse.Namespace) -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, bench CPUs). "auto": with 2+ CPUs, the server alone on CPU 0 and this
    process (publisher + subscribers) on CPU 1, so neither steals the other's core."""
    auto = (os.cpu_count() or 1) >= 2
    server = {0} if args.server_cpus == "auto" and auto else _cpus(args.server_cpus)
    bench = {1} if args.bench_cpus == "auto" and auto else _cpus(args.bench_cpus)
    return server, bench


async def run(args: argparse.Namespace) -> dict[str, Any]:
    ks = [int(k) for k in args.ks.split(",") if k.strip()]
    server_cpus, bench_cpus = pinning(args)
    if bench_cpus:
        os.sched_setaffinity(0, bench_cpus)
    _ = (camera(), microphone())  # build the clips before any timing
    cases: list[Case] = []
    servers = [s for s in ("sfu", "relay") if s in args.servers.split(",")]
    for name in servers:
        for k in ks:
            server: Server = (
                SfuServer(args.rtc_min, args.rtc_max) if name == "sfu" else RelayServer()
            )
            started = time.monotonic()
            try:
                case = await run_case(
                    server,
                    k,
                    window=args.window,
                    warmup=args.warmup,
                    server_cpus=server_cpus,
                    audio=not args.no_audio,
                )
            except (RuntimeError, TimeoutError, ConnectionError, aiohttp.ClientError) as exc:
                case = Case(server=name, k=k, error=repr(exc))
            cases.append(case)
            print(
                f"{name} K={k}: cpu {case.cpu_s_per_s:.4f} CPU-s/s, video fps "
                f"{[round(f, 1) for f in case.video_fps]}, {time.monotonic() - started:.0f} s"
                + (f", error: {case.error}" if case.error else ""),
                flush=True,
            )
    fits: dict[str, Fit] = {}
    for name in servers:
        for points in ("all", "kept_up"):
            found = fit([c for c in cases if c.server == name], points)
            if found is not None:
                fits[f"{name}/{points}"] = found
    clip = camera().clip
    clip_kbps = sum(len(u.data) for u in clip.units) * 8 / clip.duration_s / 1000
    return {
        "command": _command(),
        "machine": machine(),
        "config": {
            "ks": ks,
            "window_s": args.window,
            "warmup_s": args.warmup,
            "server_cpus": sorted(server_cpus) if server_cpus else None,
            "bench_cpus": sorted(bench_cpus) if bench_cpus else None,
            "video": VIDEO,
            "video_clip_kbps": clip_kbps,
            "stream": "one subscription = the publisher's VP8 video"
            + ("" if args.no_audio else " + Opus audio"),
        },
        "cases": [asdict(c) for c in cases],
        "fits": {key: asdict(f) for key, f in fits.items()},
        "verdict": verdict(cases, fits),
    }


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
    for key, f in result["fits"].items():
        lines.append(
            f"fit {key}: CPU-s/s = {f['fixed']:.4f} + {f['per_stream']:.4f} x K "
            f"(K = {', '.join(map(str, f['ks']))})"
        )
    v = result["verdict"]
    lines.append(
        f"per-stream ratio relay/sfu ({v['ratio_basis']}): "
        f"{_fmt(v['ratio_per_stream_relay_over_sfu'], 1)} "
        f"(target >= {TARGET_RATIO:g}: {'met' if v['ratio_met'] else 'NOT met'}); "
        f"with relay/all: {_fmt(v['ratio_with_relay_all_k'], 1)}"
    )
    lines.append(
        f"SFU min video fps per subscriber: {_fmt(v['sfu_min_video_fps'], 1)} "
        f"(target >= {TARGET_FPS:g}: {'met' if v['fps_met'] else 'NOT met'})"
    )
    if v["sfu_us_per_forwarded_packet"] is not None:
        lines.append(
            f"SFU per forwarded packet: {v['sfu_us_per_forwarded_packet']:.1f} us "
            f"({v['sfu_packets_per_stream_per_s']:.0f} packets/s per stream)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ks", default="1,2,4,8", help="subscriber counts (default 1,2,4,8)")
    parser.add_argument("--window", type=float, default=10.0, help="measured seconds per case")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the window")
    parser.add_argument("--quick", action="store_true", help="smoke run: K=1,2, 3 s windows")
    parser.add_argument("--servers", default="sfu,relay", help="which of sfu,relay to run")
    parser.add_argument(
        "--server-cpus", default="auto", help='CPUs for the server, e.g. "0"; "" = no pinning'
    )
    parser.add_argument(
        "--bench-cpus", default="auto", help='CPUs for this process, e.g. "1"; "" = no pinning'
    )
    parser.add_argument("--no-audio", action="store_true", help="publish video only")
    parser.add_argument("--rtc-min", type=int, default=40000)
    parser.add_argument("--rtc-max", type=int, default=40199)
    parser.add_argument("--max-seconds", type=float, default=600.0, help="abort after this long")
    parser.add_argument("--json", type=Path, help="write the full results here")
    args = parser.parse_args()
    if args.quick:
        args.ks, args.window, args.warmup = "1,2", 3.0, 1.0
    try:
        import uvloop  # as the SFU (and the baseline) do

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass

    async def bounded() -> dict[str, Any]:
        async with asyncio.timeout(args.max_seconds):
            return await run(args)

    result = asyncio.run(bounded())
    print(report(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

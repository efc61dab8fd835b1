"""Forwarding benchmark: the SFU against a stock aiortc ``MediaRelay`` server (bench/relay_server)
and, optionally, a minimal Pion (Go) SFU (bench/pion).

One publisher sends a pre-encoded 640x480 30 fps VP8 clip of about 1 Mbit/s plus Opus
(``PacedPacketTrack``: ``av.Packet`` objects, never encoded at run time); K subscribers receive
it through each server. The cases run round-robin: for each round, for each K, one case per
server (sfu K, relay or pion K, then the next K). Each server runs as its own process,
restarted for every case; psutil measures its CPU time (user + system, all threads) over a
steady-state window that starts after every subscriber has its first video frame and a
warm-up, and its RSS at the end of the window.

Subscriber 0 decodes (stock aiortc receiver: decoded fps and time to the first decoded frame);
the others count frames from RTP without decoding (one per marker bit), so the subscribers'
own CPU stays small. A "forwarded stream" is one subscription to the publisher's video + audio.
CPU = fixed + per_stream * K is fitted by least squares over K (over each K's median with
several rounds; bench/forwarding_report.py).

Run inside a loopback-only network namespace::

    unshare -n sh -c 'ip link set lo up && python -m bench.forwarding --json out.json'

With Pion: ``--servers sfu,pion`` (or ``sfu,relay,pion``) adds bench/pion/main.go, a Pion v3
SFU driven by the same stock aiortc clients through the same signalling subset as the relay.
It is built once per version of main.go (in pion-build/ under $BENCH_LOG_DIR, by default
/tmp/bench-logs) from Debian's packages, offline; without them Pion is skipped with the
command to install them (``apt-get install -y golang-go golang-github-pion-webrtc.v3-dev
golang-github-gorilla-websocket-dev``). K defaults to 1,4,8,15 then (a room holds 16
participants, so 15 subscribers at most); ``--rounds 3`` repeats every case and reports
medians, min-max and the ratios sfu/pion of the per-stream and fixed costs. Pion's ICE
uses ``--pion-rtc-min``..``--pion-rtc-max`` and GOMAXPROCS is the number of server CPUs::

    unshare -n sh -c 'ip link set lo up && python -m bench.forwarding --servers sfu,pion \\
        --rounds 3 --window 20 --json out.json'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.forwarding_report import Case, Fit, fit, report, verdict
from bench.harness import (
    LOOPBACK,
    VIDEO,
    camera,
    machine,
    microphone,
    pin,
)
from bench.servers import PionServer, PionUnavailable, RelayServer, Server, SfuServer, build_pion

if __package__ in (None, ""):  # run as `python bench/forwarding.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import psutil
from aiortc import MediaStreamTrack

from sfu.client.client import SfuClient
from sfu.client.clips import PacedPacketTrack
from sfu.client.remote import RemoteTrackInfo

FIRST_FRAME_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 15.0
CLOSE_TIMEOUT_S = 15.0
SERVERS = ("sfu", "sfu-1port", "relay", "pion")
CASE_BUDGET_S = 60.0
"""--max-seconds by default: this much per case on top of the windows and warm-ups (and at
least 600 s)."""


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


# --- the run --------------------------------------------------------------------------------


def _command() -> str:
    if __package__:
        return " ".join(["python", "-m", "bench.forwarding", *sys.argv[1:]])
    return " ".join(["python", *sys.argv])


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


def make_server(name: str, args: argparse.Namespace, server_cpus: set[int] | None) -> Server:
    if name == "sfu":
        return SfuServer(args.rtc_min, args.rtc_max)
    if name == "sfu-1port":
        return SfuServer(args.rtc_min, args.rtc_max, udp_port=args.rtc_min)
    if name == "pion":
        return PionServer(args.pion_rtc_min, args.pion_rtc_max, server_cpus)
    return RelayServer()


def servers_to_run(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The servers asked for, in SERVERS order, and those skipped (Pion unbuildable) → why."""
    names = [s for s in SERVERS if s in args.servers.split(",")]
    skipped: dict[str, str] = {}
    if "pion" in names:
        try:
            build_pion()
        except PionUnavailable as exc:
            skipped["pion"] = str(exc)
            names.remove("pion")
            print(f"skipping pion: {exc}", flush=True)
    return names, skipped


async def run(args: argparse.Namespace) -> dict[str, Any]:
    ks = [int(k) for k in args.ks.split(",") if k.strip()]
    server_cpus, bench_cpus = pinning(args)
    if bench_cpus:
        os.sched_setaffinity(0, bench_cpus)
    _ = (camera(), microphone())  # build the clips before any timing
    servers, skipped = servers_to_run(args)
    cases: list[Case] = []
    for round_index in range(args.rounds):
        for k in ks:
            for name in servers:
                started = time.monotonic()
                try:
                    server = make_server(name, args, server_cpus)
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
                case.round = round_index
                cases.append(case)
                print(
                    f"round {round_index + 1}/{args.rounds} {name} K={k}: "
                    f"cpu {case.cpu_s_per_s:.4f} CPU-s/s, video fps "
                    f"{[round(f, 1) for f in case.video_fps]}, "
                    f"{time.monotonic() - started:.0f} s"
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
            "rounds": args.rounds,
            "servers": servers,
            "skipped": skipped,
            "window_s": args.window,
            "warmup_s": args.warmup,
            "server_cpus": sorted(server_cpus) if server_cpus else None,
            "bench_cpus": sorted(bench_cpus) if bench_cpus else None,
            "pion_gomaxprocs": len(server_cpus) if server_cpus and "pion" in servers else None,
            "video": VIDEO,
            "video_clip_kbps": clip_kbps,
            "stream": "one subscription = the publisher's VP8 video"
            + ("" if args.no_audio else " + Opus audio"),
        },
        "cases": [asdict(c) for c in cases],
        "fits": {key: asdict(f) for key, f in fits.items()},
        "verdict": verdict(cases, fits),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ks", help="subscriber counts (default 1,2,4,8; 1,4,8,15 when pion is among --servers)"
    )
    parser.add_argument("--window", type=float, default=10.0, help="measured seconds per case")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the window")
    parser.add_argument("--quick", action="store_true", help="smoke run: K=1,2, 3 s windows")
    parser.add_argument(
        "--servers", default="sfu,relay", help="which of sfu,relay,pion to run (default sfu,relay)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="run every case this many times, round-robin"
    )
    parser.add_argument(
        "--server-cpus", default="auto", help='CPUs for the server, e.g. "0"; "" = no pinning'
    )
    parser.add_argument(
        "--bench-cpus", default="auto", help='CPUs for this process, e.g. "1"; "" = no pinning'
    )
    parser.add_argument("--no-audio", action="store_true", help="publish video only")
    parser.add_argument("--rtc-min", type=int, default=40000)
    parser.add_argument("--rtc-max", type=int, default=40199)
    parser.add_argument("--pion-rtc-min", type=int, default=40200)
    parser.add_argument("--pion-rtc-max", type=int, default=40399)
    parser.add_argument(
        "--max-seconds",
        type=float,
        help=f"abort after this long (default: {CASE_BUDGET_S:g} s per case plus the windows "
        "and warm-ups, at least 600 s)",
    )
    parser.add_argument("--json", type=Path, help="write the full results here")
    args = parser.parse_args()
    unknown = set(args.servers.split(",")) - set(SERVERS)
    if unknown or args.rounds < 1:
        parser.error(f"--servers takes {','.join(SERVERS)}; --rounds >= 1")
    if args.quick:
        args.ks, args.window, args.warmup = "1,2", 3.0, 1.0
    if args.ks is None:
        args.ks = "1,4,8,15" if "pion" in args.servers.split(",") else "1,2,4,8"
    if args.max_seconds is None:
        n = args.rounds * len(args.ks.split(",")) * len(args.servers.split(","))
        args.max_seconds = max(600.0, n * (CASE_BUDGET_S + args.window + args.warmup))
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

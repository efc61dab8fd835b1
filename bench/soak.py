"""Soak: one SFU process under `sfu loadtest --churn` for a long time, its footprint over time.

The SFU (`sfu serve`, SFU_DEBUG_ENDPOINTS on) is pinned to CPU 0, the load tester to CPU 1.
The load tester keeps `--rooms` 1:1 rooms (VP8 + Opus each way, the direct publisher) turning
over: each lives `--lifetime` seconds, then everyone leaves, the room is deleted and a new one
takes its slot (`--record-every`: the first and every Nth room of a slot recorded). Every
`--every` seconds the bench reads from outside the SFU: RSS (/proc/PID/statm), CPU time
(/proc/PID/stat), open fds, threads, and from GET /debug/memory (without a collection, what a
running process holds) its asyncio tasks; rooms live from /metrics.

Flat after warm-up is judged on the second half of the run: the least-squares slope of RSS,
tasks and fds against time, per hour, beside their spread. A chart (`--chart`) draws RSS, CPU
per live room, tasks, fds and threads over time.

Run:
    unshare -n sh -c 'ip link set lo up && python -m bench.soak --minutes 60 \
        --json bench/results/soak.json --chart docs/images/soak.png'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import LOG_DIR, REPO, machine, pin
from sfu.testing.process import TEST_SECRET, SfuProcess, make_sfu

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_sample(pid: int) -> dict[str, float]:
    with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
        rss = int(statm.read().split()[1]) * PAGE
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
    return {
        "rss_mib": rss / 2**20,
        "cpu_s": cpu,
        "fds": float(len(os.listdir(f"/proc/{pid}/fd"))),
        "threads": float(len(os.listdir(f"/proc/{pid}/task"))),
    }


async def sfu_sample(http: aiohttp.ClientSession, sfu: SfuProcess) -> dict[str, float]:
    found: dict[str, float] = {}
    async with http.get(f"{sfu.url}/debug/memory?gc=0", headers=sfu.service_headers()) as response:
        found["tasks"] = float((await response.json())["tasks"])
    async with http.get(f"{sfu.url}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith("sfu_rooms "):
                found["rooms"] = float(line.split()[-1])
    return found


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 3:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 3600.0


def flatness(timeline: list[dict[str, float]], key: str) -> dict[str, Any]:
    half = timeline[len(timeline) // 2 :]
    points = [(p["t_s"], p[key]) for p in half if key in p]
    values = [v for _, v in points]
    return {
        "second_half_slope_per_hour": slope_per_hour(points),
        "second_half_min": min(values) if values else None,
        "second_half_max": max(values) if values else None,
        "first": timeline[0].get(key) if timeline else None,
        "last": timeline[-1].get(key) if timeline else None,
    }


def write_chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = result["timeline"]
    minutes = [p["t_s"] / 60 for p in timeline]
    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    panels = [
        ("rss_mib", "SFU RSS (MiB)"),
        ("cpu_per_room", "SFU CPU-s/s per live room"),
        ("tasks", "asyncio tasks"),
        ("fds", "open fds / threads"),
    ]
    for ax, (key, label) in zip(axes, panels, strict=True):
        xs = [m for m, p in zip(minutes, timeline, strict=True) if p.get(key) is not None]
        ys = [p[key] for p in timeline if p.get(key) is not None]
        ax.plot(xs, ys, marker=".", linewidth=1)
        if key == "fds":
            ax.plot(minutes, [p["threads"] for p in timeline], marker=".", linewidth=1)
            ax.legend(["fds", "threads"], loc="lower right")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("minutes")
    options = result["options"]
    fig.suptitle(
        f"soak: {options['rooms']} 1:1 rooms turning over every {options['lifetime_s']:g} s, "
        f"{result['minutes']:.0f} min"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    sfu = make_sfu(
        41000,
        41200,
        "bench-soak",
        SFU_LOG_LEVEL="WARNING",
        SFU_DEBUG_ENDPOINTS="true",
        SFU_WS_PER_IP="1000",
        SFU_MAX_ROOMS="200",
    )
    sfu.start()
    pin(sfu.pid, {0})
    duration_s = args.minutes * 60.0
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    tester_log = (LOG_DIR / "soak-loadtest.log").open("wb")
    tester = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sfu",
            "loadtest",
            "--url",
            sfu.url,
            "--secret",
            TEST_SECRET,
            "--rooms",
            str(args.rooms),
            "--duration",
            str(duration_s),
            "--ramp",
            str(min(30.0, duration_s / 4)),
            "--churn",
            str(args.lifetime),
            "--churn-record-every",
            str(args.record_every),
            "--decode",
            "none",
            "--no-progress",
            "--json",
            str(LOG_DIR / "soak-loadtest.json"),
        ],
        cwd=REPO,
        stdout=tester_log,
        stderr=subprocess.STDOUT,
    )
    pin(tester.pid, {1})
    timeline: list[dict[str, float]] = []
    t0 = time.monotonic()
    previous: dict[str, float] | None = None
    try:
        async with aiohttp.ClientSession() as http:
            while tester.poll() is None and time.monotonic() - t0 < duration_s + 120:
                await asyncio.sleep(args.every)
                point: dict[str, float] = {"t_s": time.monotonic() - t0}
                point.update(proc_sample(sfu.pid))
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                    point.update(await sfu_sample(http, sfu))
                if previous is not None and point["t_s"] > previous["t_s"]:
                    cores = (point["cpu_s"] - previous["cpu_s"]) / (point["t_s"] - previous["t_s"])
                    point["cpu_cores"] = cores
                    if point.get("rooms"):
                        point["cpu_per_room"] = cores / point["rooms"]
                previous = point
                timeline.append(point)
                print(json.dumps({k: round(v, 4) for k, v in point.items()}), flush=True)
    finally:
        if tester.poll() is None:
            tester.terminate()
        try:
            tester.wait(timeout=120)
        except subprocess.TimeoutExpired:
            tester.kill()
        tester_log.close()
        sfu.stop()
    loadtest: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        loadtest = json.loads((LOG_DIR / "soak-loadtest.json").read_text())
    result = {
        "command": " ".join(["python -m bench.soak", *sys.argv[1:]]),
        "machine": machine(),
        "options": {
            "rooms": args.rooms,
            "lifetime_s": args.lifetime,
            "record_every": args.record_every,
            "every_s": args.every,
        },
        "minutes": (timeline[-1]["t_s"] / 60) if timeline else 0.0,
        "loadtest": {
            "churn": loadtest.get("churn"),
            "joins": loadtest.get("joins", {}).get("failed_by_code"),
            "video_fps": loadtest.get("video", {}).get("fps"),
            "rooms_left_behind": loadtest.get("rooms", {}).get("left_behind"),
        },
        "timeline": timeline,
    }
    summarise(result)
    return result


def summarise(result: dict[str, Any]) -> None:
    """Flatness over the samples taken while every room slot was live (not the ramp-up nor
    the teardown at the end, when rooms close and the counts fall)."""
    rooms = result["options"]["rooms"]
    loaded = [p for p in result["timeline"] if p.get("rooms") == rooms]
    result["flat"] = {key: flatness(loaded, key) for key in ("rss_mib", "tasks", "fds", "threads")}
    result["cpu_per_room"] = flatness(
        [p for p in loaded if p.get("cpu_per_room") is not None], "cpu_per_room"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rooms", type=int, default=6, help="room slots turning over")
    parser.add_argument("--lifetime", type=float, default=60.0, help="seconds each room lives")
    parser.add_argument("--record-every", type=int, default=3, help="record every Nth room")
    parser.add_argument("--every", type=float, default=20.0, help="seconds between samples")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--chart", type=Path)
    parser.add_argument("--summarise", type=Path, help="redo the summary and chart of a JSON")
    args = parser.parse_args()
    if args.summarise is not None:
        result = json.loads(args.summarise.read_text(encoding="utf-8"))
        summarise(result)
    else:
        result = asyncio.run(soak(args))
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    if args.chart:
        write_chart(result, args.chart)
    summary = {k: result[k] for k in ("minutes", "flat", "cpu_per_room", "loadtest")}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Capacity benchmark: how many 1:1 mentoring rooms one core of SFU carries, with `sfu loadtest`.

For every room count N of `--rooms`, a fresh SFU process (``python -m sfu serve`` via
sfu/testing/process.make_sfu, logging at WARNING) is pinned to `--sfu-cpus` and `sfu loadtest`
(the tool under test, as a subprocess) to `--client-cpus`; the load tester creates N rooms whose
mentor and mentee each publish 640x480 30 fps VP8 at ~1 Mbit/s plus Opus and receive the other,
ramps them in, holds them for `--duration` seconds and writes its JSON result. From those:

- CPU-s/s per room: least squares SFU CPU (cores, steady window, from /metrics) = fixed +
  per_room * N over the counts that kept up (every subscription ≥ 28 fps, loss ≤ 1 %, no
  failed join); RSS per room the same way from the SFU's RSS at the end of the run.
- The largest N held for `--hold-duration` seconds (60 by default) with loss ≤ 1 % and every
  subscription ≥ 28 fps: `--hold` lists the counts to try, in increasing order, stopping at the
  first that fails.

`--sfu-src DIR` runs the SFU from another checkout (PYTHONPATH), for before/after figures with
the same load tester. Run inside a loopback-only network namespace::

    unshare -n sh -c 'ip link set lo up && python -m bench.capacity --json out.json'
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/capacity.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench.harness import machine, pin
from sfu.testing.process import TEST_SECRET, SfuProcess, make_sfu

REPO = Path(__file__).resolve().parent.parent
MIN_FPS = 28.0
MAX_LOSS = 0.01
PORT_MIN, PORT_MAX = 50000, 50200  # the production range: 201 ports


@dataclass
class Run:
    rooms: int
    duration_s: float
    sfu_cpu_cores: float = 0.0
    sfu_cpu_per_room: float = 0.0
    sfu_rss_mib: float = 0.0
    sfu_recorder_cores: float | None = None  # --concurrent: the "sfu-recorder" OS thread
    client_cpu_cores: float = 0.0
    client_cheaper_per_stream: bool | None = None
    joins_failed: int = 0
    failed_by_code: dict[str, int] | None = None
    video_fps_min: float | None = None
    video_fps_mean: float | None = None
    loss_ratio: float | None = None
    first_frame_p95_s: float | None = None
    join_p95_s: float | None = None
    error: str | None = None

    @property
    def kept_up(self) -> bool:
        return (
            self.error is None
            and self.joins_failed == 0
            and self.video_fps_min is not None
            and self.video_fps_min >= MIN_FPS
            and self.loss_ratio is not None
            and self.loss_ratio <= MAX_LOSS
        )


def port_range(args: argparse.Namespace) -> tuple[int, int]:
    """`--ports MIN-MAX` (default the production range)."""
    text = getattr(args, "ports", None)
    if not text:
        return PORT_MIN, PORT_MAX
    low, _, high = str(text).partition("-")
    return int(low), int(high)


def _cpus(text: str) -> set[int]:
    return {int(part) for part in text.split(",") if part.strip()}


@dataclass(frozen=True)
class Variant:
    """An SFU to measure: a checkout (None: this one) and its event loop."""

    name: str
    src: str | None = None
    event_loop: str | None = None  # "asyncio" to turn uvloop off
    record: bool = False  # rooms created with record: true

    @classmethod
    def parse(cls, text: str) -> Variant:
        """`NAME=PATH[@asyncio][+record]`, PATH `.` for this checkout."""
        name, _, rest = text.partition("=")
        rest, plus, _ = rest.partition("+record")
        src, _, loop = rest.partition("@")
        return cls(name, None if src in ("", ".") else src, loop or None, bool(plus))


@dataclass
class Launch:
    """An SFU and its load tester, running (see `launch`, `finish`)."""

    run: Run
    sfu: SfuProcess
    loadtest: subprocess.Popen[str] | None
    tmp: tempfile.TemporaryDirectory[str]
    timeout: float

    @property
    def out(self) -> Path:
        return Path(self.tmp.name) / "result.json"


def launch(
    args: argparse.Namespace,
    rooms: int,
    duration: float,
    variant: Variant | None = None,
    ports: tuple[int, int] | None = None,
) -> Launch:
    """Start a fresh SFU pinned to --sfu-cpus and `sfu loadtest` against it (not waited for)."""
    run = Run(rooms=rooms, duration_s=duration)
    src = variant.src if variant is not None else args.sfu_src
    event_loop = variant.event_loop if variant is not None else None
    overrides = {
        "SFU_LOG_LEVEL": "WARNING",
        "SFU_DRAIN_TIMEOUT_S": "0",
        "SFU_WS_PER_IP": str(10 * rooms + 20),
        "SFU_MAX_ROOMS": str(rooms + 10),
        "SFU_REST_RATE_PER_IP": "10000",
        "SFU_REST_BURST_PER_IP": "10000",
    }
    if ports is None:
        ports = port_range(args)
    if getattr(args, "udp_port", None):
        overrides["SFU_RTC_UDP_PORT"] = str(args.udp_port)
    if src:
        overrides["PYTHONPATH"] = str(Path(src).resolve())
    if args.no_uvloop or event_loop == "asyncio":
        overrides["SFU_EVENT_LOOP"] = "asyncio"
    name = f"capacity-{rooms}" + (f"-{variant.name}" if variant is not None else "")
    sfu = make_sfu(ports[0], ports[1], name, **overrides)
    if src:
        sfu.cwd = Path(src).resolve()  # `python -m sfu` imports from its working directory
    sfu.start(timeout=30)
    tmp = tempfile.TemporaryDirectory(prefix="capacity-")
    started = Launch(run, sfu, None, tmp, duration + rooms * args.ramp_per_room + 120)
    try:
        pin(sfu.pid, _cpus(args.sfu_cpus))
        command = [
            "taskset",
            "-c",
            args.client_cpus,
            sys.executable,
            "-m",
            "sfu",
            "loadtest",
            "--url",
            sfu.url,
            "--secret",
            TEST_SECRET,
            "--rooms",
            str(rooms),
            "--ramp",
            f"{rooms * args.ramp_per_room:.1f}",
            "--duration",
            f"{duration:.0f}",
            "--json",
            str(started.out),
            "--no-progress",
            *(["--record"] if variant is not None and variant.record else []),
            *args.loadtest_arg,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SFU_")}
        env["PYTHONPATH"] = str(REPO)
        started.loadtest = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    except BaseException:
        finish(started)
        raise
    return started


def finish(started: Launch) -> Run:
    """Wait for the load tester, stop the SFU, and read the load tester's result."""
    run = started.run
    try:
        proc = started.loadtest
        if proc is not None:
            try:
                _, stderr = proc.communicate(timeout=started.timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, stderr = proc.communicate()
            if not started.out.exists():
                run.error = f"loadtest exited {proc.returncode}: {(stderr or '')[-400:]}"
            else:
                _fill(run, json.loads(started.out.read_text()))
    finally:
        started.sfu.stop()
        started.tmp.cleanup()
    return run


def run_once(
    args: argparse.Namespace, rooms: int, duration: float, variant: Variant | None = None
) -> Run:
    return finish(launch(args, rooms, duration, variant))


def _fill(run: Run, result: dict[str, Any]) -> None:
    sfu, client = result["sfu"], result["client"]
    run.sfu_cpu_cores = float(sfu["cpu_cores_steady_mean"] or 0.0)
    run.sfu_cpu_per_room = run.sfu_cpu_cores / run.rooms
    run.sfu_rss_mib = float(sfu["rss_mib_last"] or 0.0)
    run.client_cpu_cores = float(client["cpu_cores_steady_mean"] or 0.0)
    run.client_cheaper_per_stream = client.get("cheaper_per_stream_than_sfu")
    run.joins_failed = int(result["joins"]["failed"])
    run.failed_by_code = result["joins"].get("failed_by_code") or {}
    fps = result["video"]["fps"]
    run.video_fps_min = fps.get("min")
    run.video_fps_mean = fps.get("mean")
    run.loss_ratio = result["loss"].get("loss_ratio_before_retransmission")
    run.first_frame_p95_s = result["first_frame_s"].get("p95")
    run.join_p95_s = result["joins"]["join_s"].get("p95")
    if result.get("errors"):
        run.error = "; ".join(str(e) for e in result["errors"])[:400]


def fit(runs: list[Run], attr: str) -> dict[str, Any] | None:
    usable = [r for r in runs if r.kept_up]
    if len({r.rooms for r in usable}) < 2:
        return None
    n = np.array([r.rooms for r in usable], dtype=float)
    y = np.array([getattr(r, attr) for r in usable], dtype=float)
    (fixed, slope), *_ = np.linalg.lstsq(np.column_stack([np.ones_like(n), n]), y, rcond=None)
    return {"fixed": float(fixed), "per_room": float(slope), "rooms": [r.rooms for r in usable]}


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(runs: list[Run]) -> str:
    rows = [
        "| rooms | s | SFU cores | per room | RSS MiB | client cores | fps min / mean "
        "| loss % | first frame p95 s | failed joins | kept up |",
        "|" + "---|" * 11,
    ]
    for r in runs:
        loss = None if r.loss_ratio is None else r.loss_ratio * 100
        fps = f"{_f(r.video_fps_min, 1)} / {_f(r.video_fps_mean, 1)}"
        rows.append(
            f"| {r.rooms} | {r.duration_s:.0f} | {r.sfu_cpu_cores:.3f} | {r.sfu_cpu_per_room:.4f} "
            f"| {r.sfu_rss_mib:.0f} | {r.client_cpu_cores:.3f} | {fps} | {_f(loss, 2)} "
            f"| {_f(r.first_frame_p95_s, 2)} | {r.joins_failed} {r.failed_by_code or ''} "
            f"| {'yes' if r.kept_up else 'no: ' + (r.error or 'fps/loss/joins')} |"
        )
    return "\n".join(rows)


def build_parser(description: str) -> argparse.ArgumentParser:
    """The options of one capacity run; bench/capacity_ab adds its A/B options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rooms", default="2,6,10,14", help="room counts for the fit")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--hold", default="", help="room counts to hold, increasing")
    parser.add_argument("--hold-duration", type=float, default=60.0)
    parser.add_argument("--ramp-per-room", type=float, default=0.5, help="seconds per room")
    parser.add_argument("--sfu-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    parser.add_argument("--sfu-src", help="run the SFU from this checkout (PYTHONPATH)")
    parser.add_argument("--no-uvloop", action="store_true", help="SFU_EVENT_LOOP=asyncio")
    parser.add_argument(
        "--loadtest-arg", action="append", default=[], help="extra argument for sfu loadtest"
    )
    parser.add_argument("--ports", help="the SFU's media port range MIN-MAX (default 50000-50200)")
    parser.add_argument("--udp-port", type=int, help="all media on one port (SFU_RTC_UDP_PORT)")
    parser.add_argument("--json", type=Path)
    return parser


def main() -> None:
    args = build_parser(__doc__.split("\n")[0]).parse_args()
    began = time.time()
    runs: list[Run] = []
    for rooms in [int(x) for x in args.rooms.split(",") if x]:
        run = run_once(args, rooms, args.duration)
        print(f"rooms={rooms}: {asdict(run)}", flush=True)
        runs.append(run)
    holds: list[Run] = []
    for rooms in [int(x) for x in args.hold.split(",") if x]:
        run = run_once(args, rooms, args.hold_duration)
        print(f"hold rooms={rooms}: {asdict(run)}", flush=True)
        holds.append(run)
        if not run.kept_up:
            break
    held = max((r.rooms for r in holds if r.kept_up), default=None)
    result: dict[str, Any] = {
        "command": " ".join(["python", "-m", "bench.capacity", *sys.argv[1:]]),
        "machine": machine(),
        "sfu_src": args.sfu_src or str(REPO),
        "runs": [asdict(r) | {"kept_up": r.kept_up} for r in runs],
        "holds": [asdict(r) | {"kept_up": r.kept_up} for r in holds],
        "cpu_fit": fit(runs, "sfu_cpu_cores"),
        "rss_fit": fit(runs, "sfu_rss_mib"),
        "largest_held": held,
        "ports": "-".join(map(str, port_range(args))),
        "udp_port": args.udp_port,
        "port_range_rooms": (port_range(args)[1] - port_range(args)[0] + 1) // 4,
        "elapsed_s": round(time.time() - began, 1),
    }
    text = table(runs + holds)
    cpu = result["cpu_fit"]
    if cpu:
        text += (
            f"\n\nSFU CPU = {cpu['fixed']:.4f} + {cpu['per_room']:.4f} x rooms (cores; "
            f"fit over {cpu['rooms']}) -> {1 / cpu['per_room']:.0f} rooms per core"
        )
    rss = result["rss_fit"]
    if rss:
        text += f"\nSFU RSS = {rss['fixed']:.0f} MiB + {rss['per_room']:.2f} MiB x rooms"
    text += f"\nlargest held {args.hold_duration:.0f} s: {held}"
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        args.json.with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()

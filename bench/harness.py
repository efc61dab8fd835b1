"""What every bench shares: the machine and revision measured, CPU pinning, the loopback ICE
configuration and the paced camera and microphone clips."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psutil

from sfu.client.clips import PacedPacketTrack
from sfu.ice.connection import IceConfig

LOOPBACK = IceConfig(addresses=("127.0.0.1",))


REPO = Path(__file__).resolve().parent.parent


VIDEO = {"width": 640, "height": 480, "fps": 30, "kbps": 1000, "seconds": 4, "gop_frames": 60}


AUDIO_CLIP_SECONDS = 4


def camera() -> PacedPacketTrack:
    """The publisher's pre-encoded VP8 track (VIDEO parameters; the clip is cached on disk)."""
    return PacedPacketTrack.from_codec(
        "vp8",
        width=VIDEO["width"],
        height=VIDEO["height"],
        fps=VIDEO["fps"],
        kbps=VIDEO["kbps"],
        seconds=VIDEO["seconds"],
        gop_frames=VIDEO["gop_frames"],
    )


def microphone() -> PacedPacketTrack:
    return PacedPacketTrack.from_codec("opus", seconds=AUDIO_CLIP_SECONDS)


def pin(pid: int, cpus: set[int] | None) -> None:
    """Set the CPU affinity of every thread of a process (threads created later inherit)."""
    if not cpus:
        return
    for thread in psutil.Process(pid).threads():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(thread.id), cpus)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "sfu_revision": revision(),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def revision() -> str:
    """The commit of the SFU measured, "+dirty" when sfu/ has uncommitted changes (read-only)."""
    try:
        head = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, timeout=10
            )
            .stdout.decode()
            .strip()
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "sfu"], cwd=REPO, capture_output=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


LOG_DIR = Path(os.environ.get("BENCH_LOG_DIR", "/tmp/bench-logs"))

"""Recording's cost: SFU CPU for a 1:1 room (each side publishing 640x480 30 fps VP8 at
~1 Mbit/s plus Opus, each receiving the other) with and without `record: true`.

Run (in a loopback-only namespace, like every benchmark here):
    unshare -n sh -c 'ip link set lo up && \
        python -m bench.recording --json bench/results/recording.json'

The SFU is pinned to CPU 0 and this process to CPU 1; the two configurations alternate
`--rounds` times (fresh SFU each time) so slow drift of the machine hits both equally. (Runs
one after another still differ by about 15 % here; `bench.capacity_ab --concurrent` measures
both at once, which docs/benchmarks.md uses as the reference.)

`--offline` measures only the recorder's own work, without an SFU: the same clips' RTP
packets, batched as the drain hands them over, through FrameAssembler and MatroskaWriter in
this process, as CPU-s/s for a 1:1 room (two cameras and two microphones).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.harness import LOOPBACK, camera, microphone, pin
from sfu.client.client import SfuClient
from sfu.client.clips import Clip
from sfu.recording.assembler import FrameAssembler
from sfu.recording.drain import FLUSH_INTERVAL_S
from sfu.recording.writer import MatroskaWriter
from sfu.testing.packets import packetize
from sfu.testing.process import make_sfu


async def one_run(record: bool, window: float, warmup: float, index: int) -> dict[str, Any]:
    server = make_sfu(
        47500,
        47520,
        name=f"bench-rec-{index}",
        SFU_LOG_LEVEL="WARNING",
        SFU_DRAIN_TIMEOUT_S="0",
    )
    server.start()
    clients: list[SfuClient] = []
    try:
        pin(server.pid, {0})
        async with aiohttp.ClientSession() as http:
            response = await http.post(
                server.url + "/rooms",
                json={"room_id": "bench", "record": record},
                headers=server.service_headers(),
            )
            assert response.status == 201, await response.text()
        for role in ("mentor", "mentee"):
            client = await SfuClient.connect(
                server.ws_url, server.token("bench", role, role), ice=LOOPBACK, decode=False
            )
            clients.append(client)
            await client.publish({camera(): "camera", microphone(): "microphone"})
        for client in clients:
            await client.wait_frames(lambda i: i.kind == "video", 30, timeout=30)
        pin(server.pid, {0})  # threads started since (the recorders') too
        await asyncio.sleep(warmup)
        process = psutil.Process(server.pid)
        before = process.cpu_times()
        frames_before = [_video(c) for c in clients]
        started = time.monotonic()
        await asyncio.sleep(window)
        span = time.monotonic() - started
        after = process.cpu_times()
        fps = [(_video(c) - f) / span for c, f in zip(clients, frames_before, strict=True)]
        cpu = (after.user - before.user + after.system - before.system) / span
        recorded_bytes = sum(
            p.stat().st_size for p in Path(server.env["SFU_DATA_DIR"]).rglob("*.mkv")
        )
        return {"record": record, "cpu_s_per_s": cpu, "fps": fps, "recorded_bytes": recorded_bytes}
    finally:
        for client in clients:
            await client.close()
        await asyncio.to_thread(server.stop)


def _video(client: SfuClient) -> int:
    return sum(i.frames for i in client.remote_tracks.values() if i.kind == "video")


def offline(repeats: int, rounds: int) -> dict[str, Any]:
    """The recorder's work for one 1:1 room, per second of media, in this process."""
    media = {"vp8": camera().clip, "opus": microphone().clip}
    per_room: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-recording-") as tmp:
        for index in range(rounds):
            cost = 0.0
            for codec, clip in media.items():
                items = _long_stream(clip, repeats)
                seconds = repeats * len(clip.units) * clip.frame_ticks / clip.clock_rate
                assembler = FrameAssembler(codec)
                writer = MatroskaWriter(Path(tmp) / f"{codec}-{index}.mkv", codec)
                batch = max(1, round(len(items) / seconds * FLUSH_INTERVAL_S))
                started = time.process_time()
                for start in range(0, len(items), batch):
                    for frame in assembler.feed(items[start : start + batch]):
                        writer.write(frame)
                cost += (time.process_time() - started) / seconds
                writer.close()
            per_room.append(2 * cost)  # two publishers
            print(f"offline round {index}: {per_room[-1]:.5f} CPU-s/s per room", flush=True)
    return {"offline_cpu_s_per_s_per_room": per_room, "median": statistics.median(per_room)}


def _long_stream(clip: Clip, repeats: int) -> list[tuple[int, int, bool, bytes, float]]:
    """The clip's packets `repeats` times in a row, sequence numbers and timestamps going on."""
    packets = packetize(clip, seq0=0, ts0=0)
    span = len(clip.units) * clip.frame_ticks
    return [
        (
            (lap * len(packets) + i) & 0xFFFF,
            (p.timestamp + lap * span) & 0xFFFFFFFF,
            bool(p.marker),
            p.payload,
            0.0,
        )
        for lap in range(repeats)
        for i, p in enumerate(packets)
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--offline", action="store_true", help="the recorder's work only")
    parser.add_argument("--repeats", type=int, default=10, help="--offline: clip repeats")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.offline:
        result = offline(args.repeats, args.rounds)
        print(f"median {result['median']:.5f} CPU-s/s per room")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return
    os.sched_setaffinity(0, {1} if (os.cpu_count() or 1) > 1 else {0})
    runs: list[dict[str, Any]] = []
    deadline = time.monotonic() + 600
    for _ in range(args.rounds):
        for record in (False, True):
            if time.monotonic() > deadline:
                break
            run = await one_run(record, args.window, args.warmup, len(runs))
            runs.append(run)
            print(
                f"record={record!s:5} cpu {run['cpu_s_per_s']:.4f} CPU-s/s "
                f"fps {[round(f, 1) for f in run['fps']]} recorded {run['recorded_bytes']} B",
                flush=True,
            )
    plain = statistics.mean(r["cpu_s_per_s"] for r in runs if not r["record"])
    recorded = statistics.mean(r["cpu_s_per_s"] for r in runs if r["record"])
    overhead = (recorded - plain) / plain * 100
    print(f"unrecorded {plain:.4f} CPU-s/s, recorded {recorded:.4f} CPU-s/s: +{overhead:.1f} %")
    print(f"target <= +10 %: {'met' if overhead <= 10 else 'NOT met'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"runs": runs, "plain": plain, "recorded": recorded, "overhead_pct": overhead},
                indent=2,
            )
        )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

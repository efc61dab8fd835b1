"""A/B mode of the capacity benchmark (`python -m bench.capacity_ab --variant ... [--concurrent]`,
with every option of `bench/capacity` too).

Every variant (a checkout, its event loop, recorded rooms or not) runs at every room count of
`--rooms`, `--rounds` times, round-robin so the machine's drift hits them alike. With
`--concurrent` the variants' SFUs run at the same time, each with its own load tester and port
range, and their CPU is read over one common window: a paired reading, which two variants'
runs one after the other on this machine are not. With two variants the summary gives what
the second adds per room over the first, pair by pair.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.capacity import (
    PORT_MAX,
    PORT_MIN,
    Launch,
    Run,
    Variant,
    build_parser,
    finish,
    fit,
    launch,
    run_once,
)
from bench.harness import machine
from sfu.recording.recorder import RECORDER_THREAD


def compare(variants: list[Variant], args: argparse.Namespace) -> None:
    """Round-robin runs of every variant at every room count, so the machine's drift hits
    them alike; a fit per variant over all its runs, and the median CPU per room count."""
    began = time.time()
    counts = [int(x) for x in args.rooms.split(",") if x]
    runs: dict[str, list[Run]] = {v.name: [] for v in variants}
    for round_index in range(args.rounds):
        for rooms in counts:
            if args.concurrent:
                shift = round_index % len(variants)
                order = variants[shift:] + variants[:shift]
                done: Iterable[tuple[Variant, Run]] = zip(
                    order, run_together(args, rooms, order), strict=True
                )
                window = " (common window)"
            else:
                # a generator: each run is printed as soon as it is over
                done = ((v, run_once(args, rooms, args.duration, v)) for v in variants)
                window = ""
            for variant, run in done:
                runs[variant.name].append(run)
                print(
                    f"round {round_index} {variant.name} rooms={rooms}: "
                    f"{run.sfu_cpu_cores:.3f} cores{window}, kept up {run.kept_up}",
                    flush=True,
                )
    lines = ["| variant | " + " | ".join(f"{n} rooms (median cores)" for n in counts)]
    lines[0] += " | per room (fit) | fixed (fit) |"
    lines.append("|" + "---|" * (len(counts) + 3))
    result: dict[str, Any] = {}
    for variant in variants:
        mine = runs[variant.name]
        medians = [
            float(np.median([r.sfu_cpu_cores for r in mine if r.rooms == n])) for n in counts
        ]
        cpu = fit(mine, "sfu_cpu_cores")
        result[variant.name] = {
            "variant": asdict(variant),
            "runs": [asdict(r) | {"kept_up": r.kept_up} for r in mine],
            "median_cores": dict(zip(counts, medians, strict=True)),
            "cpu_fit": cpu,
        }
        cells = " | ".join(f"{m:.3f}" for m in medians)
        slope = f"{cpu['per_room']:.4f}" if cpu else "-"
        fixed = f"{cpu['fixed']:.4f}" if cpu else "-"
        lines.append(f"| {variant.name} | {cells} | {slope} | {fixed} |")
    text = "\n".join(lines)
    if args.concurrent and len(variants) == 2:
        paired = paired_overhead(
            runs[variants[0].name],
            runs[variants[1].name],
            (variants[0].name, variants[1].name),
        )
        result["paired"] = paired
        text += "\n\n" + paired["text"]
    print(text)
    if args.json:
        out = {
            "command": " ".join(["python", "-m", "bench.capacity", *sys.argv[1:]]),
            "machine": machine(),
            "variants": result,
            "elapsed_s": round(time.time() - began, 1),
        }
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        args.json.with_suffix(".txt").write_text(text + "\n")


PORT_SPAN = 250
"""Concurrent A/B: variant i gets media ports PORT_MIN + i * PORT_SPAN onwards (201 of them)."""


def run_together(args: argparse.Namespace, rooms: int, variants: list[Variant]) -> list[Run]:
    """Every variant's SFU and load tester at once; each SFU's CPU over one common window.

    The window opens when every ramp is done plus a settle time and closes before the first
    load tester stops, so the machine's drift, other tenants and frequency changes hit all
    variants alike: a paired reading, unlike runs one after another."""
    launches: list[Launch] = []
    try:
        for index, variant in enumerate(variants):
            low = PORT_MIN + index * PORT_SPAN
            launches.append(
                launch(args, rooms, args.duration, variant, (low, low + PORT_MAX - PORT_MIN))
            )
        settle = rooms * args.ramp_per_room + 8.0
        window = args.duration - 12.0
        if window < 5:
            raise SystemExit("--concurrent needs --duration of at least 17 s")
        time.sleep(settle)
        processes = [psutil.Process(one.sfu.pid) for one in launches]
        before = [_cpu_seconds(proc) for proc in processes]
        began = time.monotonic()
        time.sleep(window)
        after = [_cpu_seconds(proc) for proc in processes]
        span = time.monotonic() - began
    finally:
        runs = [finish(one) for one in launches]
    for run, (total0, rec0), (total1, rec1) in zip(runs, before, after, strict=True):
        run.sfu_cpu_cores = (total1 - total0) / span
        run.sfu_cpu_per_room = run.sfu_cpu_cores / run.rooms
        run.sfu_recorder_cores = (rec1 - rec0) / span
    return runs


def _cpu_seconds(process: psutil.Process) -> tuple[float, float]:
    """CPU seconds of the whole process and its live child processes, and of its recorder
    thread (named by the SFU)."""
    times = process.cpu_times()
    children = 0.0
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child_times = child.cpu_times()
            children += child_times.user + child_times.system
    recorder = 0.0
    for thread in process.threads():
        comm = Path(f"/proc/{process.pid}/task/{thread.id}/comm")
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == RECORDER_THREAD:
                recorder += thread.user_time + thread.system_time
    return float(times.user + times.system) + children, recorder


def paired_overhead(
    base: list[Run], other: list[Run], names: tuple[str, str] = ("base", "other")
) -> dict[str, Any]:
    """What `other` adds per room over `base`, from runs made at the same time (pairs): as a
    share of `base`'s marginal room (its fit's slope, the fixed cost of an idle SFU excluded)
    when the runs span two room counts or more, and as a share of `base`'s whole CPU per room
    in the same window always. With a single room count there is no slope: the per-pair
    figures are still given."""
    first, second = names
    pairs = [
        (b, o)
        for b, o in zip(base, other, strict=True)
        if b.kept_up and o.kept_up and b.rooms == o.rooms
    ]
    if not pairs:
        return {"pairs": 0, "text": "paired: no pair of runs that both kept up"}
    extra = [(o.sfu_cpu_cores - b.sfu_cpu_cores) / b.rooms for b, o in pairs]
    thread = [(o.sfu_recorder_cores or 0.0) / o.rooms for _, o in pairs]
    rest = [e - t for e, t in zip(extra, thread, strict=True)]
    all_in = [e / (b.sfu_cpu_cores / b.rooms) * 100 for e, (b, _) in zip(extra, pairs, strict=True)]
    median_extra = float(np.median(extra))
    text = (
        f"paired (same window): {second} over {first}, extra CPU-s/s per room, median "
        f"{median_extra:.4f} over {len(extra)} pairs ({', '.join(f'{e:.4f}' for e in extra)}); "
        f"of the extra, {second}'s recorder thread {float(np.median(thread)):.4f} and its other "
        f"threads {float(np.median(rest)):.4f} per room (medians); against {first}'s whole CPU "
        f"per room in the same window: {float(np.median(all_in)):+.1f} %"
    )
    result: dict[str, Any] = {
        "pairs": len(pairs),
        "extra_per_room": extra,
        "median_extra_per_room": median_extra,
        "overhead_pct_of_whole_per_room": all_in,
        "recorder_thread_per_room": thread,
        "other_threads_extra_per_room": rest,
    }
    slope_fit = fit(base, "sfu_cpu_cores")
    slope = slope_fit["per_room"] if slope_fit else None
    if slope:
        shares = [e / slope * 100 for e in extra]
        text += (
            f"; {first}'s marginal room (fit) {slope:.4f} -> {median_extra / slope * 100:+.1f} % "
            f"(pairs {', '.join(f'{x:+.1f}' for x in shares)} %)"
        )
        result |= {
            "base_per_room_fit": slope,
            "overhead_pct_per_pair": shares,
            "overhead_pct_median": median_extra / slope * 100,
        }
    else:
        text += f"; one room count, so no fit: no share of {first}'s marginal room"
    result["text"] = text
    return result


def main() -> None:
    parser = build_parser(__doc__.split("\n")[0])
    parser.add_argument(
        "--variant",
        action="append",
        required=True,
        help="NAME=PATH[@asyncio][+record] (repeat); every room count is run for each "
        "variant in turn, --rounds times",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds")
    parser.add_argument(
        "--concurrent",
        action="store_true",
        help="run the variants' SFUs at the same time on the same CPUs (each with its "
        "own load tester and port range) and read their CPU over one common window",
    )
    args = parser.parse_args()
    compare([Variant.parse(v) for v in args.variant], args)


if __name__ == "__main__":
    main()

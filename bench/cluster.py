"""Several nodes as one SFU (issue 14): what the cluster adds, on loopback with a real
`redis-server` and two `sfu serve` nodes sharing it (plus, for comparison, one node without
Redis).

- **Join → first frame, relayed vs direct**: each round creates a room through node A
  (placed by the cluster: its `node_id` says where), a publisher joins the room's node and
  publishes the paced 640x480 30 fps VP8 clip; then a subscriber joins either the room's node
  itself (direct) or the other node, which relays its socket (relayed), alternately. Measured:
  from the start of the subscriber's WebSocket connect to `joined`, to the `subscribe_offer`
  announcing the video, and to the first decoded video frame.
- **Relay cost per signalling message**: two sockets in one room, one on the room's node, one
  relayed through the other node. Round trips: `ping` → `pong`, the two sockets taking turns.
  CPU: a burst of sequential pings on each socket, every node's process CPU (user + system,
  all threads, from /proc) over the burst, net of its idle rate; a ping round trip crosses the
  relay twice (the ping up, the pong down).
- **Directory cost per room creation**: sequential `POST /rooms` + `DELETE /rooms/{id}` on
  node A of the cluster (placement, the claim in Redis, and for the rooms placed on node B the
  forwarded call) against the same on a node without Redis, in alternating blocks. Latency of
  each call; CPU of every process involved (nodes, redis-server) per creation (POST + DELETE).

Pinning (with 2+ CPUs, `auto`): every SFU process on CPU 0, this process (clients) and
redis-server on CPU 1.

Run inside a loopback-only network namespace::

    unshare -n sh -c 'ip link set lo up && python -m bench.cluster --json out.json'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiortc import MediaStreamTrack

from bench.harness import LOOPBACK, VIDEO, camera, machine, pin
from sfu.api.tokens import mint_service_token
from sfu.client.client import SfuClient
from sfu.client.remote import RemoteTrackInfo
from sfu.loadtest.report import distribution
from sfu.testing.process import TEST_SECRET, RedisProcess, SfuProcess, make_sfu

NODE_IDS = ("node-a", "node-b")
SINGLE_ID = "single"
CONNECT_TIMEOUT_S = 15.0
FIRST_FRAME_TIMEOUT_S = 15.0
REGISTER_TIMEOUT_S = 15.0
HEARTBEAT_S = 2.0
"""The nodes run with the default heartbeat (SFU_CLUSTER_HEARTBEAT_S) and node TTL."""
PORTS_PER_NODE = 1000
"""Media ports per SFU process; with `SFU_MAX_ROOMS` below, enough that placement never
refuses a creation of the directory blocks (it counts each room placed against the node's
free ports and room slots until the node's next heartbeat, deleted or not)."""
COMMON_ENV = {
    "SFU_LOG_LEVEL": "WARNING",
    "SFU_DRAIN_TIMEOUT_S": "0",
    "SFU_MAX_ROOMS": "1000",
    # one client address sends everything: every per-address and per-socket limit out of reach
    "SFU_REST_RATE_PER_IP": "1000000",
    "SFU_REST_BURST_PER_IP": "1000000",
    "SFU_WS_MESSAGES_PER_S": "1000000",
    "SFU_WS_MESSAGE_BURST": "1000000",
}


# --- processes ------------------------------------------------------------------------------


def _cpus(text: str, auto: set[int]) -> set[int] | None:
    if text == "auto":
        return auto if (os.cpu_count() or 1) >= 2 else None
    return {int(part) for part in text.split(",") if part.strip()} or None


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, every thread (/proc/<pid>/stat through psutil)."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


@dataclass
class Setup:
    redis: RedisProcess
    nodes: list[SfuProcess]
    single: SfuProcess
    sfu_cpus: set[int] | None
    redis_cpus: set[int] | None

    def node(self, node_id: str) -> SfuProcess:
        return next(n for n in self.nodes if n.env["SFU_NODE_ID"] == node_id)

    def other(self, node_id: str) -> SfuProcess:
        return next(n for n in self.nodes if n.env["SFU_NODE_ID"] != node_id)

    def pids(self) -> dict[str, int]:
        found = {n.env["SFU_NODE_ID"]: n.pid for n in self.nodes}
        return {**found, SINGLE_ID: self.single.pid, "redis": self.redis.pid}

    def repin(self) -> None:
        """Threads started since the last call (executors, decoders) onto the SFU CPUs."""
        for sfu in [*self.nodes, self.single]:
            pin(sfu.pid, self.sfu_cpus)


@contextlib.contextmanager
def processes(args: argparse.Namespace) -> Iterator[Setup]:
    sfu_cpus = _cpus(args.sfu_cpus, {0})
    redis_cpus = _cpus(args.redis_cpus, {1})
    redis = RedisProcess()
    nodes: list[SfuProcess] = []
    single: SfuProcess | None = None
    try:
        redis.start()
        pin(redis.pid, redis_cpus)
        for index, name in enumerate(NODE_IDS):
            low = args.rtc_min + index * PORTS_PER_NODE
            node = make_sfu(low, low + PORTS_PER_NODE - 1, name, REDIS_URL=redis.url, **COMMON_ENV)
            nodes.append(node)
            node.start()
            pin(node.pid, sfu_cpus)
        low = args.rtc_min + len(NODE_IDS) * PORTS_PER_NODE
        single = make_sfu(low, low + PORTS_PER_NODE - 1, SINGLE_ID, **COMMON_ENV)
        single.env.pop("REDIS_URL", None)  # alone: no directory
        single.start()
        pin(single.pid, sfu_cpus)
        yield Setup(redis, nodes, single, sfu_cpus, redis_cpus)
    finally:
        for sfu in [*nodes, *([single] if single else [])]:
            sfu.stop()
        redis.stop()


class Rest:
    """REST calls with one service token and one keep-alive session, as a backend makes them."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {mint_service_token(TEST_SECRET, 7200)}"}

    async def call(
        self, node: SfuProcess, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        async with self.http.request(
            method, node.url + path, json=body, headers=self.headers
        ) as response:
            data: dict[str, Any] = {}
            if response.content_type == "application/json":
                data = await response.json()
            return response.status, data

    async def create(self, node: SfuProcess, room_id: str) -> dict[str, Any]:
        status, room = await self.call(
            node, "POST", "/rooms", {"room_id": room_id, "record": False}
        )
        if status != 201:
            raise RuntimeError(f"POST /rooms on {node.env['SFU_NODE_ID']}: {status} {room}")
        return room

    async def delete(self, node: SfuProcess, room_id: str) -> None:
        status, body = await self.call(node, "DELETE", f"/rooms/{room_id}")
        if status != 200:
            raise RuntimeError(f"DELETE /rooms/{room_id}: {status} {body}")


async def wait_registered(rest: Rest, setup: Setup) -> None:
    """Until every node lists every node, then two heartbeats more, so that the `cpu_load`
    placement reads no longer holds the start-up's CPU."""
    deadline = time.monotonic() + REGISTER_TIMEOUT_S
    while True:
        listed = []
        for node in setup.nodes:
            status, body = await rest.call(node, "GET", "/nodes")
            listed.append({n["node_id"] for n in body.get("nodes", [])} if status == 200 else {})
        if all(ids == set(NODE_IDS) for ids in listed):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"nodes not registered within {REGISTER_TIMEOUT_S} s: {listed}")
        await asyncio.sleep(0.2)
    await asyncio.sleep(2 * HEARTBEAT_S + 0.5)


def _video(info: RemoteTrackInfo) -> bool:
    return info.kind == "video"


async def _close(*clients: SfuClient | None) -> None:
    await asyncio.gather(*(c.close() for c in clients if c is not None), return_exceptions=True)


def _ms(values: list[float]) -> dict[str, Any]:
    d = asdict(distribution(values))
    return {k: (v * 1000 if isinstance(v, float) and k != "n" else v) for k, v in d.items()}


# --- join -> first frame --------------------------------------------------------------------


@dataclass
class JoinSample:
    round: int
    path: str
    """"direct": the subscriber joins the room's node; "relayed": through the other node."""
    owner: str
    via: str
    joined_s: float | None = None
    """From the start of the subscriber's WebSocket connect to its `joined`."""
    offer_s: float | None = None
    """... to the `subscribe_offer` announcing the publisher's video."""
    first_frame_s: float | None = None
    """... to its first decoded video frame."""
    error: str | None = None


async def join_round(
    rest: Rest, setup: Setup, index: int, path: str, settle_s: float
) -> JoinSample:
    room_id = f"ff-{index:03d}-{uuid.uuid4().hex[:6]}"
    room = await rest.create(setup.nodes[0], room_id)
    owner = setup.node(room["node_id"])
    via = owner if path == "direct" else setup.other(room["node_id"])
    sample = JoinSample(index, path, room["node_id"], via.env["SFU_NODE_ID"])
    publisher: SfuClient | None = None
    subscriber: SfuClient | None = None
    track = camera()
    try:
        publisher = await SfuClient.connect(
            owner.ws_url,
            owner.token(room_id, "publisher", "mentor"),
            ice=LOOPBACK,
            decode=False,
            timeout=CONNECT_TIMEOUT_S,
        )
        tracks: dict[MediaStreamTrack, str] = {track: "camera"}
        await publisher.publish(tracks, timeout=CONNECT_TIMEOUT_S)
        await asyncio.sleep(settle_s)  # media flowing; the publish's own keyframe request past
        started = time.monotonic()
        subscriber = await SfuClient.connect(
            via.ws_url,
            via.token(room_id, "subscriber", "mentee"),
            ice=LOOPBACK,
            decode=True,
            timeout=CONNECT_TIMEOUT_S,
        )
        joined = next(i for i, m in enumerate(subscriber.messages) if m["type"] == "joined")
        sample.joined_s = subscriber.received_at[joined] - started
        info = await subscriber.wait_frames(_video, 1, timeout=FIRST_FRAME_TIMEOUT_S)
        assert info.first_frame_at is not None
        sample.offer_s = info.offered_at - started
        sample.first_frame_s = info.first_frame_at - started
    except (TimeoutError, RuntimeError, ConnectionError, aiohttp.ClientError) as exc:
        sample.error = repr(exc)
    finally:
        await _close(subscriber, publisher)
        track.stop()
        await rest.delete(setup.nodes[0], room_id)
    return sample


async def first_frames(rest: Rest, setup: Setup, args: argparse.Namespace) -> dict[str, Any]:
    samples: list[JoinSample] = []
    for index in range(args.warmup_rounds + args.rounds):
        path = ("direct", "relayed")[index % 2]
        sample = await join_round(rest, setup, index, path, args.settle)
        setup.repin()
        measured = index >= args.warmup_rounds
        if measured:
            samples.append(sample)
        first = "-" if sample.first_frame_s is None else f"{sample.first_frame_s * 1000:.0f} ms"
        print(
            f"first frame {'' if measured else '(warm-up) '}round {index}: {path} "
            f"(room on {sample.owner}, via {sample.via}): {first}"
            + (f", error: {sample.error}" if sample.error else ""),
            flush=True,
        )
    summary = {}
    for path in ("direct", "relayed"):
        mine = [s for s in samples if s.path == path]
        summary[path] = {
            "rounds": len(mine),
            "failed": sum(1 for s in mine if s.error),
            "rooms_by_owner": {n: sum(1 for s in mine if s.owner == n) for n in NODE_IDS},
            "joined_ms": _ms([s.joined_s for s in mine if s.joined_s is not None]),
            "offer_ms": _ms([s.offer_s for s in mine if s.offer_s is not None]),
            "first_frame_ms": _ms([s.first_frame_s for s in mine if s.first_frame_s is not None]),
        }
    return {"samples": [asdict(s) for s in samples], "summary": summary}


# --- relay cost per signalling message -----------------------------------------------------


def idle_rates(setup: Setup, window_s: float) -> dict[str, float]:
    """CPU cores each process uses with nothing to do (heartbeats, metrics), over a window."""
    pids = setup.pids()
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.monotonic()
    time.sleep(window_s)
    span = time.monotonic() - started
    return {name: (cpu_seconds(pid) - before[name]) / span for name, pid in pids.items()}


@dataclass
class Burst:
    path: str
    pings: int
    wall_s: float
    cpu_s: dict[str, float]
    """CPU seconds of each process over the burst, as read."""
    net_cpu_us_per_ping: dict[str, float] = field(default_factory=dict)
    """Per ping round trip, net of the process' idle rate, microseconds."""


async def ping_burst(
    client: SfuClient, path: str, count: int, pids: dict[str, int], idle: dict[str, float]
) -> Burst:
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.monotonic()
    for _ in range(count):
        await client.ping()
    wall = time.monotonic() - started
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    burst = Burst(path, count, wall, cpu)
    burst.net_cpu_us_per_ping = {
        name: (used - idle[name] * wall) / count * 1e6 for name, used in cpu.items()
    }
    return burst


async def relay_cost(
    rest: Rest, setup: Setup, args: argparse.Namespace, idle: dict[str, float]
) -> dict[str, Any]:
    room_id = f"relay-{uuid.uuid4().hex[:6]}"
    room = await rest.create(setup.nodes[0], room_id)
    owner, relay = setup.node(room["node_id"]), setup.other(room["node_id"])
    owner_id, relay_id = owner.env["SFU_NODE_ID"], relay.env["SFU_NODE_ID"]
    clients: dict[str, SfuClient] = {}
    try:
        clients["direct"] = await SfuClient.connect(
            owner.ws_url, owner.token(room_id, "direct", "mentor"), ice=LOOPBACK, decode=False
        )
        clients["relayed"] = await SfuClient.connect(
            relay.ws_url, relay.token(room_id, "relayed", "mentee"), ice=LOOPBACK, decode=False
        )
        for _ in range(args.pings // 10):  # warm-up
            for client in clients.values():
                await client.ping()
        rtts: dict[str, list[float]] = {"direct": [], "relayed": []}
        for index in range(args.pings):
            order = ("direct", "relayed") if index % 2 == 0 else ("relayed", "direct")
            for path in order:
                rtts[path].append(await clients[path].ping())
        pids = {"owner": owner.pid, "relay": relay.pid}
        bursts: list[Burst] = []
        for index in range(args.burst_rounds):
            order = ("direct", "relayed") if index % 2 == 0 else ("relayed", "direct")
            for path in order:
                node_idle = {"owner": idle[owner_id], "relay": idle[relay_id]}
                burst = await ping_burst(clients[path], path, args.burst, pids, node_idle)
                bursts.append(burst)
                print(
                    f"ping burst {path}: {burst.pings} in {burst.wall_s:.2f} s, net CPU per ping "
                    + ", ".join(f"{k} {v:.0f} us" for k, v in burst.net_cpu_us_per_ping.items()),
                    flush=True,
                )
    finally:
        await _close(*clients.values())
        await rest.delete(setup.nodes[0], room_id)

    def mean_us(path: str, who: str) -> float:
        mine = [b for b in bursts if b.path == path]
        return sum(b.net_cpu_us_per_ping[who] for b in mine) / len(mine)

    return {
        "room_on": owner_id,
        "relayed_through": relay_id,
        "round_trip_ms": {path: _ms(values) for path, values in rtts.items()},
        "bursts": [asdict(b) for b in bursts],
        "cpu_us_per_ping": {
            path: {who: mean_us(path, who) for who in ("owner", "relay")}
            for path in ("direct", "relayed")
        },
        "relay_cpu_us_per_relayed_message": mean_us("relayed", "relay") / 2,
        "note": "a ping round trip crosses the relay twice (ping up, pong down): the relaying "
        "node's CPU per relayed message is half its net CPU per relayed ping; its net CPU per "
        "direct ping (which never reaches it) shows how well the idle rate was taken out",
    }


# --- directory cost per room creation ------------------------------------------------------


@dataclass
class Creation:
    setup: str
    """"single" (one node, no Redis) or "cluster" (node A of the two-node cluster)."""
    post_s: float
    delete_s: float
    node_id: str


@dataclass
class CreationBlock:
    setup: str
    creations: int
    wall_s: float
    cpu_s: dict[str, float]


async def creation_block(
    rest: Rest, entry: SfuProcess, name: str, count: int, pids: dict[str, int], tag: str
) -> tuple[list[Creation], CreationBlock]:
    done: list[Creation] = []
    before = {who: cpu_seconds(pid) for who, pid in pids.items()}
    started = time.monotonic()
    for index in range(count):
        room_id = f"dir-{tag}-{index:04d}"
        t0 = time.monotonic()
        room = await rest.create(entry, room_id)
        t1 = time.monotonic()
        await rest.delete(entry, room_id)
        done.append(Creation(name, t1 - t0, time.monotonic() - t1, str(room["node_id"])))
    wall = time.monotonic() - started
    cpu = {who: cpu_seconds(pid) - before[who] for who, pid in pids.items()}
    return done, CreationBlock(name, count, wall, cpu)


async def directory_cost(
    rest: Rest, setup: Setup, args: argparse.Namespace, idle: dict[str, float]
) -> dict[str, Any]:
    all_pids = setup.pids()
    targets: dict[str, tuple[SfuProcess, dict[str, int]]] = {
        "single": (setup.single, {SINGLE_ID: all_pids[SINGLE_ID]}),
        "cluster": (
            setup.nodes[0],
            {n: all_pids[n] for n in (*NODE_IDS, "redis")},
        ),
    }
    run = uuid.uuid4().hex[:6]
    for name, (entry, pids) in targets.items():  # warm-up
        await creation_block(rest, entry, name, 20, pids, f"{run}-warm-{name}")
    creations: list[Creation] = []
    blocks: list[CreationBlock] = []
    per_block = max(1, args.creations // args.creation_blocks)
    for index in range(args.creation_blocks):
        order = ("single", "cluster") if index % 2 == 0 else ("cluster", "single")
        for name in order:
            entry, pids = targets[name]
            done, block = await creation_block(
                rest, entry, name, per_block, pids, f"{run}-{index}-{name}"
            )
            creations += done
            blocks.append(block)
            print(
                f"creations {name} block {index}: {block.creations} in {block.wall_s:.2f} s, "
                f"POST p50 {_ms([c.post_s for c in done])['p50']:.2f} ms",
                flush=True,
            )
        setup.repin()
    summary: dict[str, Any] = {}
    entry_id = setup.nodes[0].env["SFU_NODE_ID"]
    for name, (_, pids) in targets.items():
        mine = [c for c in creations if c.setup == name]
        mine_blocks = [b for b in blocks if b.setup == name]
        count = sum(b.creations for b in mine_blocks)
        wall = sum(b.wall_s for b in mine_blocks)
        cpu_ms = {
            who: (sum(b.cpu_s[who] for b in mine_blocks) - idle[who] * wall) / count * 1000
            for who in pids
        }
        summary[name] = {
            "creations": count,
            "post_ms": _ms([c.post_s for c in mine]),
            "delete_ms": _ms([c.delete_s for c in mine]),
            "cpu_ms_per_creation": {**cpu_ms, "total": sum(cpu_ms.values())},
            "rooms_by_node": dict(sorted(Counter(c.node_id for c in mine).items())),
        }
        if name == "cluster":
            summary[name]["post_ms_placed_on_entry"] = _ms(
                [c.post_s for c in mine if c.node_id == entry_id]
            )
            summary[name]["post_ms_forwarded"] = _ms(
                [c.post_s for c in mine if c.node_id != entry_id]
            )
    return {
        "entry_node": entry_id,
        "creations_per_block": per_block,
        "blocks": [asdict(b) for b in blocks],
        "summary": summary,
        "note": "CPU per creation covers its POST and its DELETE, net of each process' idle "
        "rate; rooms are created with record: false and nobody joins them",
    }


# --- the run and its report ----------------------------------------------------------------


def _command() -> str:
    return " ".join(["python", "-m", "bench.cluster", *sys.argv[1:]])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    bench_cpus = _cpus(args.bench_cpus, {1})
    if bench_cpus:
        os.sched_setaffinity(0, bench_cpus)
    camera().stop()  # build the clip before anything is timed
    parts = set(args.parts.split(","))
    result: dict[str, Any] = {"command": _command(), "machine": machine()}
    with processes(args) as setup:
        async with aiohttp.ClientSession() as http:
            rest = Rest(http)
            await wait_registered(rest, setup)
            setup.repin()
            idle = await asyncio.to_thread(idle_rates, setup, args.idle_window)
            result["config"] = {
                "sfu_cpus": sorted(setup.sfu_cpus) if setup.sfu_cpus else None,
                "bench_cpus": sorted(bench_cpus) if bench_cpus else None,
                "redis_cpus": sorted(setup.redis_cpus) if setup.redis_cpus else None,
                "video": VIDEO,
                "settle_s": args.settle,
                "heartbeat_s": HEARTBEAT_S,
                "idle_cores": idle,
            }
            if "first-frame" in parts:
                result["first_frame"] = await first_frames(rest, setup, args)
            if "relay" in parts:
                result["relay"] = await relay_cost(rest, setup, args, idle)
            if "directory" in parts:
                result["directory"] = await directory_cost(rest, setup, args, idle)
    return result


def _f(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def _pair(d: dict[str, Any], digits: int = 1) -> str:
    return f"{_f(d.get('p50'), digits)} / {_f(d.get('p95'), digits)}"


def report(result: dict[str, Any]) -> str:
    m, config = result["machine"], result["config"]
    lines = [
        f"sfu {m['sfu_revision']}; machine: {m['nproc']} CPUs, {m['cpu_model']}; SFU CPUs "
        f"{config['sfu_cpus']}, bench CPUs {config['bench_cpus']}, redis CPUs "
        f"{config['redis_cpus']}",
        "",
    ]
    first = result.get("first_frame")
    if first:
        lines += [
            "| path | rounds | joined ms p50 / p95 | subscribe_offer ms p50 / p95 "
            "| first decoded frame ms p50 / p95 | min / max |",
            "|---|---|---|---|---|---|",
        ]
        for path, s in first["summary"].items():
            ff = s["first_frame_ms"]
            lines.append(
                f"| {path} | {s['rounds']} ({s['failed']} failed) | {_pair(s['joined_ms'])} "
                f"| {_pair(s['offer_ms'])} | {_pair(ff)} | {_f(ff['min'], 1)} / "
                f"{_f(ff['max'], 1)} |"
            )
        lines.append("")
    relay = result.get("relay")
    if relay:
        lines += [
            "| socket | ping → pong ms p50 / p95 | room's node CPU µs per ping "
            "| relaying node CPU µs per ping |",
            "|---|---|---|---|",
        ]
        for path in ("direct", "relayed"):
            cpu = relay["cpu_us_per_ping"][path]
            lines.append(
                f"| {path} | {_pair(relay['round_trip_ms'][path], 3)} | {_f(cpu['owner'], 0)} "
                f"| {_f(cpu['relay'], 0)} |"
            )
        lines += [
            "",
            f"relaying node CPU per relayed message: "
            f"{_f(relay['relay_cpu_us_per_relayed_message'], 0)} µs",
            "",
        ]
    directory = result.get("directory")
    if directory:
        lines += [
            "| setup | creations | POST ms p50 / p95 | DELETE ms p50 / p95 "
            "| CPU ms per creation (POST + DELETE) |",
            "|---|---|---|---|---|",
        ]
        for name, s in directory["summary"].items():
            cpu = s["cpu_ms_per_creation"]
            parts = ", ".join(f"{k} {_f(v, 2)}" for k, v in cpu.items() if k != "total")
            lines.append(
                f"| {name} | {s['creations']} | {_pair(s['post_ms'], 2)} "
                f"| {_pair(s['delete_ms'], 2)} | {_f(cpu['total'], 2)} ({parts}) |"
            )
        cluster = directory["summary"].get("cluster")
        if cluster:
            lines += [
                "",
                f"cluster rooms by node: {cluster['rooms_by_node']}; POST ms p50 / p95 placed "
                f"on the entry node {_pair(cluster['post_ms_placed_on_entry'], 2)}, forwarded "
                f"{_pair(cluster['post_ms_forwarded'], 2)}",
            ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="first-frame rounds (alternating)")
    parser.add_argument("--warmup-rounds", type=int, default=2)
    parser.add_argument("--settle", type=float, default=1.5, help="s from publish to the join")
    parser.add_argument("--pings", type=int, default=1000, help="round trips per socket")
    parser.add_argument("--burst", type=int, default=10000, help="pings per CPU burst")
    parser.add_argument("--burst-rounds", type=int, default=3, help="bursts per socket")
    parser.add_argument("--creations", type=int, default=200, help="POST + DELETE per setup")
    parser.add_argument("--creation-blocks", type=int, default=4)
    parser.add_argument("--idle-window", type=float, default=5.0, help="s of idle CPU reading")
    parser.add_argument("--parts", default="first-frame,relay,directory")
    parser.add_argument("--sfu-cpus", default="auto", help='e.g. "0"; "" = no pinning')
    parser.add_argument("--bench-cpus", default="auto", help='e.g. "1"; "" = no pinning')
    parser.add_argument("--redis-cpus", default="auto", help='e.g. "1"; "" = no pinning')
    parser.add_argument("--rtc-min", type=int, default=40000, help="first media port")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="abort after this long")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    try:
        import uvloop  # as the SFU does

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

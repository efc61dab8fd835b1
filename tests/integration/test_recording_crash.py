"""`kill -9` of the SFU in the middle of a recorded session: after a restart the partial
session is found, queued, and published by the VOD worker, and nothing recorded is lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import av

from sfu.client.client import SfuClient
from sfu.recording.session import last_sign_of_life
from sfu.testing.process import SfuProcess, make_sfu, redis_server
from tests.support.rooms import LOOPBACK, camera, create_room, metric, microphone
from tests.support.vod_worker import run_worker

RECORD_S = 6.0


async def test_sfu_killed_mid_session_is_recovered_and_published() -> None:
    server = make_sfu(47600, 47620, name="sfu-crash")
    server.start()
    clients: list[SfuClient] = []
    try:
        room = await create_room(server)
        session_id = room["recording"]["session_id"]
        for role in ("mentor", "mentee"):
            client = await SfuClient.connect(
                server.ws_url, server.token(str(room["room_id"]), role, role), ice=LOOPBACK
            )
            clients.append(client)
            await client.publish({camera(): "camera", microphone(): "microphone"})
        for client in clients:
            await client.wait_frames(lambda i: i.kind == "video", 15, timeout=30)
        started = time.monotonic()
        await asyncio.sleep(RECORD_S)
        recorded_s = time.monotonic() - started
        assert server.proc is not None
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
    finally:
        for client in clients:
            await client.close()

    data_dir = Path(server.env["SFU_DATA_DIR"])
    manifest_path = data_dir / "recordings" / session_id / "manifest.json"
    assert json.loads(manifest_path.read_text())["status"] == "recording"

    server.start()  # same settings, same data directory: start-up recovery
    try:
        manifest = json.loads(manifest_path.read_text())
        assert manifest["status"] == "finalised"
        assert all(t["end_s"] is not None for t in manifest["tracks"])
        code, logs = await run_worker(server.env, "--once", timeout=240)
        assert code == 0, logs[-3000:]
    finally:
        server.stop()
    vod = data_dir / "objects" / "vod" / "sessions" / session_id
    metadata = json.loads((vod / "metadata.json").read_text())
    assert metadata["duration_s"] >= recorded_s - 2.0, (metadata["duration_s"], recorded_s)
    with av.open(str(vod / "360p" / "index.m3u8")) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= 25 * (recorded_s - 2.0)


async def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def _status(manifest_path: Path) -> str:
    return str(json.loads(manifest_path.read_text())["status"])


@contextlib.asynccontextmanager
async def _recording_on_a(
    rtc_min: int, name: str, shared: dict[str, str]
) -> AsyncIterator[tuple[SfuProcess, SfuProcess, Path]]:
    """Nodes A and B with the `shared` settings (one recordings folder); A started, recording
    a room in which a mentor publishes camera and microphone; B made but not started. Yields
    (A, B, the session's folder); both nodes are stopped at the end."""
    node_a = make_sfu(rtc_min, rtc_min + 14, name=f"{name}-a", **shared)
    node_b = make_sfu(rtc_min + 15, rtc_min + 29, name=f"{name}-b", **shared)
    node_a.start()
    clients: list[SfuClient] = []
    try:
        room = await create_room(node_a)
        session_dir = Path(shared["SFU_RECORDINGS_DIR"]) / str(room["recording"]["session_id"])
        client = await SfuClient.connect(
            node_a.ws_url, node_a.token(str(room["room_id"]), "mentor", "mentor"), ice=LOOPBACK
        )
        clients.append(client)
        await client.publish({camera(): "camera", microphone(): "microphone"})
        yield node_a, node_b, session_dir
    finally:
        for c in clients:
            await c.close()
        node_a.stop()
        node_b.stop()


async def _kill_until_adopted(node: SfuProcess, session_dir: Path) -> float:
    """SIGKILL `node`, wait for the session to be queued by another; seconds it took."""
    assert node.proc is not None
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait(10)
    killed = time.monotonic()
    await _until(lambda: (session_dir / "queued.json").exists(), 30, "B to adopt the session")
    assert _status(session_dir / "manifest.json") == "finalised"
    return time.monotonic() - killed


async def test_shared_recordings_volume_live_session_kept_abandoned_one_adopted(
    tmp_path: Path,
) -> None:
    """Two SFU nodes share one recordings directory and queue (the k8s RWX volume). A node
    that starts leaves the other node's live session alone; once that node is killed, the
    survivor adopts the abandoned session (finalised and queued) within the orphan time."""
    shared = {
        "SFU_RECORDINGS_DIR": str(tmp_path / "recordings"),
        "SFU_VOD_QUEUE_DIR": str(tmp_path / "vod-queue"),
        "SFU_RECORDING_ORPHAN_S": "3",
    }
    async with _recording_on_a(47630, "sfu-shared", shared) as (node_a, node_b, session_dir):
        node_b.start()  # start-up recovery on B runs while A records
        await asyncio.sleep(4 * 3.0)  # four orphan times: B scans several times
        assert _status(session_dir / "manifest.json") == "recording", "B took A's live session"
        assert not (session_dir / "queued.json").exists()

        adopted_after = await _kill_until_adopted(node_a, session_dir)
        queued = list((tmp_path / "vod-queue" / "pending").glob("*.json"))
        assert [json.loads(p.read_text())["session_id"] for p in queued] == [session_dir.name]
        assert adopted_after < 3.0 + 3.0 / 2 + 5.0  # orphan time + one scan period + slack


async def test_shared_volume_with_redis_spares_a_node_whose_volume_writes_stall(
    tmp_path: Path,
) -> None:
    """Two nodes with Redis share the recordings volume. Node A's heartbeat file goes stale
    while A still records (the test keeps setting its mtime back, as a volume A cannot write
    to would): B does not adopt the session, because A holds its lease in Redis. Once A is
    killed, its lease expires and B adopts the session within the orphan time."""
    orphan_s = 3.0
    with redis_server() as redis_port:
        shared = {
            "SFU_RECORDINGS_DIR": str(tmp_path / "recordings"),
            "SFU_RECORDING_ORPHAN_S": str(orphan_s),
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        }
        async with _recording_on_a(47661, "sfu-lease", shared) as (node_a, node_b, session_dir):
            node_b.start()
            stale_reads = 0
            for _ in range(int(4 * orphan_s / 0.1)):  # B scans every orphan/2: about 8 scans
                then = time.time() - 2 * orphan_s
                os.utime(session_dir / "heartbeat", (then, then))
                stale_reads += time.time() - last_sign_of_life(session_dir) > orphan_s
                await asyncio.sleep(0.1)
            assert stale_reads > 30  # the heartbeat was stale most of the time
            assert _status(session_dir / "manifest.json") == "recording", "B took A's session"
            assert not (session_dir / "queued.json").exists()

            adopted_after = await _kill_until_adopted(node_a, session_dir)
            assert adopted_after < orphan_s + orphan_s / 2 + 5.0


def _on_a_small_disk(tmp_path: Path, rtc_min: int, name: str, **env: str) -> SfuProcess:
    """A started SFU whose recordings folder is a 3 MiB tmpfs in its own mount namespace; the
    test sees that folder as /proc/PID/root<SFU_RECORDINGS_DIR>."""
    recordings = str(tmp_path / "recordings")  # the tmpfs is mounted on it for the SFU alone
    node = make_sfu(rtc_min, rtc_min + 14, name=name, SFU_RECORDINGS_DIR=recordings, **env)
    node.prefix = [
        "unshare",
        "-m",
        "sh",
        "-c",
        f'mkdir -p {recordings} && mount -t tmpfs -o size=3m tmpfs {recordings} && exec "$@"',
        "sh",
    ]
    node.start()
    return node


async def test_a_full_recordings_disk_loses_only_what_came_while_it_was_full(
    tmp_path: Path,
) -> None:
    """The recordings folder is a 3 MiB tmpfs in the SFU's own mount namespace, nearly filled
    by the test. The camera's file fails (ENOSPC) while forwarding goes on; once the test frees
    the space, the camera is recorded again in a new segment that decodes, and the session is
    finalised with both segments."""
    node = _on_a_small_disk(tmp_path, 47691, "sfu-disk-full")
    clients: list[SfuClient] = []
    try:
        inside = Path(f"/proc/{node.pid}/root{node.env['SFU_RECORDINGS_DIR']}")
        filler = inside / "filler"
        filler.write_bytes(b"\0" * (2 * 1024 * 1024 + 512 * 1024))
        room = await create_room(node)
        session_dir = inside / str(room["recording"]["session_id"])
        for role in ("mentor", "mentee"):
            client = await SfuClient.connect(
                node.ws_url, node.token(str(room["room_id"]), role, role), ice=LOOPBACK
            )
            clients.append(client)
        mentor, mentee = clients
        await mentor.publish({camera(): "camera"})
        await _until_async(
            lambda: metric(node, "sfu_recording_write_errors_total"), 30, "a failed write"
        )
        info = await mentee.wait_frames(lambda i: i.source == "camera", 1, timeout=5)
        before = info.frames
        await mentee.wait_frames(lambda i: i.source == "camera", before + 30, timeout=5)
        filler.unlink()  # the operator frees space
        manifest_path = session_dir / "manifest.json"

        def cameras() -> list[dict[str, Any]]:
            tracks = json.loads(manifest_path.read_text())["tracks"]
            return [t for t in tracks if t["source"] == "camera"]

        # a new segment within ROTATE_MAX_S (16 s) of the space coming back, then 3 s of video
        await _until(lambda: len(cameras()) >= 2, 25, "a new camera segment")
        await asyncio.sleep(3.0)
        async with aiohttp.ClientSession() as http:
            deleted = await http.delete(
                f"{node.url}/rooms/{room['room_id']}", headers=node.service_headers()
            )
            assert deleted.status == 200, await deleted.text()
        manifest = json.loads((session_dir / "manifest.json").read_text())
        assert manifest["status"] == "finalised"
        segments = sorted(
            (t for t in manifest["tracks"] if t["source"] == "camera"), key=lambda t: t["segment"]
        )
        assert len(segments) >= 2, segments
        last = segments[-1]
        with av.open(str(session_dir / last["file"])) as container:
            frames = sum(1 for _ in container.decode(video=0))
        assert frames >= 25 * 2, (frames, last)  # seconds of video after the space came back
        assert last["start_s"] >= segments[0]["start_s"]
        # the VOD worker renders both segments (the first one cut short by the full disk)
        code, logs = await run_worker({**node.env, "SFU_RECORDINGS_DIR": str(inside)}, "--once")
        assert code == 0, logs[-3000:]
        vod = Path(node.env["SFU_DATA_DIR"]) / "objects" / "vod" / "sessions" / session_dir.name
        middle = {(t["start_s"] + t["end_s"]) / 2: -1.0 for t in (segments[0], last)}
        with av.open(str(vod / "360p" / "index.m3u8")) as container:
            for frame in container.decode(video=0):
                for t, std in middle.items():
                    if std < 0 and frame.time is not None and frame.time >= t:
                        # side by side: the mentor's 4:3 camera fills 320x240 at (0, 60)
                        middle[t] = float(frame.to_ndarray(format="gray")[80:280, 20:300].std())
        assert all(std > 3.0 for std in middle.values()), middle  # video, not a placeholder
    finally:
        for c in clients:
            await c.close()
        node.stop()


async def _until_async(fetch: Callable[[], Awaitable[float]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await fetch():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_a_room_closed_on_a_full_disk_is_queued_once_space_is_back(tmp_path: Path) -> None:
    """The room closes while the recordings disk is full: the session cannot be finalised, the
    DELETE answers `finalising` (not `failed`), and once space is freed the node's recordings
    scan finalises and queues the session by itself."""
    node = _on_a_small_disk(tmp_path, 47706, "sfu-full-close", SFU_RECORDING_ORPHAN_S="3")
    client: SfuClient | None = None
    try:
        inside = Path(f"/proc/{node.pid}/root{node.env['SFU_RECORDINGS_DIR']}")
        room = await create_room(node)
        session_dir = inside / str(room["recording"]["session_id"])
        client = await SfuClient.connect(
            node.ws_url, node.token(str(room["room_id"]), "mentor", "mentor"), ice=LOOPBACK
        )
        await client.publish({camera(): "camera", microphone(): "microphone"})
        # both tracks are being recorded before the disk fills (a track that starts on a full
        # disk cannot be opened, and is retried, not recorded)
        await _until(
            lambda: len(json.loads((session_dir / "manifest.json").read_text())["tracks"]) == 2,
            15,
            "both tracks recorded",
        )
        filler = inside / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as out:  # every byte left
            for _ in range(4 * 1024):
                out.write(b"\0" * 1024)
        await _until_async(
            lambda: metric(node, "sfu_recording_write_errors_total"), 30, "a failed write"
        )
        async with aiohttp.ClientSession() as http:
            deleted = await http.delete(
                f"{node.url}/rooms/{room['room_id']}", headers=node.service_headers()
            )
            body = await deleted.json()
        assert body["recording"]["status"] == "finalising", body
        assert _status(session_dir / "manifest.json") == "recording"
        filler.unlink()
        await _until(lambda: (session_dir / "queued.json").exists(), 20, "the session queued")
        manifest = json.loads((session_dir / "manifest.json").read_text())
        assert manifest["status"] == "finalised"
        assert {t["source"] for t in manifest["tracks"]} == {"camera", "microphone"}
        assert all(t["end_s"] is not None for t in manifest["tracks"])
    finally:
        if client is not None:
            await client.close()
        node.stop()

"""`sfu vod-worker` end to end: local queue, file:// store, signed webhooks, a killed worker,
dead letters listed and requeued from the command line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp.web
import av
import pytest

from sfu.recording.local_queue import LocalJobQueue
from sfu.testing.process import free_tcp_port
from sfu.webhooks.payload import SIGNATURE_HEADER, verify_signature
from tests.support.media_files import write_opus_tone, write_vp8_track

SESSION_ID = "sess-vod-1"
SESSION_S = 8.0
SECRET = "vod-worker-test-secret-0123"
PREFIX = f"vod/sessions/{SESSION_ID}/"


def _track(tid: str, pid: str, kind: str, source: str) -> dict[str, Any]:
    return {
        "track_id": tid, "participant_id": pid, "kind": kind, "source": source,
        "codec": "opus" if kind == "audio" else "vp8", "file": f"tracks/{tid}.mkv",
        "start_s": 0.0, "end_s": SESSION_S, "segment": 0,
    }  # fmt: skip


@pytest.fixture(scope="module")
def tracks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The media of one session, written once and copied into each test's recordings dir."""
    root = tmp_path_factory.mktemp("tracks")
    write_vp8_track(root / "cam-a.mkv", (210, 40, 40), SESSION_S)
    write_vp8_track(root / "cam-b.mkv", (40, 40, 210), SESSION_S)
    write_opus_tone(root / "mic-a.mkv", 440.0, SESSION_S)
    return root


def _make_session(recordings: Path, tracks_dir: Path) -> Path:
    session = recordings / SESSION_ID
    (session / "tracks").mkdir(parents=True)
    for f in tracks_dir.iterdir():
        (session / "tracks" / f.name).write_bytes(f.read_bytes())
    manifest = {
        "session_id": SESSION_ID,
        "room_id": "room-vod",
        "started_at": "2025-01-02T03:04:05Z",
        "ended_at": f"2025-01-02T03:04:{5 + SESSION_S:06.3f}Z",
        "status": "finalised",
        "participants": [
            {"participant_id": "p-a", "user_id": "u1", "name": "Kim", "role": "mentor",
             "joined_at_s": 0.0, "left_at_s": SESSION_S},
            {"participant_id": "p-b", "user_id": "u2", "name": "Lee", "role": "mentee",
             "joined_at_s": 0.0, "left_at_s": SESSION_S},
        ],
        "tracks": [
            _track("cam-a", "p-a", "video", "camera"),
            _track("cam-b", "p-b", "video", "camera"),
            _track("mic-a", "p-a", "audio", "microphone"),
        ],
    }  # fmt: skip
    (session / "manifest.json").write_text(json.dumps(manifest))
    return session


def _env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFU_") and k != "REDIS_URL"}
    env.update(
        SFU_DATA_DIR=str(data),
        SFU_RECORDINGS_DIR=str(data / "recordings"),
        SFU_STORAGE_URL=(data / "objects").as_uri(),
        SFU_JWT_SECRET=SECRET,
        SFU_LOG_JSON="false",
        SFU_VOD_CLAIM_IDLE_S="1",
        SFU_VOD_POLL_S="1",
        **extra,
    )
    return env


def _worker(env: dict[str, str], *args: str) -> list[str]:
    return [sys.executable, "-m", "sfu", "vod-worker", *args]


async def _run_worker(env: dict[str, str], *args: str, timeout: float = 150) -> tuple[int, str]:
    """`sfu vod-worker ARGS` → (exit status, stderr: its logs)."""
    proc = await asyncio.create_subprocess_exec(
        *_worker(env, *args), env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


def _objects(data: Path) -> dict[str, tuple[bytes, int]]:
    """key -> (bytes, mtime_ns) of everything published under the session's prefix."""
    root = data / "objects"
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted((root / PREFIX).rglob("*"))
        if p.is_file()
    }


def _check_published(data: Path) -> dict[str, Any]:
    objects = _objects(data)
    meta = json.loads(objects[PREFIX + "metadata.json"][0])
    assert meta["session_id"] == SESSION_ID and meta["room_id"] == "room-vod"
    assert abs(meta["duration_s"] - SESSION_S) < 0.01
    assert {p["role"] for p in meta["participants"]} == {"mentor", "mentee"}
    assert {t["file"] for t in meta["tracks"]} == {
        f"tracks/{n}.mkv" for n in ("cam-a", "cam-b", "mic-a")
    }
    expected = {PREFIX + "master.m3u8", PREFIX + "metadata.json"}
    for rendition in meta["renditions"]:
        playlist = rendition["playlist"]
        expected.add(PREFIX + playlist)
        text = objects[PREFIX + playlist][0].decode()
        segments = [line for line in text.splitlines() if line and not line.startswith("#")]
        assert len(segments) == rendition["segments"] >= 1
        folder = playlist.rsplit("/", 1)[0]
        expected.update(f"{PREFIX}{folder}/{s}" for s in segments)
        with av.open(str(data / "objects" / PREFIX / playlist)) as c:
            video = audio = 0
            for frame in c.decode(c.streams.video[0], c.streams.audio[0]):
                if isinstance(frame, av.VideoFrame):
                    video += 1
                    assert (frame.width, frame.height) == (rendition["width"], rendition["height"])
                else:
                    audio += 1
            assert video >= SESSION_S * 20 and audio > 0
    assert set(objects) == expected  # complete, and nothing extra (no duplicates)
    with av.open(str(data / "objects" / PREFIX / "master.m3u8")) as c:
        assert sorted({s.height for s in c.streams.video}) == [360, 720]
    meta_file = data / "objects" / ".meta" / PREFIX / "master.m3u8"
    if meta_file.is_file():
        assert json.loads(meta_file.read_text())["content_type"] == "application/vnd.apple.mpegurl"
    return meta


async def _queue_empty(data: Path) -> None:
    queue = LocalJobQueue(data / "vod-queue")
    assert await queue.pending_count() == 0
    assert await queue.claim("probe", block_s=0) is None


async def test_worker_publishes_and_republishes_identically(
    tmp_path: Path, tracks_dir: Path
) -> None:
    received: list[tuple[bytes, str | None]] = []

    async def hook(request: aiohttp.web.Request) -> aiohttp.web.Response:
        received.append((await request.read(), request.headers.get(SIGNATURE_HEADER)))
        return aiohttp.web.Response(status=204)

    app = aiohttp.web.Application()
    app.router.add_post("/hook", hook)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    port = free_tcp_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        data = tmp_path / "data"
        _make_session(data / "recordings", tracks_dir)
        env = _env(data, SFU_WEBHOOK_URL=f"http://127.0.0.1:{port}/hook")
        await LocalJobQueue(data / "vod-queue").enqueue(SESSION_ID)
        code, err = await _run_worker(env, "--once", "--progress")
        assert code == 0, err
        assert "% done" in err and "100%" in err  # log lines and the bar
        meta = _check_published(data)
        await _queue_empty(data)
        # kept for SFU_RECORDINGS_RETENTION_H (24 h by default), marked published
        assert (data / "recordings" / SESSION_ID / "published.json").is_file()
        assert len(received) == 1
        body, signature = received[0]
        assert verify_signature(SECRET, body, signature)
        event = json.loads(body)
        assert event["event"] == "recording_ready"
        assert event["session_id"] == SESSION_ID and event["room"]["room_id"] == "room-vod"
        assert event["playlist"] == PREFIX + "master.m3u8"
        assert abs(event["duration_s"] - meta["duration_s"]) < 0.01

        first = _objects(data)
        await LocalJobQueue(data / "vod-queue").enqueue(SESSION_ID)
        code, err = await _run_worker(env, "--once")
        assert code == 0, err
        assert _objects(data) == first  # same bytes, and no object rewritten (same mtimes)
        await _queue_empty(data)
        assert len(received) == 2 and json.loads(received[1][0])["event"] == "recording_ready"
    finally:
        await runner.cleanup()


async def test_retention_zero_deletes_the_published_recording(
    tmp_path: Path, tracks_dir: Path
) -> None:
    """With SFU_RECORDINGS_RETENTION_H=0 the session's folder goes once its VOD is published;
    the same session queued again afterwards is acknowledged as published, not failed."""
    data = tmp_path / "data"
    _make_session(data / "recordings", tracks_dir)
    env = _env(data, SFU_RECORDINGS_RETENTION_H="0")
    await LocalJobQueue(data / "vod-queue").enqueue(SESSION_ID)
    code, err = await _run_worker(env, "--once")
    assert code == 0, err
    _check_published(data)
    assert not (data / "recordings" / SESSION_ID).exists()
    first = _objects(data)
    await LocalJobQueue(data / "vod-queue").enqueue(SESSION_ID)
    code, err = await _run_worker(env, "--once")
    assert code == 0, err
    assert "already published" in err
    assert _objects(data) == first
    await _queue_empty(data)


async def _kill_worker_mid_job(env: dict[str, str], consumer: str) -> None:
    """Start `sfu vod-worker --once` as `consumer`, SIGKILL it once it reports progress."""
    proc = subprocess.Popen(
        _worker(env, "--once", "--consumer", consumer),
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        seen = ""
        while time.monotonic() < deadline:  # readline returns at EOF, so this is bounded too
            line = await asyncio.to_thread(proc.stderr.readline)
            seen += line
            if "% done" in line or not line:
                break
        assert "% done" in seen, seen
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL


async def test_killed_worker_job_is_reclaimed(tmp_path: Path, tracks_dir: Path) -> None:
    data = tmp_path / "data"
    _make_session(data / "recordings", tracks_dir)
    env = _env(data)
    await LocalJobQueue(data / "vod-queue").enqueue(SESSION_ID)
    await _kill_worker_mid_job(env, "doomed")
    assert (data / "vod-queue/claimed/doomed" / f"{SESSION_ID}.json").is_file()
    assert not (data / "objects" / PREFIX / "master.m3u8").exists()
    await asyncio.sleep(1.5)  # SFU_VOD_CLAIM_IDLE_S=1: the claim is now stale
    code, err = await _run_worker(env, "--once", "--consumer", "rescuer")
    assert code == 0, err
    assert "took over" in err
    _check_published(data)
    await _queue_empty(data)
    assert not list((data / "vod-queue/claimed").glob("*/*.json"))
    assert not list((data / "vod-work").iterdir())  # the rescuer's scratch is gone


async def test_dead_job_is_listed_and_requeued_from_the_cli(
    tmp_path: Path, tracks_dir: Path
) -> None:
    data = tmp_path / "data"
    session = _make_session(data / "recordings", tracks_dir)
    manifest = (session / "manifest.json").read_bytes()
    (session / "manifest.json").write_text("{ not a manifest")  # every render of it fails
    env = _env(data, SFU_VOD_MAX_ATTEMPTS="1")
    await LocalJobQueue(data / "vod-queue").enqueue(SESSION_ID)
    code, err = await _run_worker(env, "--once")
    assert code == 1, err
    assert (data / "vod-queue/dead" / f"{SESSION_ID}.json").is_file()

    code, out, err = await _run_cli(env, "--list-dead")
    assert code == 0, err
    [line] = out.splitlines()
    dead = json.loads(line)
    assert dead["session_id"] == SESSION_ID and dead["attempts"] == 1
    assert dead["reason"] and dead["failed_at"].endswith("Z")

    code, out, err = await _run_cli(env, "--requeue", "no-such-session")
    assert code != 0
    assert "no dead job for session 'no-such-session'" in err
    code, out, err = await _run_cli(env, "--requeue", "../escape")
    assert code != 0 and "bad session id" in err

    (session / "manifest.json").write_bytes(manifest)  # the operator fixed the cause
    code, out, err = await _run_cli(env, "--requeue", SESSION_ID)
    assert code == 0, err
    code, out, err = await _run_cli(env, "--list-dead")
    assert code == 0 and out == "", (out, err)
    code, err = await _run_worker(env, "--once")
    assert code == 0, err
    _check_published(data)
    await _queue_empty(data)


async def _run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`sfu vod-worker ARGS` → (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *_worker(env, *args),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode(errors="replace")

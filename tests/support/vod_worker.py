"""The VOD worker's tests' common parts: a recorded session on disk, `sfu vod-worker` run as a
process (to completion, or killed mid-job), and checks of what it published."""

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

import av

SESSION_ID = "sess-vod-1"


SESSION_S = 8.0


SECRET = "vod-worker-test-secret-0123"


PREFIX = f"vod/sessions/{SESSION_ID}/"


def make_session(recordings: Path, tracks_dir: Path) -> Path:
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
            track_json("cam-a", "p-a", "video", "camera"),
            track_json("cam-b", "p-b", "video", "camera"),
            track_json("mic-a", "p-a", "audio", "microphone"),
        ],
    }  # fmt: skip
    (session / "manifest.json").write_text(json.dumps(manifest))
    return session


def worker_env(data: Path, **extra: str) -> dict[str, str]:
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


async def run_worker(env: dict[str, str], *args: str, timeout: float = 150) -> tuple[int, str]:
    """`sfu vod-worker ARGS` → (exit status, stderr: its logs)."""
    proc = await asyncio.create_subprocess_exec(
        *worker_command(env, *args), env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


def check_published(data: Path) -> dict[str, Any]:
    objects = published_objects(data)
    meta: dict[str, Any] = json.loads(objects[PREFIX + "metadata.json"][0])
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


async def kill_worker_mid_job(env: dict[str, str], consumer: str) -> None:
    """Start `sfu vod-worker --once` as `consumer`, SIGKILL it once it reports progress."""
    proc = subprocess.Popen(
        worker_command(env, "--once", "--consumer", consumer),
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


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`sfu vod-worker ARGS` → (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *worker_command(env, *args),
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


def track_json(tid: str, pid: str, kind: str, source: str) -> dict[str, Any]:
    return {
        "track_id": tid, "participant_id": pid, "kind": kind, "source": source,
        "codec": "opus" if kind == "audio" else "vp8", "file": f"tracks/{tid}.mkv",
        "start_s": 0.0, "end_s": SESSION_S, "segment": 0,
    }  # fmt: skip


def worker_command(env: dict[str, str], *args: str) -> list[str]:
    return [sys.executable, "-m", "sfu", "vod-worker", *args]


def published_objects(data: Path) -> dict[str, tuple[bytes, int]]:
    """key -> (bytes, mtime_ns) of everything published under the session's prefix."""
    root = data / "objects"
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted((root / PREFIX).rglob("*"))
        if p.is_file()
    }

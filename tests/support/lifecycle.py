"""Helpers for the lifecycle tests: a fake published session, and moto's S3 server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from sfu.storage import ObjectStore

SEGMENTS = ("720p/0.ts", "720p/1.ts", "360p/0.ts")
PLAYLISTS = ("720p/index.m3u8", "360p/index.m3u8")


def session_keys(session_id: str) -> list[str]:
    names = [*SEGMENTS, *PLAYLISTS, "metadata.json", "master.m3u8"]
    return [f"vod/sessions/{session_id}/{name}" for name in names]


async def publish_fake(
    store: ObjectStore,
    session_id: str,
    ended_at: str,
    *,
    mentor: str = "mentor-1",
    mentee: str = "mentee-1",
    master: bool = True,
    metadata: bool = True,
) -> None:
    """What the VOD worker publishes, in its order: segments, playlists and metadata, master."""
    prefix = f"vod/sessions/{session_id}/"
    for name in SEGMENTS:
        await store.put(prefix + name, b"ts" + name.encode(), content_type="video/mp2t")
    for name in PLAYLISTS:
        lines = ["#EXTM3U", "#EXTINF:2.0,", name.split("/")[1].replace("index.m3u8", "0.ts")]
        await store.put(prefix + name, "\n".join(lines).encode(), content_type="x/m3u8")
    if metadata:
        meta = {
            "session_id": session_id,
            "ended_at": ended_at,
            "participants": [
                {"user_id": mentor, "role": "mentor"},
                {"user_id": mentee, "role": "mentee"},
            ],
        }
        await store.put(prefix + "metadata.json", json.dumps(meta).encode(), content_type="a/j")
    if master:
        body = b"#EXTM3U\n720p/index.m3u8\n360p/index.m3u8\n"
        await store.put(prefix + "master.m3u8", body, content_type="x/m3u8")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's standalone S3 server on loopback; yields its endpoint URL."""
    port = _free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30.0
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto server exited with {process.returncode}")
            try:
                with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto server not answering on {endpoint}") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

"""`kill -9` of the SFU in the middle of a recorded session: after a restart the partial
session is found, queued, and published by the VOD worker, and nothing recorded is lost."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import av

from sfu.client.client import SfuClient
from tests.integration.conftest import LOOPBACK, camera, create_room, microphone
from tests.sfu_process import make_sfu

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
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sfu",
            "vod-worker",
            "--once",
            env=server.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(worker.communicate(), 240)
        assert worker.returncode == 0, output.decode()[-3000:]
    finally:
        server.stop()
    vod = data_dir / "objects" / "vod" / "sessions" / session_id
    metadata = json.loads((vod / "metadata.json").read_text())
    assert metadata["duration_s"] >= recorded_s - 2.0, (metadata["duration_s"], recorded_s)
    with av.open(str(vod / "360p" / "index.m3u8")) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= 25 * (recorded_s - 2.0)

"""`sfu vod-worker` end to end: local queue, file:// store, signed webhooks, a killed worker,
dead letters listed and requeued from the command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp.web

from sfu.recording.local_queue import LocalJobQueue
from sfu.testing.process import free_tcp_port
from sfu.webhooks.payload import SIGNATURE_HEADER, verify_signature
from tests.support.vod_worker import (
    PREFIX,
    SECRET,
    SESSION_ID,
    check_published,
    kill_worker_mid_job,
    make_session,
    published_objects,
    run_cli,
    run_worker,
    worker_env,
)


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
        make_session(data / "recordings", tracks_dir)
        env = worker_env(data, SFU_WEBHOOK_URL=f"http://127.0.0.1:{port}/hook")
        await LocalJobQueue(data / "vod-queue").enqueue(SESSION_ID)
        code, err = await run_worker(env, "--once", "--progress")
        assert code == 0, err
        assert "% done" in err and "100%" in err  # log lines and the bar
        meta = check_published(data)
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

        first = published_objects(data)
        await LocalJobQueue(data / "vod-queue").enqueue(SESSION_ID)
        code, err = await run_worker(env, "--once")
        assert code == 0, err
        assert published_objects(data) == first  # same bytes, and no object rewritten (same mtimes)
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
    make_session(data / "recordings", tracks_dir)
    env = worker_env(data, SFU_RECORDINGS_RETENTION_H="0")
    await LocalJobQueue(data / "vod-queue").enqueue(SESSION_ID)
    code, err = await run_worker(env, "--once")
    assert code == 0, err
    check_published(data)
    assert not (data / "recordings" / SESSION_ID).exists()
    first = published_objects(data)
    await LocalJobQueue(data / "vod-queue").enqueue(SESSION_ID)
    code, err = await run_worker(env, "--once")
    assert code == 0, err
    assert "already published" in err
    assert published_objects(data) == first
    await _queue_empty(data)


async def test_killed_worker_job_is_reclaimed(tmp_path: Path, tracks_dir: Path) -> None:
    data = tmp_path / "data"
    make_session(data / "recordings", tracks_dir)
    env = worker_env(data)
    await LocalJobQueue(data / "vod-queue").enqueue(SESSION_ID)
    await kill_worker_mid_job(env, "doomed")
    assert (data / "vod-queue/claimed/doomed" / f"{SESSION_ID}.json").is_file()
    assert not (data / "objects" / PREFIX / "master.m3u8").exists()
    await asyncio.sleep(1.5)  # SFU_VOD_CLAIM_IDLE_S=1: the claim is now stale
    code, err = await run_worker(env, "--once", "--consumer", "rescuer")
    assert code == 0, err
    assert "took over" in err
    check_published(data)
    await _queue_empty(data)
    assert not list((data / "vod-queue/claimed").glob("*/*.json"))
    assert not list((data / "vod-work").iterdir())  # the rescuer's scratch is gone


async def test_dead_job_is_listed_and_requeued_from_the_cli(
    tmp_path: Path, tracks_dir: Path
) -> None:
    data = tmp_path / "data"
    session = make_session(data / "recordings", tracks_dir)
    manifest = (session / "manifest.json").read_bytes()
    (session / "manifest.json").write_text("{ not a manifest")  # every render of it fails
    env = worker_env(data, SFU_VOD_MAX_ATTEMPTS="1")
    await LocalJobQueue(data / "vod-queue").enqueue(SESSION_ID)
    code, err = await run_worker(env, "--once")
    assert code == 1, err
    assert (data / "vod-queue/dead" / f"{SESSION_ID}.json").is_file()

    code, out, err = await run_cli(env, "--list-dead")
    assert code == 0, err
    [line] = out.splitlines()
    dead = json.loads(line)
    assert dead["session_id"] == SESSION_ID and dead["attempts"] == 1
    assert dead["reason"] and dead["failed_at"].endswith("Z")

    code, out, err = await run_cli(env, "--requeue", "no-such-session")
    assert code != 0
    assert "no dead job for session 'no-such-session'" in err
    code, out, err = await run_cli(env, "--requeue", "../escape")
    assert code != 0 and "bad session id" in err

    (session / "manifest.json").write_bytes(manifest)  # the operator fixed the cause
    code, out, err = await run_cli(env, "--requeue", SESSION_ID)
    assert code == 0, err
    code, out, err = await run_cli(env, "--list-dead")
    assert code == 0 and out == "", (out, err)
    code, err = await run_worker(env, "--once")
    assert code == 0, err
    check_published(data)
    await _queue_empty(data)

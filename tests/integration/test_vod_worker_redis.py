"""`sfu vod-worker` with REDIS_URL: a real redis-server, a worker SIGKILLed in the middle of a
job whose entry another worker takes over with XAUTOCLAIM, and the dead-letter commands."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp.web
import pytest
import redis.asyncio as aioredis

from sfu.recording.redis_queue import RedisJobQueue
from sfu.testing.process import free_tcp_port, redis_server
from tests.support.vod_worker import (
    PREFIX,
    SESSION_ID,
    check_published,
    kill_worker_mid_job,
    make_session,
    run_cli,
    run_worker,
    worker_env,
)

STREAM = "sfu:vod:jobs"  # the defaults `sfu vod-worker` uses with REDIS_URL
GROUP = "vod-workers"


@pytest.fixture
def redis_url() -> Iterator[str]:
    with redis_server() as port:
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture
async def webhooks() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """(url, events received): a webhook receiver on loopback."""
    received: list[dict[str, Any]] = []

    async def hook(request: aiohttp.web.Request) -> aiohttp.web.Response:
        received.append(json.loads(await request.read()))
        return aiohttp.web.Response(status=204)

    app = aiohttp.web.Application()
    app.router.add_post("/hook", hook)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    port = free_tcp_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/hook", received
    await runner.cleanup()


async def test_killed_worker_job_is_autoclaimed_from_redis(
    tmp_path: Path,
    tracks_dir: Path,
    redis_url: str,
    webhooks: tuple[str, list[dict[str, Any]]],
) -> None:
    hook_url, received = webhooks
    data = tmp_path / "data"
    make_session(data / "recordings", tracks_dir)
    env = worker_env(data, REDIS_URL=redis_url, SFU_WEBHOOK_URL=hook_url)
    queue = RedisJobQueue(redis_url)
    client: Any = aioredis.from_url(redis_url, decode_responses=True)
    try:
        await queue.enqueue(SESSION_ID)
        await kill_worker_mid_job(env, "doomed")

        pending = await client.xpending_range(STREAM, GROUP, min="-", max="+", count=10)
        assert [p["consumer"] for p in pending] == ["doomed"]  # in the PEL, not acked
        assert not (data / "objects" / PREFIX / "master.m3u8").exists()
        await asyncio.sleep(1.5)  # SFU_VOD_CLAIM_IDLE_S=1: the entry is now idle enough

        code, err = await run_worker(env, "--once", "--consumer", "rescuer")
        assert code == 0, err
        assert "took over" in err
        check_published(data)  # complete, and nothing extra (no duplicated objects)
        summary = await client.xpending(STREAM, GROUP)
        assert summary["pending"] == 0
        assert await client.xlen(STREAM) == 0
        assert not await client.exists(f"{STREAM}:session:{SESSION_ID}")
        assert await client.xlen(f"{STREAM}:dead") == 0
        assert await queue.state(SESSION_ID) == "done"
        assert [e["event"] for e in received] == ["recording_ready"]
        assert received[0]["session_id"] == SESSION_ID
        assert received[0]["playlist"] == PREFIX + "master.m3u8"
        assert not list((data / "vod-work").iterdir())  # the rescuer's scratch is gone
    finally:
        await client.aclose()
        await queue.close()


async def test_dead_letters_from_the_cli_with_redis(tmp_path: Path, redis_url: str) -> None:
    env = worker_env(tmp_path / "data", REDIS_URL=redis_url)
    queue = RedisJobQueue(redis_url, max_attempts=1)
    try:
        await queue.enqueue("sess-dead")
        job = await queue.claim("w", block_s=0.1)
        assert job is not None
        assert await queue.fail(job, "RenderError: no video track") is True

        code, out, err = await run_cli(env, "--list-dead")
        assert code == 0, err
        [dead] = [json.loads(line) for line in out.splitlines()]
        assert dead["session_id"] == "sess-dead" and dead["attempts"] == 1
        assert dead["reason"] == "RenderError: no video track"

        code, _, err = await run_cli(env, "--requeue", "sess-other")
        assert code != 0 and "no dead job for session 'sess-other'" in err
        code, _, err = await run_cli(env, "--requeue", "sess-dead")
        assert code == 0, err
        code, out, err = await run_cli(env, "--list-dead")
        assert code == 0 and out == "", (out, err)
        again = await queue.claim("w", block_s=0.1)
        assert again is not None and again.session_id == "sess-dead" and again.attempts == 0
    finally:
        await queue.close()

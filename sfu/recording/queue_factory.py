"""Which `JobQueue` the hand-off to the VOD worker uses: a Redis Stream when REDIS_URL is set,
else the local durable queue of files."""

from __future__ import annotations

from sfu.config.settings import VodSettings
from sfu.recording.job_queue import JobQueue
from sfu.recording.local_queue import LocalJobQueue
from sfu.recording.redis_queue import RedisJobQueue


def open_job_queue(redis_url: str | None, vod: VodSettings) -> JobQueue:
    """`RedisJobQueue` on `redis_url`, or `LocalJobQueue` under `vod.queue_root`."""
    if redis_url:
        return RedisJobQueue(redis_url, max_attempts=vod.max_attempts)
    return LocalJobQueue(vod.queue_root, max_attempts=vod.max_attempts)

"""`RedisJobQueue`: the VOD job queue as a Redis Stream with a consumer group.

Keys (stream `S`, default `sfu:vod:jobs`):
- `S`: the jobs (XADD, XREADGROUP, XACK, XAUTOCLAIM); an entry is acknowledged and deleted
  only once its VOD is published or it is dead.
- `S:session:<id>`: exists while the session has a job pending or claimed (enqueue is
  idempotent per session).
- `S:done`: hash session id → when its last job was acked.
- `S:dead`: the dead letters (session_id, job_id, attempts, reason, failed_at).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sfu.core.timestamps import rfc3339_from_s
from sfu.recording.job_queue import DEFAULT_MAX_ATTEMPTS, DeadJob, Job, JobState, safe_name

logger = logging.getLogger(__name__)

_PAGE = 100
_MAX_PAGES = 1000  # bounds every scan of a stream: 100 000 entries

# Enqueue only if no job for the session is pending or claimed (KEYS[2] marks one).
_ENQUEUE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
local id = redis.call('XADD', KEYS[1], '*', 'session_id', ARGV[1], 'attempts', '0')
redis.call('SET', KEYS[2], id)
return id
"""

# Requeue: delete the session's dead letters (ARGV[2..]); if another requeue deleted them
# first, -1. Then enqueue with attempts 0 unless a job is already queued (0) or not (1).
_REQUEUE = """
local removed = redis.call('XDEL', KEYS[3], unpack(ARGV, 2))
if removed == 0 then return -1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local id = redis.call('XADD', KEYS[1], '*', 'session_id', ARGV[1], 'attempts', '0')
redis.call('SET', KEYS[2], id)
return 1
"""


class RedisJobQueue:
    """Redis Stream + consumer group; entries stay pending (PEL) until acked."""

    def __init__(
        self,
        url: str,
        stream: str = "sfu:vod:jobs",
        group: str = "vod-workers",
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        import redis.asyncio as aioredis

        self.stream = stream
        self.group = group
        self.dead_stream = f"{stream}:dead"
        self.done_hash = f"{stream}:done"
        self.max_attempts = max_attempts
        self._redis: Any = aioredis.from_url(url, decode_responses=True, socket_timeout=30)
        self._group_ready = False

    def __repr__(self) -> str:
        return f"RedisJobQueue({self.stream!r}, {self.group!r})"

    def _marker(self, session_id: str) -> str:
        return f"{self.stream}:session:{session_id}"

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        from redis.exceptions import ResponseError

        try:
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    @staticmethod
    def _job(entry_id: str, fields: dict[str, str], extra_attempts: int = 0) -> Job:
        attempts = int(fields.get("attempts", "0")) + extra_attempts
        return Job(fields["session_id"], entry_id, attempts)

    async def enqueue(self, session_id: str) -> None:
        safe_name(session_id)
        await self._ensure_group()
        added = await self._redis.eval(
            _ENQUEUE, 2, self.stream, self._marker(session_id), session_id
        )
        if added:
            logger.info("vod queue: enqueued session %s as %s", session_id, added)

    async def claim(self, consumer: str, *, block_s: float) -> Job | None:
        await self._ensure_group()
        block_ms = max(1, int(block_s * 1000))
        reply = await self._redis.xreadgroup(
            self.group, consumer, {self.stream: ">"}, count=1, block=block_ms
        )
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                if fields and "session_id" in fields:
                    return self._job(entry_id, fields)
                await self._redis.xack(self.stream, self.group, entry_id)  # deleted entry
        return None

    async def ack(self, job: Job) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.group, job.job_id)
            pipe.xdel(self.stream, job.job_id)
            pipe.delete(self._marker(job.session_id))
            pipe.hset(self.done_hash, job.session_id, rfc3339_from_s(time.time()))
            await pipe.execute()

    async def fail(self, job: Job, reason: str) -> bool:
        attempts = job.attempts + 1
        dead = attempts >= self.max_attempts
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.group, job.job_id)
            pipe.xdel(self.stream, job.job_id)
            if dead:
                pipe.delete(self._marker(job.session_id))
                fields = {
                    "session_id": job.session_id,
                    "job_id": job.job_id,
                    "attempts": attempts,
                    "reason": reason,
                    "failed_at": rfc3339_from_s(time.time()),
                }
                pipe.xadd(self.dead_stream, fields)
            else:
                fields = {"session_id": job.session_id, "attempts": attempts}
                pipe.xadd(self.stream, fields)
            await pipe.execute()
        return dead

    async def heartbeat(self, job: Job, consumer: str) -> None:
        await self._redis.xclaim(self.stream, self.group, consumer, 0, [job.job_id], justid=True)

    async def reclaim(self, consumer: str, *, idle_s: float) -> list[Job]:
        await self._ensure_group()
        jobs: list[Job] = []
        start = "0-0"
        for _ in range(100):  # bounded: 100 pages of 100 entries
            reply = await self._redis.xautoclaim(
                self.stream, self.group, consumer, int(idle_s * 1000), start, count=100
            )
            start, entries = reply[0], reply[1]
            for entry_id, fields in entries:
                if not fields or "session_id" not in fields:
                    await self._redis.xack(self.stream, self.group, entry_id)
                    continue
                info = await self._redis.xpending_range(
                    self.stream, self.group, min=entry_id, max=entry_id, count=1
                )
                delivered = int(info[0]["times_delivered"]) if info else 2
                job = self._job(entry_id, fields, extra_attempts=max(1, delivered - 1))
                logger.warning("vod queue: took over job %s (%s)", entry_id, job.session_id)
                jobs.append(job)
            if start in ("0-0", "0"):
                break
        return jobs

    async def pending_count(self) -> int:
        await self._ensure_group()
        return int(await self._redis.xlen(self.stream))

    async def _dead_entries(self) -> list[tuple[str, dict[str, str]]]:
        """Every entry of the dead stream, oldest first (bounded scan)."""
        entries: list[tuple[str, dict[str, str]]] = []
        start = "-"
        for _ in range(_MAX_PAGES):
            page = await self._redis.xrange(self.dead_stream, min=start, max="+", count=_PAGE)
            entries.extend((entry_id, fields) for entry_id, fields in page)
            if len(page) < _PAGE:
                break
            start = "(" + page[-1][0]
        return entries

    async def state(self, session_id: str) -> JobState | None:
        safe_name(session_id)
        if await self._redis.exists(self._marker(session_id)):
            return "queued"
        if any(f.get("session_id") == session_id for _, f in await self._dead_entries()):
            return "dead"
        if await self._redis.hexists(self.done_hash, session_id):
            return "done"
        return None

    async def list_dead(self) -> list[DeadJob]:
        latest: dict[str, DeadJob] = {}
        for entry_id, fields in await self._dead_entries():
            session_id = fields.get("session_id")
            if not session_id:
                continue
            millis = int(entry_id.split("-", 1)[0])
            latest.pop(session_id, None)  # re-inserted: the order stays oldest first
            latest[session_id] = DeadJob(
                session_id=session_id,
                job_id=fields.get("job_id", entry_id),
                attempts=int(fields.get("attempts", "0")),
                reason=fields.get("reason", ""),
                failed_at=fields.get("failed_at") or rfc3339_from_s(millis / 1000),
            )
        return list(latest.values())

    async def requeue(self, session_id: str) -> bool:
        safe_name(session_id)
        await self._ensure_group()
        ids = [e for e, f in await self._dead_entries() if f.get("session_id") == session_id]
        if not ids:
            return False
        keys = (self.stream, self._marker(session_id), self.dead_stream)
        result = int(await self._redis.eval(_REQUEUE, 3, *keys, session_id, *ids))
        if result < 0:
            return False
        logger.info(
            "vod queue: requeued dead session %s%s", session_id, "" if result else " (was queued)"
        )
        return True

    async def close(self) -> None:
        await self._redis.aclose()

"""Hand-off of finished recording sessions to the VOD worker: a durable job queue.

Two implementations of one `JobQueue` protocol:

- `LocalJobQueue(dir)`, the embedded default: one small JSON file per job, moved between
  `pending/`, `claimed/<consumer>/`, `done/` and `dead/` by atomic renames. A claim is a
  rename, so two processes can never take the same job; a claim file not touched (heartbeat)
  for `idle_s` belongs to a worker that stopped and is taken over by `reclaim`.
- `RedisJobQueue(url)` when REDIS_URL is set: a Redis Stream with a consumer group (XADD,
  XREADGROUP, XACK, XAUTOCLAIM); an entry is acknowledged only once its VOD is published.

`Job.attempts` counts the deliveries before this one (0 on the first claim); `fail` puts a job
back while `attempts + 1 < max_attempts`, else marks it dead. `recover_unfinished` finalises
sessions a crash left in `status: "recording"` and enqueues them (called at SFU start).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sfu.recording.session import MANIFEST, SessionManifest, find_unfinished, rfc3339

if TYPE_CHECKING:
    from sfu.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 3
_POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class Job:
    session_id: str
    job_id: str
    attempts: int = 0


class JobQueue(Protocol):
    max_attempts: int

    async def enqueue(self, session_id: str) -> None:
        """Queue the session unless a job for it is already pending or claimed."""
        ...

    async def claim(self, consumer: str, *, block_s: float) -> Job | None:
        """Take the next pending job, waiting at most `block_s`; None if there is none."""
        ...

    async def ack(self, job: Job) -> None:
        """The job is done (its VOD is published): remove it for good."""
        ...

    async def fail(self, job: Job, reason: str) -> bool:
        """The attempt failed: back to pending, or dead after max_attempts. True if dead."""
        ...

    async def heartbeat(self, job: Job, consumer: str) -> None:
        """The claim is still alive (resets its idle time)."""
        ...

    async def reclaim(self, consumer: str, *, idle_s: float) -> list[Job]:
        """Take over jobs claimed by any consumer that has been silent for `idle_s`."""
        ...

    async def pending_count(self) -> int:
        """Jobs not done yet: pending or claimed."""
        ...

    async def close(self) -> None: ...


def _safe_name(session_id: str) -> str:
    if not session_id or "/" in session_id or "\\" in session_id or session_id.startswith("."):
        raise ValueError(f"bad session id {session_id!r}")
    return f"{session_id}.json"


class LocalJobQueue:
    """Durable queue in a local folder (one node, or a volume shared by its workers)."""

    def __init__(self, root: Path | str, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        self.root = Path(root)
        self.max_attempts = max_attempts
        self.pending = self.root / "pending"
        self.claimed = self.root / "claimed"
        self.done = self.root / "done"
        self.dead = self.root / "dead"
        self.tmp = self.root / "tmp"
        for folder in (self.pending, self.claimed, self.done, self.dead, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalJobQueue({str(self.root)!r})"

    # --- blocking helpers -----------------------------------------------------------------

    def _write_tmp(self, data: dict[str, Any]) -> Path:
        tmp = self.tmp / f"{uuid.uuid4().hex}.json"
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump(data, out)
            out.flush()
            os.fsync(out.fileno())
        return tmp

    @staticmethod
    def _read(path: Path) -> Job:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Job(str(data["session_id"]), str(data["job_id"]), int(data.get("attempts", 0)))

    def _claimed_paths(self, name: str) -> list[Path]:
        return [p for p in self.claimed.glob(f"*/{name}") if p.is_file()]

    def _enqueue(self, session_id: str) -> bool:
        name = _safe_name(session_id)
        if (self.pending / name).exists() or self._claimed_paths(name):
            return False
        tmp = self._write_tmp({"session_id": session_id, "job_id": uuid.uuid4().hex})
        try:
            os.link(tmp, self.pending / name)  # fails if a job appeared meanwhile
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (self.done / name).unlink()
        return True

    def _try_claim(self, consumer: str) -> Job | None:
        mine = self.claimed / _safe_name(consumer).removesuffix(".json")
        mine.mkdir(parents=True, exist_ok=True)
        candidates: list[tuple[float, Path]] = []
        for path in self.pending.glob("*.json"):
            with contextlib.suppress(FileNotFoundError):
                candidates.append((path.stat().st_mtime, path))
        for _, path in sorted(candidates):
            try:
                os.utime(path)  # fresh before it enters claimed/, so never seen as stale
                os.rename(path, mine / path.name)  # atomic: only one consumer wins
            except FileNotFoundError:
                continue
            try:
                return self._read(mine / path.name)
            except (OSError, ValueError, KeyError) as exc:
                logger.error("vod queue: unreadable job file %s: %s", path.name, exc)
                os.replace(mine / path.name, self.dead / path.name)
        return None

    def _find_claim(self, job: Job) -> Path | None:
        name = _safe_name(job.session_id)
        for path in self._claimed_paths(name):
            with contextlib.suppress(OSError, ValueError, KeyError):
                if self._read(path).job_id == job.job_id:
                    return path
        return None

    def _ack(self, job: Job) -> None:
        path = self._find_claim(job)
        if path is None:
            logger.warning("vod queue: ack of job %s (%s): not claimed", job.job_id, job.session_id)
            return
        os.replace(path, self.done / path.name)

    def _fail(self, job: Job, reason: str) -> bool:
        path = self._find_claim(job)
        attempts = job.attempts + 1
        dead = attempts >= self.max_attempts
        data = {"session_id": job.session_id, "job_id": job.job_id, "attempts": attempts}
        if dead:
            data["reason"] = reason
        tmp = self._write_tmp(data)
        target = (self.dead if dead else self.pending) / _safe_name(job.session_id)
        os.replace(tmp, target)
        if path is not None:
            path.unlink(missing_ok=True)
        return dead

    def _heartbeat(self, job: Job) -> None:
        path = self._find_claim(job)
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.utime(path)

    def _reclaim(self, consumer: str, idle_s: float) -> list[Job]:
        mine = self.claimed / _safe_name(consumer).removesuffix(".json")
        mine.mkdir(parents=True, exist_ok=True)
        cutoff = time.time() - idle_s
        taken: list[Job] = []
        for path in sorted(self.claimed.glob("*/*.json")):
            try:
                if path.stat().st_mtime > cutoff:
                    continue
                target = mine / path.name
                if path != target:
                    os.rename(path, target)  # atomic: one reclaimer wins
                job = self._read(target)
            except (FileNotFoundError, ValueError, KeyError):
                continue
            job = replace(job, attempts=job.attempts + 1)  # the stopped attempt counts
            tmp = self._write_tmp(
                {"session_id": job.session_id, "job_id": job.job_id, "attempts": job.attempts}
            )
            os.replace(tmp, target)
            logger.warning(
                "vod queue: took over job %s (%s) from %s",
                job.job_id,
                job.session_id,
                path.parent.name,
            )
            taken.append(job)
        return taken

    # --- JobQueue -------------------------------------------------------------------------

    async def enqueue(self, session_id: str) -> None:
        if await asyncio.to_thread(self._enqueue, session_id):
            logger.info("vod queue: enqueued session %s", session_id)

    async def claim(self, consumer: str, *, block_s: float) -> Job | None:
        deadline = time.monotonic() + max(0.0, block_s)
        while True:
            job = await asyncio.to_thread(self._try_claim, consumer)
            if job is not None:
                return job
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await asyncio.sleep(min(_POLL_S, left))

    async def ack(self, job: Job) -> None:
        await asyncio.to_thread(self._ack, job)

    async def fail(self, job: Job, reason: str) -> bool:
        return await asyncio.to_thread(self._fail, job, reason)

    async def heartbeat(self, job: Job, consumer: str) -> None:
        await asyncio.to_thread(self._heartbeat, job)

    async def reclaim(self, consumer: str, *, idle_s: float) -> list[Job]:
        return await asyncio.to_thread(self._reclaim, consumer, idle_s)

    async def pending_count(self) -> int:
        """Jobs not done yet: pending or claimed."""
        return sum(1 for _ in self.pending.glob("*.json")) + len(
            list(self.claimed.glob("*/*.json"))
        )

    async def close(self) -> None:
        return None


# Enqueue only if no job for the session is pending or claimed (KEYS[2] marks one).
_ENQUEUE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
local id = redis.call('XADD', KEYS[1], '*', 'session_id', ARGV[1], 'attempts', '0')
redis.call('SET', KEYS[2], id)
return id
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
        _safe_name(session_id)
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
            await pipe.execute()

    async def fail(self, job: Job, reason: str) -> bool:
        attempts = job.attempts + 1
        dead = attempts >= self.max_attempts
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.group, job.job_id)
            pipe.xdel(self.stream, job.job_id)
            if dead:
                pipe.delete(self._marker(job.session_id))
                fields = {"session_id": job.session_id, "attempts": attempts, "reason": reason}
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

    async def close(self) -> None:
        await self._redis.aclose()


def queue_from_settings(settings: Settings) -> JobQueue:
    """Redis Stream when REDIS_URL is set, else the local queue under vod_queue_root."""
    if settings.redis_url:
        return RedisJobQueue(settings.redis_url, max_attempts=settings.vod_max_attempts)
    return LocalJobQueue(settings.vod_queue_root, max_attempts=settings.vod_max_attempts)


def _parse_rfc3339(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def finalise_crashed(session_dir: Path) -> SessionManifest:
    """Close a manifest a crash left in "recording": open tracks end at their file's mtime,
    the session at the last track end (or the newest file's mtime if it has no tracks)."""
    path = session_dir / MANIFEST
    manifest = SessionManifest.read(path)
    started = _parse_rfc3339(manifest.started_at)
    last = 0.0
    for track in manifest.tracks:
        if track.end_s is None:
            try:
                mtime = (session_dir / track.file).stat().st_mtime
            except OSError:
                mtime = started + track.start_s
            track.end_s = round(max(track.start_s, mtime - started), 3)
        last = max(last, track.end_s)
    if not manifest.tracks:
        mtimes = [p.stat().st_mtime for p in session_dir.rglob("*") if p.is_file()]
        last = max(0.0, max(mtimes, default=started) - started)
    for participant in manifest.participants:
        if participant.left_at_s is None:
            participant.left_at_s = round(max(participant.joined_at_s, last), 3)
    manifest.ended_at = rfc3339(started + last)
    manifest.status = "finalised"
    manifest.write(path)
    return manifest


async def recover_unfinished(recordings_dir: Path | str, queue: JobQueue) -> list[str]:
    """Finalise and enqueue every session a crash left in "recording"; their ids."""
    root = Path(recordings_dir)
    recovered: list[str] = []
    for manifest in await asyncio.to_thread(find_unfinished, root):
        session_dir = root / manifest.session_id
        try:
            await asyncio.to_thread(finalise_crashed, session_dir)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.error("recording %s: cannot finalise after a crash: %s", session_dir, exc)
            continue
        await queue.enqueue(manifest.session_id)
        logger.warning("recording %s: finalised after a crash and enqueued", manifest.session_id)
        recovered.append(manifest.session_id)
    return recovered

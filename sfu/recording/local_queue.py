"""`LocalJobQueue(dir)`, the embedded default `JobQueue` (sfu/recording/job_queue.py) of the
hand-off to the VOD worker: one small JSON file per job, moved between `pending/`,
`claimed/<consumer>/`, `done/` and `dead/` by atomic renames. A claim is a rename, so two
processes can never take the same job; a claim file not touched (heartbeat) for `idle_s`
belongs to a worker that stopped and is taken over by `reclaim`.

`Job.attempts` counts the deliveries before this one (0 on the first claim); `fail` puts a job
back while `attempts + 1 < max_attempts`, else marks it dead (a dead letter an operator lists
with `list_dead` and puts back with `requeue`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from sfu.core.timestamps import rfc3339_from_s
from sfu.recording.job_queue import (
    DEFAULT_MAX_ATTEMPTS,
    DeadJob,
    Job,
    JobState,
    safe_name,
)

logger = logging.getLogger(__name__)

_POLL_S = 0.2
_REQUEUING = ".requeue-"
_REQUEUE_STALE_S = 60.0  # a dead letter taken by a requeue this long ago: that requeue died


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
        name = safe_name(session_id)
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
        mine = self.claimed / safe_name(consumer).removesuffix(".json")
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
        name = safe_name(job.session_id)
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
            data["failed_at"] = rfc3339_from_s(time.time())
        tmp = self._write_tmp(data)
        target = (self.dead if dead else self.pending) / safe_name(job.session_id)
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
        mine = self.claimed / safe_name(consumer).removesuffix(".json")
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

    def _state(self, session_id: str) -> JobState | None:
        name = safe_name(session_id)
        if (self.pending / name).exists() or self._claimed_paths(name):
            return "queued"
        if self._dead_paths(name):
            return "dead"
        if (self.done / name).exists():
            return "done"
        return None

    def _dead_paths(self, name: str) -> list[Path]:
        """The session's dead letter, and any a requeue took but did not finish (a crash)."""
        paths = [self.dead / name, *self.dead.glob(f"{name}{_REQUEUING}*")]
        return [p for p in paths if p.is_file()]

    def _dead_job(self, path: Path) -> DeadJob:
        session_id = path.name.split(".json", 1)[0]
        try:
            when = rfc3339_from_s(path.stat().st_mtime)
            data = json.loads(path.read_text(encoding="utf-8"))
            return DeadJob(
                session_id=str(data["session_id"]),
                job_id=str(data.get("job_id", "")),
                attempts=int(data.get("attempts", 0)),
                reason=str(data.get("reason", "")),
                failed_at=str(data.get("failed_at") or when),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # put here by _try_claim: the job file itself could not be read
            return DeadJob(session_id, "", 0, f"unreadable job file: {exc}", when)

    def _list_dead(self) -> list[DeadJob]:
        latest: dict[str, DeadJob] = {}
        for path in self.dead.iterdir():
            with contextlib.suppress(FileNotFoundError):
                job = self._dead_job(path)
                if job.session_id not in latest or latest[job.session_id].failed_at < job.failed_at:
                    latest[job.session_id] = job
        return sorted(latest.values(), key=lambda j: (j.failed_at, j.session_id))

    def _requeue(self, session_id: str) -> bool:
        """Take the dead letter by a rename (one requeue wins), enqueue, then delete it: a
        crash in between leaves it in dead/, still listed, and requeueable once stale."""
        name = safe_name(session_id)
        taken = self.dead / f"{name}{_REQUEUING}{uuid.uuid4().hex}"
        cutoff = time.time() - _REQUEUE_STALE_S
        for path in self._dead_paths(name):
            try:
                if path.name != name and path.stat().st_mtime > cutoff:
                    continue  # another requeue is in progress
                os.rename(path, taken)
                os.utime(taken)  # fresh: in progress (a rename keeps the mtime)
                break
            except FileNotFoundError:  # another requeue took it first
                continue
        else:
            return False
        self._enqueue(session_id)  # attempts start again at 0; a no-op if already queued
        taken.unlink(missing_ok=True)
        return True

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

    async def state(self, session_id: str) -> JobState | None:
        return await asyncio.to_thread(self._state, session_id)

    async def list_dead(self) -> list[DeadJob]:
        return await asyncio.to_thread(self._list_dead)

    async def requeue(self, session_id: str) -> bool:
        requeued = await asyncio.to_thread(self._requeue, session_id)
        if requeued:
            logger.info("vod queue: requeued dead session %s", session_id)
        return requeued

    async def close(self) -> None:
        return None

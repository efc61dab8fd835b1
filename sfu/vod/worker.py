"""`sfu vod-worker`: take recording sessions from the job queue, render and publish them.

One job: claim → `render_session` into a scratch folder (in a thread; it is CPU-bound, while
the event loop heartbeats the claim) → upload under `vod/sessions/{session_id}/` (segments
first, `master.m3u8` last, never replacing a published segment) → ack → `recording_ready`
webhook. A failed attempt goes back to the queue; after the last one, `recording_failed`.
`once`: reclaim stale jobs, process everything queued, return. Otherwise loop until SIGTERM
or SIGINT, finishing the job in hand first. `list_dead` and `requeue_dead` are the operator's
handles on dead letters (`sfu vod-worker --list-dead`, `--requeue SESSION_ID`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from sfu import metrics
from sfu.config.ladder import parse_ladder
from sfu.config.settings import Settings
from sfu.recording.job_queue import DeadJob, Job, JobQueue
from sfu.recording.manifest import MANIFEST, SessionManifest
from sfu.recording.queue_factory import open_job_queue
from sfu.storage import ObjectStore, store_from_settings
from sfu.storage.base import StorageError
from sfu.vod.publish import publish_dir, vod_prefix
from sfu.vod.render import render_session
from sfu.vod.retention import RecordingsRetention
from sfu.webhooks.sender import WebhookSender

logger = logging.getLogger(__name__)

BAR_WIDTH = 40


@dataclass(slots=True)
class WorkerStats:
    published: int = 0
    retried: int = 0
    failed: int = 0


class _ProgressBar:
    """A text bar on stderr, redrawn when the whole percent changes (called from a thread)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self._last = -1

    def __call__(self, fraction: float) -> None:
        percent = min(100, int(fraction * 100))
        if percent == self._last:
            return
        self._last = percent
        filled = BAR_WIDTH * percent // 100
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        end = "\n" if percent >= 100 else ""
        sys.stderr.write(f"\r{self.session_id} [{bar}] {percent:3d}%{end}")
        sys.stderr.flush()


class VodWorker:
    def __init__(
        self,
        settings: Settings,
        queue: JobQueue,
        store: ObjectStore,
        *,
        consumer: str,
        webhooks: WebhookSender | None = None,
        progress_bar: bool = False,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.store = store
        self.consumer = consumer
        self.webhooks = webhooks
        self.progress_bar = progress_bar
        self.stats = WorkerStats()
        self.stop = asyncio.Event()
        self.retention = RecordingsRetention(
            settings.recording.root, queue, settings.recording.retention_h * 3600
        )

    def _room(self, session_id: str) -> dict[str, Any]:
        try:
            manifest = SessionManifest.read(self.settings.recording.root / session_id / MANIFEST)
        except (OSError, ValueError, KeyError, TypeError):
            return {"room_id": ""}
        return {"room_id": manifest.room_id}

    async def _heartbeat(self, job: Job) -> None:
        interval = max(0.1, self.settings.vod.claim_idle_s / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.queue.heartbeat(job, self.consumer)
            except (OSError, ConnectionError) as exc:
                logger.warning("vod: heartbeat for job %s failed: %s", job.job_id, exc)

    async def process(self, job: Job) -> bool:
        """One job to its end (acked, back in the queue, or dead); True if published."""
        if job.attempts >= self.queue.max_attempts:
            await self._failed(job, f"gave up after {job.attempts} attempts")
            return False
        logger.info(
            "vod: job %s: session %s, attempt %d", job.job_id, job.session_id, job.attempts + 1
        )
        began = time.monotonic()
        session_dir = self.settings.recording.root / job.session_id
        if not session_dir.is_dir() and await self._already_published(job):
            return False
        scratch = self.settings.data_dir / "vod-work" / job.session_id
        if scratch.exists():  # left by a worker that died; the claim makes it ours now
            logger.info("vod: removing stale scratch folder %s", scratch)
            await asyncio.to_thread(shutil.rmtree, scratch, True)
        scratch.mkdir(parents=True)
        beat = asyncio.create_task(self._heartbeat(job), name=f"vod-heartbeat-{job.job_id}")
        try:
            progress = _ProgressBar(job.session_id) if self.progress_bar else None
            result = await asyncio.to_thread(
                render_session,
                session_dir,
                scratch,
                progress=progress,
                ladder=parse_ladder(self.settings.vod.ladder),
            )
            await publish_dir(self.store, job.session_id, scratch)
            await self.queue.ack(job)
        except Exception as exc:  # any failure of one job must leave the worker running
            logger.exception("vod: job %s (session %s) failed", job.job_id, job.session_id)
            dead = await self.queue.fail(job, f"{type(exc).__name__}: {exc}")
            if dead:
                await self._failed(job, f"{type(exc).__name__}: {exc}", already_dead=True)
            else:
                self.stats.retried += 1
                metrics.VOD_JOBS.labels("retried").inc()
            return False
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            await asyncio.to_thread(shutil.rmtree, scratch, True)
        elapsed = time.monotonic() - began
        room = self._room(job.session_id)  # before the recording may be deleted
        try:
            await self.retention.published(job.session_id)
        except OSError as exc:  # the VOD is out; the next sweep tries again
            logger.warning("vod: session %s: marking it published failed: %s", job.session_id, exc)
        metrics.VOD_RENDER_SECONDS.observe(elapsed)
        metrics.VOD_JOBS.labels("published").inc()
        self.stats.published += 1
        logger.info(
            "vod: session %s published (%.1f s of video in %.1f s)",
            job.session_id,
            result.duration_s,
            elapsed,
        )
        if self.webhooks is not None:
            self.webhooks.on_event(
                "recording_ready",
                room,
                {
                    "session_id": job.session_id,
                    "playlist": vod_prefix(job.session_id) + "master.m3u8",
                    "duration_s": round(result.duration_s, 3),
                },
            )
        return True

    async def _already_published(self, job: Job) -> bool:
        """A job for a session whose recording is gone but whose VOD is published (queued
        again after the retention time deleted its folder): acked, nothing rendered."""
        try:
            published = await self.store.exists(vod_prefix(job.session_id) + "master.m3u8")
        except (OSError, StorageError) as exc:
            logger.warning("vod: session %s: cannot check the store: %s", job.session_id, exc)
            return False
        if not published:
            return False
        await self.queue.ack(job)
        logger.info(
            "vod: session %s is already published and its recording deleted: nothing to do",
            job.session_id,
        )
        return True

    async def _sweep(self) -> None:
        try:
            await self.retention.sweep_if_due()
        except (OSError, ConnectionError, RedisError) as exc:
            logger.warning("vod: sweeping published recordings failed: %s", exc)

    async def _failed(self, job: Job, reason: str, *, already_dead: bool = False) -> None:
        if not already_dead:
            await self.queue.fail(job, reason)
        self.stats.failed += 1
        metrics.VOD_JOBS.labels("failed").inc()
        logger.error("vod: session %s failed for good: %s", job.session_id, reason)
        if self.webhooks is not None:
            self.webhooks.on_event(
                "recording_failed",
                self._room(job.session_id),
                {"session_id": job.session_id, "reason": reason, "attempts": job.attempts + 1},
            )

    async def _reclaim(self) -> None:
        for job in await self.queue.reclaim(self.consumer, idle_s=self.settings.vod.claim_idle_s):
            metrics.VOD_JOBS.labels("reclaimed").inc()
            if self.stop.is_set():
                await self.queue.fail(job, "worker stopping")  # hand it back at once
                continue
            await self.process(job)

    async def run(self, *, once: bool) -> WorkerStats:
        while not self.stop.is_set():
            await self._sweep()
            await self._reclaim()
            if self.stop.is_set():
                break
            job = await self.queue.claim(
                self.consumer, block_s=0.0 if once else self.settings.vod.poll_s
            )
            if job is not None:
                await self.process(job)
            elif once:
                break
        return self.stats


async def run_worker(
    settings: Settings, *, once: bool, consumer: str, progress_bar: bool = False
) -> int:
    """The `sfu vod-worker` process; exit status 0, or 1 if any job failed."""
    queue = open_job_queue(settings.redis_url, settings.vod)
    store = store_from_settings(settings)
    webhooks = (
        WebhookSender.from_settings(settings.webhooks, settings.jwt_secret)
        if settings.webhooks.url
        else None
    )
    if webhooks is not None:
        await webhooks.start()
    worker = VodWorker(
        settings, queue, store, consumer=consumer, webhooks=webhooks, progress_bar=progress_bar
    )
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, worker.stop.set)
    logger.info("vod worker %s started (%s, %s)%s", consumer, queue, store, " once" if once else "")
    try:
        stats = await worker.run(once=once)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        if webhooks is not None:
            await webhooks.close()
        await queue.close()
        await store.close()
    logger.info(
        "vod worker %s stopped: %d published, %d retried, %d failed",
        consumer,
        stats.published,
        stats.retried,
        stats.failed,
    )
    return 1 if stats.failed or stats.retried else 0


async def list_dead(settings: Settings) -> list[DeadJob]:
    """The queue's dead letters (`sfu vod-worker --list-dead`)."""
    queue = open_job_queue(settings.redis_url, settings.vod)
    try:
        return await queue.list_dead()
    finally:
        await queue.close()


def dead_json_lines(jobs: list[DeadJob]) -> str:
    return "".join(json.dumps(job.to_json(), sort_keys=True) + "\n" for job in jobs)


async def requeue_dead(settings: Settings, session_id: str) -> bool:
    """Put a dead session back in the queue with its attempts reset (`--requeue`); False if
    the queue has no dead job for it."""
    queue = open_job_queue(settings.redis_url, settings.vod)
    try:
        return await queue.requeue(session_id)
    finally:
        await queue.close()

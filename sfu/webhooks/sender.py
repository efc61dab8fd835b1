"""WebhookSender: a RoomEventListener that POSTs signed events to the backend.

`on_event` only builds the body and queues it (bounded, drop-oldest) and never awaits, so
rooms, signalling and media never wait on the backend. A fixed number of worker tasks
deliver over one aiohttp session; events of one room are sent one at a time, in order
(see PendingEvents). Failures are logged once per burst, never with the secret.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from sfu import metrics
from sfu.config.settings import WebhookSettings
from sfu.core.waits import wait_set
from sfu.webhooks.payload import SIGNATURE_HEADER, WebhookEvent, build_event
from sfu.webhooks.policy import Backoff, Verdict, classify, parse_retry_after
from sfu.webhooks.queue import PendingEvents

logger = logging.getLogger(__name__)

WORKERS = 4
FLUSH_TIMEOUT_S = 5.0
USER_AGENT = "cotept-sfu-webhooks"


def redact_url(url: str) -> str:
    """The URL without user info, query or fragment (they may carry credentials)."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return "<invalid url>"
    return str(parsed.with_user(None).with_query(None).with_fragment(None))


@dataclass(slots=True)
class SenderStats:
    """Counts for this sender (the Prometheus counter sums every sender of the process)."""

    queued: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    retried: int = 0
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class AttemptResult:
    status: int | None
    retry_after: float | None = None
    error: str | None = None


class WebhookSender:
    def __init__(
        self,
        url: str,
        secret: str,
        *,
        backoff: Backoff | None = None,
        timeout_s: float = 5.0,
        queue_size: int = 1000,
        workers: int = WORKERS,
        flush_timeout_s: float = FLUSH_TIMEOUT_S,
        rng: random.Random | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.url = url
        self._secret = secret
        self.backoff = backoff or Backoff()
        self.timeout_s = timeout_s
        self.workers = workers
        self.flush_timeout_s = flush_timeout_s
        self.stats = SenderStats()
        self._rng = rng or random.Random()
        self._pending = PendingEvents(queue_size)
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._drops_in_burst = 0
        self._failing = False
        self._failures_in_burst = 0

    @classmethod
    def from_settings(cls, webhooks: WebhookSettings, secret: str) -> WebhookSender:
        """A sender to `webhooks.url`, signing with `secret` (SFU_JWT_SECRET)."""
        if not webhooks.url:
            raise ValueError("webhook_url is not set")
        return cls(
            webhooks.url,
            secret,
            backoff=Backoff(max_attempts=webhooks.max_attempts),
            timeout_s=webhooks.timeout_s,
            queue_size=webhooks.queue_size,
        )

    def __repr__(self) -> str:
        return f"WebhookSender({redact_url(self.url)})"

    @property
    def queued(self) -> int:
        return len(self._pending)

    # -- RoomEventListener ----------------------------------------------------------------

    def on_event(self, event: str, room: dict[str, Any], fields: dict[str, Any]) -> None:
        """Queue the event; never blocks. Full queue: the oldest waiting event is dropped."""
        if self._closed:
            self._count_dropped(1, "closed")
            return
        item = build_event(self._secret, event, room, fields)
        self.stats.queued += 1
        dropped = self._pending.push(item)
        if dropped is not None:
            self._count_dropped(1, "full")
        metrics.WEBHOOK_QUEUE.set(len(self._pending))
        self._drained.clear()
        self._wakeup.set()

    # -- lifetime -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._session is not None:
            raise RuntimeError("WebhookSender already started")
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            connector=aiohttp.TCPConnector(limit=self.workers),
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
        )
        self._tasks = [
            asyncio.create_task(self._work(), name=f"webhook-worker-{i}")
            for i in range(self.workers)
        ]

    async def flush(self, timeout: float) -> bool:
        """Wait (at most `timeout` seconds) until nothing is queued or in flight."""
        if not self._tasks:
            return not self._pending
        return await wait_set(self._drained, timeout)

    async def close(self) -> None:
        """Deliver what is queued for up to `flush_timeout_s`, then stop; what is left is
        counted as dropped."""
        if self._closed:
            return
        flushed = await self.flush(self.flush_timeout_s)
        self._closed = True
        left = len(self._pending.clear()) + self._pending.in_flight
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._session is not None:
            await self._session.close()
        metrics.WEBHOOK_QUEUE.set(0)
        if left:
            self._count_dropped(left, "shutdown")
        if not flushed:
            logger.warning(
                "webhooks: %d events not delivered within %.1fs of shutdown",
                left,
                self.flush_timeout_s,
            )

    # -- delivery -------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            item = self._pending.take()
            if item is None:
                self._check_drained()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            metrics.WEBHOOK_QUEUE.set(len(self._pending))
            try:
                await self._deliver(item)
            except Exception:  # a bug here must not stop webhooks for good
                logger.exception("webhook %s %s: unexpected error", item.event, item.event_id)
                self._count_failed()
            finally:
                self._pending.done(item)
                self._check_drained()
                self._wakeup.set()

    def _check_drained(self) -> None:
        if not self._pending and self._pending.in_flight == 0:
            self._drained.set()

    async def _deliver(self, item: WebhookEvent) -> None:
        attempt = 0
        while True:
            attempt += 1
            self.stats.attempts += 1
            result = await self._post(item)
            verdict = classify(result.status)
            if verdict is Verdict.DELIVERED:
                self._count_delivered()
                return
            delay = self.backoff.next_delay(attempt, result.status, result.retry_after, self._rng)
            if delay is None:
                self._give_up(item, attempt, verdict, result)
                return
            self.stats.retried += 1
            metrics.WEBHOOK_EVENTS.labels("retried").inc()
            self._attempt_failed(item, attempt, result, delay)
            await asyncio.sleep(delay)

    async def _post(self, item: WebhookEvent) -> AttemptResult:
        if self._session is None:
            raise RuntimeError("WebhookSender not started")
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: item.signature}
        try:
            async with self._session.post(
                self.url, data=item.body, headers=headers, allow_redirects=False
            ) as response:
                return AttemptResult(
                    response.status, parse_retry_after(response.headers.get("Retry-After"))
                )
        except TimeoutError:
            return AttemptResult(None, error=f"no answer within {self.timeout_s}s")
        except (aiohttp.ClientError, OSError) as exc:
            return AttemptResult(None, error=f"{type(exc).__name__}: {exc}")

    # -- accounting and burst-limited logs --------------------------------------------------

    def _count_delivered(self) -> None:
        self.stats.delivered += 1
        metrics.WEBHOOK_EVENTS.labels("delivered").inc()
        if self._failing:
            logger.info(
                "webhook delivery to %s works again (%d events failed meanwhile)",
                redact_url(self.url),
                self._failures_in_burst,
            )
            self._failing = False
            self._failures_in_burst = 0
        if self._drops_in_burst and len(self._pending) <= self._pending.capacity // 2:
            logger.info(
                "webhook queue has room again (%d events were dropped)", self._drops_in_burst
            )
            self._drops_in_burst = 0

    def _count_failed(self) -> None:
        self.stats.failed += 1
        metrics.WEBHOOK_EVENTS.labels("failed").inc()
        self._failures_in_burst += 1

    def _attempt_failed(
        self, item: WebhookEvent, attempt: int, result: AttemptResult, delay: float
    ) -> None:
        """The first failure of a burst is a warning, the rest debug until one works."""
        log = logger.debug if self._failing else logger.warning
        log(
            "webhook %s %s (room %s) to %s, attempt %d: %s; retrying in %.2fs%s",
            item.event,
            item.event_id,
            item.room_id,
            redact_url(self.url),
            attempt,
            _describe(result),
            delay,
            "" if self._failing else " (further failures at debug level until one works)",
        )
        self._failing = True

    def _give_up(
        self, item: WebhookEvent, attempts: int, verdict: Verdict, result: AttemptResult
    ) -> None:
        first_loss = self._failures_in_burst == 0
        log = logger.warning if first_loss else logger.debug
        why = "rejected" if verdict is Verdict.REJECTED else f"given up after {attempts} attempts"
        log(
            "webhook %s %s (room %s) to %s %s: %s%s",
            item.event,
            item.event_id,
            item.room_id,
            redact_url(self.url),
            why,
            _describe(result),
            " (further lost events at debug level until one works)" if first_loss else "",
        )
        self._failing = True
        self._count_failed()

    def _count_dropped(self, count: int, why: str) -> None:
        self.stats.dropped += count
        metrics.WEBHOOK_EVENTS.labels("dropped").inc(count)
        if why == "full":
            if not self._drops_in_burst:
                logger.warning(
                    "webhook queue full (%d events): dropping the oldest until delivery catches up",
                    self._pending.capacity,
                )
            self._drops_in_burst += count
        elif why == "closed":
            logger.debug("webhook event after shutdown dropped")


def _describe(result: AttemptResult) -> str:
    if result.status is not None:
        return f"HTTP {result.status}"
    return result.error or "no answer"

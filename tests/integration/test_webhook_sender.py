"""Webhooks: signature, body, ids, back-off, retry classification, the bounded queue, and
delivery to a real aiohttp receiver on 127.0.0.1 (retries, hangs, order, shutdown)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import json
import logging
import os
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from sfu.app.contexts import webhooks_ctx
from sfu.app.keys import ROOM_EVENTS, SETTINGS, WEBHOOKS
from sfu.config.settings import SettingsError, load_settings
from sfu.rooms.events import RoomEvents
from sfu.webhooks.payload import (
    SIGNATURE_HEADER,
    WebhookEvent,
    build_event,
    encode_body,
    new_event_id,
    sign,
    verify_signature,
)
from sfu.webhooks.policy import Backoff, Verdict, classify, parse_retry_after
from sfu.webhooks.queue import PendingEvents
from sfu.webhooks.sender import WebhookSender
from tests.support.hook_server import serving_hooks

SECRET = "unit-test-webhook-secret-0123456789"
FAST = Backoff(base_s=0.01, max_s=0.05, max_attempts=6)


def _metric(result: str) -> float:
    return REGISTRY.get_sample_value("sfu_webhook_events_total", {"result": result}) or 0.0


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


# --- a local receiver -----------------------------------------------------------------------


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    at: float
    status: int


@dataclass
class Receiver:
    """Answers each POST with the next planned action: a status, or "hang" (no answer until
    the test ends). Without a plan: 200, or `default(request_number)` if set."""

    url: str = ""
    plan: list[int | str] = field(default_factory=list)
    default: Callable[[int], int] | None = None
    delay: Callable[[], float] = lambda: 0.0
    retry_after: str | None = None
    requests: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    concurrent: int = 0
    max_concurrent: int = 0

    @property
    def delivered(self) -> list[dict[str, object]]:
        return [json.loads(r.body) for r in self.requests if 200 <= r.status < 300]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            number = len(self.requests)
            action = self.plan.pop(0) if self.plan else (self.default or (lambda n: 200))(number)
            status = 0 if action == "hang" else int(action)
            self.requests.append(
                Received(body, dict(request.headers), asyncio.get_running_loop().time(), status)
            )
            if action == "hang":
                await asyncio.wait_for(self.release.wait(), 30)
                return web.Response(status=200)
            await asyncio.sleep(self.delay())
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return web.Response(status=status, headers=headers)
        finally:
            self.concurrent -= 1


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    async with serving_hooks(rec.handle) as url:
        rec.url = url
        try:
            yield rec
        finally:
            rec.release.set()  # a handler told to hang returns before the server stops


@pytest.fixture
async def senders() -> AsyncIterator[list[WebhookSender]]:
    """Senders a test starts; closed at the end whatever happens."""
    made: list[WebhookSender] = []
    yield made
    for sender in made:
        sender.flush_timeout_s = 0.1
        await sender.close()


async def started(
    made: list[WebhookSender], url: str, *, backoff: Backoff = FAST, timeout_s: float = 2.0
) -> WebhookSender:
    sender = WebhookSender(url, SECRET, backoff=backoff, timeout_s=timeout_s)
    made.append(sender)
    await sender.start()
    return sender


# --- pure parts -----------------------------------------------------------------------------


def test_signature_matches_an_independent_hmac() -> None:
    body = encode_body("room_started", "evt_1", "2024-01-01T00:00:00.000Z", {"room_id": "r"}, {})
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body) == expected
    assert verify_signature(SECRET, body, expected)
    assert not verify_signature(SECRET, body + b" ", expected)
    assert not verify_signature("another-secret-value", body, expected)
    assert not verify_signature(SECRET, body, None)
    assert not verify_signature(SECRET, body, expected.removeprefix("sha256="))
    assert not verify_signature(SECRET, body, "sha256=" + "0" * 64)


def test_body_shape_is_compact_stable_json() -> None:
    ms = 1_714_564_800_123
    room = {"room_id": "r1", "participants": [], "node_id": "n"}
    fields = {"participant_id": "p1", "track": {"kind": "video"}, "event": "spoofed"}
    event = build_event(SECRET, "track_published", room, fields, now_ms=ms)
    body = json.loads(event.body)
    assert set(body) == {"event", "id", "created_at", "room", "participant_id", "track"}
    assert body["event"] == "track_published" == event.event
    assert body["id"] == event.event_id and event.event_id.startswith("evt_")
    assert datetime.fromisoformat(body["created_at"]) == datetime.fromtimestamp(ms / 1000, UTC)
    assert body["created_at"] == "2024-05-01T12:00:00.123Z"
    assert body["room"] == room and event.room_id == "r1"
    assert body["participant_id"] == "p1" and body["track"] == {"kind": "video"}
    assert b" " not in event.body
    assert event.signature == sign(SECRET, event.body)
    again = encode_body("track_published", event.event_id, body["created_at"], room, fields)
    assert again == event.body


def test_event_ids_are_unique_and_sort_by_time() -> None:
    ids = {new_event_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    ordered = [new_event_id(ms) for ms in (1, 1_000, 1_700_000_000_000, 1_700_000_000_001)]
    assert ordered == sorted(ordered)
    assert all(len(i) == 30 for i in ordered)


def test_backoff_grows_exponentially_up_to_the_cap_with_bounded_jitter() -> None:
    backoff = Backoff(base_s=0.5, max_s=30.0, max_attempts=10, jitter=0.5)
    assert [backoff.cap(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    rng = random.Random(7)
    for attempt in range(1, 10):
        for _ in range(200):
            delay = backoff.delay(attempt, rng)
            assert backoff.cap(attempt) * 0.5 <= delay <= backoff.cap(attempt)
    assert backoff.cap(10_000) == 30.0


def test_backoff_stops_after_max_attempts() -> None:
    backoff = Backoff(base_s=0.5, max_s=30.0, max_attempts=6)
    delays = []
    attempt = 1
    while (delay := backoff.next_delay(attempt, 503)) is not None:
        delays.append(delay)
        attempt += 1
    assert attempt == 6 and len(delays) == 5
    assert sum(delays) <= 0.5 + 1 + 2 + 4 + 8
    assert Backoff(max_attempts=1).next_delay(1, None) is None
    for bad in ({"max_attempts": 0}, {"base_s": 2.0, "max_s": 1.0}, {"jitter": 1.5}):
        with pytest.raises(ValueError):
            Backoff(**bad)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (None, Verdict.RETRY),
        (200, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (408, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
        (599, Verdict.RETRY),
        (400, Verdict.REJECTED),
        (401, Verdict.REJECTED),
        (404, Verdict.REJECTED),
        (422, Verdict.REJECTED),
        (302, Verdict.REJECTED),
    ],
)
def test_retry_classification(status: int | None, verdict: Verdict) -> None:
    assert classify(status) is verdict
    retried = Backoff().next_delay(1, status)
    assert (retried is not None) == (verdict is Verdict.RETRY)


def test_retry_after_is_honoured_within_bounds() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=10), usegmt=True), now) == 10
    assert parse_retry_after(format_datetime(now - timedelta(seconds=10), usegmt=True), now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    backoff = Backoff(base_s=0.5, max_s=30, max_attempts=6, max_retry_after_s=60)
    assert backoff.next_delay(1, 429, retry_after=3) == 3
    assert backoff.next_delay(1, 503, retry_after=3600) == 60
    assert backoff.next_delay(6, 429, retry_after=3) is None
    other = backoff.next_delay(1, 500, retry_after=3600)
    assert other is not None and other <= 0.5


def _event(room: str, n: int) -> WebhookEvent:
    return WebhookEvent("e", f"{room}-{n}", room, str(n).encode(), "sig")


def test_pending_events_keep_room_order_and_let_other_rooms_pass() -> None:
    pending = PendingEvents(10)
    for item in (_event("a", 1), _event("a", 2), _event("b", 1), _event("a", 3)):
        assert pending.push(item) is None
    first = pending.take()
    assert first is not None and first.event_id == "a-1"
    second = pending.take()  # a-2 waits for a-1: room b goes ahead
    assert second is not None and second.event_id == "b-1"
    assert pending.take() is None
    pending.done(first)
    third = pending.take()
    assert third is not None and third.event_id == "a-2"
    assert pending.in_flight == 2 and len(pending) == 1


def test_pending_events_drop_the_oldest_when_full() -> None:
    pending = PendingEvents(3)
    dropped = [pending.push(_event("a", n)) for n in range(5)]
    assert [d.event_id if d else None for d in dropped] == [None, None, None, "a-0", "a-1"]
    assert [e.event_id for e in pending.clear()] == ["a-2", "a-3", "a-4"]


def test_webhook_settings_defaults_and_validation(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith("SFU_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.webhooks.url is None
    assert (settings.webhooks.max_attempts, settings.webhooks.timeout_s) == (6, 5.0)
    assert settings.webhooks.queue_size == 1000
    monkeypatch.setenv("SFU_WEBHOOK_URL", "https://backend.example/hooks")
    assert load_settings().webhooks.url == "https://backend.example/hooks"
    monkeypatch.setenv("SFU_WEBHOOK_URL", "")
    assert load_settings().webhooks.url is None
    monkeypatch.setenv("SFU_WEBHOOK_URL", "ftp://backend.example/hooks")
    with pytest.raises(SettingsError, match="SFU_WEBHOOK_URL"):
        load_settings()


# --- the sender -----------------------------------------------------------------------------


async def test_on_event_never_blocks_and_counts_what_the_full_queue_drops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert not inspect.iscoroutinefunction(WebhookSender.on_event)
    sender = WebhookSender("http://127.0.0.1:9/hook", SECRET, queue_size=100)  # not started
    before = _metric("dropped")
    with caplog.at_level(logging.WARNING, logger="sfu.webhooks"):
        for n in range(10_000):
            sender.on_event("participant_joined", {"room_id": "r"}, {"participant_id": str(n)})
    assert sender.queued == 100
    assert sender.stats.dropped == 9_900
    assert _metric("dropped") - before == 9_900
    full = [r for r in caplog.records if "queue full" in r.getMessage()]
    assert len(full) == 1
    await sender.close()  # never started: what is queued is dropped, nothing waits
    assert sender.stats.dropped == 10_000 and sender.queued == 0


async def test_503_twice_then_delivered_once(
    receiver: Receiver, senders: list[WebhookSender]
) -> None:
    receiver.plan = [503, 503, 200]
    before = {r: _metric(r) for r in ("delivered", "retried", "failed")}
    sender = await started(senders, receiver.url)
    sender.on_event("room_started", {"room_id": "r1"}, {})
    await wait_until(lambda: sender.stats.delivered == 1)
    assert len(receiver.requests) == 3 and sender.stats.attempts == 3
    assert len({(r.body, r.headers[SIGNATURE_HEADER]) for r in receiver.requests}) == 1
    sent = receiver.requests[0]
    assert sent.headers["Content-Type"] == "application/json"
    assert verify_signature(SECRET, sent.body, sent.headers[SIGNATURE_HEADER])
    assert (sender.stats.retried, sender.stats.failed) == (2, 0)
    assert _metric("delivered") - before["delivered"] == 1
    assert _metric("retried") - before["retried"] == 2
    assert _metric("failed") == before["failed"]


async def test_a_hanging_receiver_times_out_and_is_retried(
    receiver: Receiver, senders: list[WebhookSender]
) -> None:
    receiver.plan = ["hang", 200]
    sender = await started(senders, receiver.url, timeout_s=0.3)
    sender.on_event("room_started", {"room_id": "r1"}, {})
    await wait_until(lambda: sender.stats.delivered == 1)
    assert (sender.stats.attempts, sender.stats.retried) == (2, 1)
    assert receiver.requests[1].at - receiver.requests[0].at >= 0.29


async def test_4xx_is_not_retried(receiver: Receiver, senders: list[WebhookSender]) -> None:
    receiver.plan = [400]
    sender = await started(senders, receiver.url)
    sender.on_event("room_started", {"room_id": "r1"}, {})
    await wait_until(lambda: sender.stats.failed == 1)
    await asyncio.sleep(0.1)
    assert len(receiver.requests) == 1 and sender.stats.attempts == 1


async def test_429_retry_after_is_waited(receiver: Receiver, senders: list[WebhookSender]) -> None:
    receiver.plan = [429, 200]
    receiver.retry_after = "1"
    sender = await started(senders, receiver.url)
    sender.on_event("room_started", {"room_id": "r1"}, {})
    await wait_until(lambda: sender.stats.delivered == 1)
    assert receiver.requests[1].at - receiver.requests[0].at >= 0.95


async def test_gives_up_after_max_attempts(
    receiver: Receiver, senders: list[WebhookSender]
) -> None:
    receiver.default = lambda n: 500
    sender = await started(senders, receiver.url, backoff=Backoff(0.01, 0.02, max_attempts=3))
    sender.on_event("room_started", {"room_id": "r1"}, {})
    await wait_until(lambda: sender.stats.failed == 1)
    await asyncio.sleep(0.1)
    assert len(receiver.requests) == 3


async def test_many_events_keep_their_order_per_room(
    receiver: Receiver, senders: list[WebhookSender]
) -> None:
    rng = random.Random(3)
    receiver.delay = lambda: rng.random() * 0.004
    receiver.default = lambda n: 503 if n % 7 == 3 else 200
    sender = await started(senders, receiver.url)
    rooms = ("r1", "r2", "r3")
    for n in range(60):
        for room in rooms:
            sender.on_event("participant_joined", {"room_id": room}, {"participant_id": str(n)})
    await wait_until(lambda: sender.stats.delivered == 180, timeout=30)
    for room in rooms:
        order = [b["participant_id"] for b in receiver.delivered if b["room"] == {"room_id": room}]
        assert order == [str(n) for n in range(60)]
    assert sender.stats.retried > 0
    assert receiver.max_concurrent >= 2  # rooms do not wait on each other
    ids = [b["id"] for b in receiver.delivered]
    assert len(set(ids)) == len(ids)


async def test_close_flushes_what_is_queued(receiver: Receiver) -> None:
    sender = WebhookSender(receiver.url, SECRET, backoff=FAST)
    await sender.start()
    for n in range(20):
        sender.on_event("participant_left", {"room_id": f"r{n % 3}"}, {"reason": "left"})
    await sender.close()
    assert sender.stats.delivered == 20 and len(receiver.delivered) == 20
    sender.on_event("room_finished", {"room_id": "r0"}, {})
    assert sender.stats.dropped == 1 and sender.queued == 0


async def test_close_is_bounded_when_the_receiver_hangs(receiver: Receiver) -> None:
    receiver.default = lambda n: 200
    receiver.plan = ["hang"] * 10
    sender = WebhookSender(receiver.url, SECRET, timeout_s=10, flush_timeout_s=0.5, workers=1)
    await sender.start()
    for n in range(5):
        sender.on_event("room_finished", {"room_id": "r"}, {"n": n})
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    await sender.close()
    assert loop.time() - started_at < 2.0
    assert sender.stats.dropped == 5 and sender.stats.delivered == 0


async def test_a_refused_connection_is_retried_then_failed_without_logging_secrets(
    caplog: pytest.LogCaptureFixture, senders: list[WebhookSender]
) -> None:
    url = "http://hookuser:hook-password@127.0.0.1:9/hook?token=query-token"
    with caplog.at_level(logging.DEBUG, logger="sfu.webhooks"):
        sender = await started(senders, url, backoff=Backoff(0.01, 0.02, max_attempts=2))
        for n in range(3):
            sender.on_event("room_started", {"room_id": f"r{n}"}, {})
        await wait_until(lambda: sender.stats.failed == 3)
    assert sender.stats.attempts == 6
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # once per burst: the first failure, the first loss
    assert "retrying" in warnings[0] and "given up after 2 attempts" in warnings[1]
    for secret in (SECRET, "hook-password", "query-token"):
        assert secret not in caplog.text
        assert secret not in repr(sender)


# --- the app context ------------------------------------------------------------------------


async def test_webhooks_ctx_wires_the_sender_and_flushes_on_cleanup(receiver: Receiver) -> None:
    app = web.Application()
    app[SETTINGS] = load_settings(webhook_url=receiver.url, jwt_secret=SECRET)
    app[ROOM_EVENTS] = RoomEvents()
    context = webhooks_ctx(app)
    await anext(context)
    assert app[ROOM_EVENTS].listeners == [app[WEBHOOKS]]
    app[ROOM_EVENTS].emit("room_finished", {"room_id": "r9"}, reason="node_shutdown")
    with pytest.raises(StopAsyncIteration):
        await anext(context)
    (sent,) = receiver.requests
    assert verify_signature(SECRET, sent.body, sent.headers[SIGNATURE_HEADER])
    assert json.loads(sent.body)["reason"] == "node_shutdown"


async def test_webhooks_ctx_does_nothing_without_a_url() -> None:
    app = web.Application()
    app[SETTINGS] = load_settings(webhook_url=None, jwt_secret=SECRET)
    app[ROOM_EVENTS] = RoomEvents()
    context = webhooks_ctx(app)
    await anext(context)
    assert app[ROOM_EVENTS].listeners == [] and WEBHOOKS not in app
    with pytest.raises(StopAsyncIteration):
        await anext(context)

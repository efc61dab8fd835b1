"""`sfu analytics serve`: the Storage Analytics deployment.

`POST /vod/views` (service token) records one play; `GET /metrics` exports the storage figures
(sfu/analytics/exporter.py), refreshed every `METRICS_INTERVAL` seconds; `GET /health`. Errors
have the shape and codes of the SFU's REST API (docs/api.md §7)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sfu.analytics.exporter import UNKNOWN_TIER, StorageExporter
from sfu.analytics.plays import Play, PlayStore
from sfu.analytics.store import STORE_ERRORS, open_play_store
from sfu.api.error_mapping import http_status
from sfu.api.service_auth import require_service
from sfu.config.settings import Settings
from sfu.core.errors import (
    DependencyUnavailable,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    SfuError,
)
from sfu.storage import store_from_settings
from sfu.storage.base import ObjectNotFound, ObjectStore, StorageError, Tier
from sfu.storage.restores import request_session, state_path_for

logger = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
EXPORTER = web.AppKey("exporter", StorageExporter)
PLAYS: web.AppKey[PlayStore] = web.AppKey("plays")
OBJECTS: web.AppKey[ObjectStore] = web.AppKey("objects")
TASKS: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("tasks")

SESSION_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
MAX_USER_ID = 256
MAX_AHEAD_S = 3600.0
"""How far ahead of this clock an `at` may be (the backend's clock may run ahead a little)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: SfuError) -> web.Response:
    return web.json_response(error.to_body(), status=http_status(error.code))


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except SfuError as exc:
        return error_response(exc)
    except web.HTTPNotFound:
        return error_response(NotFound(f"no route {request.path}"))
    except web.HTTPMethodNotAllowed:
        return error_response(MethodNotAllowed(f"{request.method} not allowed here"))
    except web.HTTPRequestEntityTooLarge:
        return error_response(InvalidRequest("body too large"))
    except Exception:
        logger.exception("%s %s failed", request.method, request.path)
        return error_response(SfuError("internal error"))


def parse_view(body: Any, now: float) -> Play:
    """A `POST /vod/views` body as a Play; InvalidRequest saying what is wrong."""
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object")
    session_id = body.get("session_id")
    if not isinstance(session_id, str) or not SESSION_ID_RE.fullmatch(session_id):
        raise InvalidRequest("session_id must be a session id ([A-Za-z0-9_.-], up to 128)")
    user_id = body.get("user_id")
    if user_id is not None and (
        not isinstance(user_id, str) or not user_id or len(user_id) > MAX_USER_ID
    ):
        raise InvalidRequest(f"user_id must be a non-empty string of at most {MAX_USER_ID}")
    at = body.get("at")
    if at is None:
        return Play(session_id, now, user_id)
    if not isinstance(at, str):
        raise InvalidRequest("at must be an RFC 3339 date-time string")
    try:
        when = datetime.fromisoformat(at.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            "at must be an RFC 3339 date-time (e.g. 2026-11-03T10:00:00Z)"
        ) from None
    if when.tzinfo is None:
        raise InvalidRequest("at must carry a time zone offset (RFC 3339), e.g. Z")
    if when.timestamp() > now + MAX_AHEAD_S:
        raise InvalidRequest("at is in the future (plays are backfilled, not foretold)")
    return Play(session_id, when.timestamp(), user_id)


def _service(request: web.Request) -> None:
    require_service(request, request.app[SETTINGS].jwt_secret)


async def _tier(app: web.Application, session_id: str) -> Tier | None:
    tier = app[EXPORTER].tier_of(session_id)
    if tier is not None:
        return tier
    try:
        info = await app[OBJECTS].head(f"vod/sessions/{session_id}/master.m3u8")
    except ObjectNotFound:
        return None
    except StorageError as exc:
        logger.warning("cannot learn the tier of session %s: %s", session_id, exc)
        return None
    return info.tier


async def _restore(app: web.Application, session_id: str) -> None:
    """An archived session was played: ask the restore tracker for the whole session."""
    try:
        state_path = state_path_for(app[SETTINGS].data_dir)
        await request_session(app[OBJECTS], session_id, state_path)
    except (StorageError, OSError) as exc:
        logger.warning("restore of played archived session %s not asked: %s", session_id, exc)


async def post_view(request: web.Request) -> web.Response:
    _service(request)
    try:
        body = await request.json()
    except ValueError:
        raise InvalidRequest("body must be JSON") from None
    play = parse_view(body, time.time())
    app = request.app
    try:
        await app[PLAYS].record([play])
        summary = await app[PLAYS].summary(play.session_id, time.time())
    except STORE_ERRORS as exc:
        logger.warning("play of %s not recorded: %s", play.session_id, exc)
        raise DependencyUnavailable(f"play store unavailable: {exc}") from None
    tier = await _tier(app, play.session_id)
    app[EXPORTER].plays.labels(tier.value if tier else UNKNOWN_TIER).inc()
    if tier is Tier.ARCHIVE:
        task = asyncio.create_task(_restore(app, play.session_id))
        app[TASKS].add(task)
        task.add_done_callback(app[TASKS].discard)
    return web.json_response({"session_id": play.session_id, "plays": summary.plays}, status=202)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest(request.app[EXPORTER].registry))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


async def stores(app: web.Application) -> AsyncIterator[None]:
    app[PLAYS] = open_play_store(app[SETTINGS])
    app[OBJECTS] = store_from_settings(app[SETTINGS])
    tasks: set[asyncio.Task[None]] = set()
    app[TASKS] = tasks
    yield
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await app[PLAYS].close()
    await app[OBJECTS].close()


async def refresh_loop(app: web.Application) -> AsyncIterator[None]:
    exporter, interval = app[EXPORTER], app[SETTINGS].lifecycle.metrics_interval_s

    async def loop() -> None:
        while True:
            try:
                await exporter.refresh(app[OBJECTS], app[PLAYS])
            except (StorageError, OSError, ValueError) as exc:
                exporter.refresh_errors.inc()
                logger.warning("storage figures not refreshed: %s", exc)
            except Exception:
                exporter.refresh_errors.inc()
                logger.exception("storage figures not refreshed")
            await asyncio.sleep(interval)

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_analytics_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=16 * 1024)
    app[SETTINGS] = settings
    app[EXPORTER] = StorageExporter(settings)
    app.cleanup_ctx.append(stores)
    app.cleanup_ctx.append(refresh_loop)
    app.router.add_post("/vod/views", post_view)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app


def main(args: argparse.Namespace, settings: Settings) -> int:
    port = settings.lifecycle.analytics_port
    logger.info("storage analytics listening on %s:%d", settings.http.host, port)
    web.run_app(create_analytics_app(settings), host=settings.http.host, port=port, print=None)
    return 0

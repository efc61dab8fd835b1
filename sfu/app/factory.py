"""create_app(settings): routes, middlewares, and a cleanup_ctx for every resource."""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import WSCloseCode, web

from sfu.api.limits import ConcurrencyLimit
from sfu.api.middleware import make_middlewares
from sfu.api.rest import add_routes
from sfu.api.signalling import ws_handler
from sfu.app.keys import ALLOCATOR, EVENTS, MANAGER, READY_CHECKS, SETTINGS, SOCKETS, WS_PER_IP
from sfu.config.settings import Settings
from sfu.ice.connection import IceConfig
from sfu.ice.ports import PortAllocator
from sfu.ice.stun_server import ice_servers, stun_ctx
from sfu.media import seams
from sfu.recording.job_queue import JobQueue
from sfu.recording.leases import node_leases
from sfu.recording.queue_factory import open_job_queue
from sfu.recording.recovery import hand_off
from sfu.recording.session import RecordingSession
from sfu.recording.watch import RecordingWatch
from sfu.rooms.events import RoomEvents
from sfu.rooms.manager import RoomManager
from sfu.rooms.port_budget import PortBudget
from sfu.rooms.recording import OnFinalised
from sfu.webhooks import webhooks_ctx

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent.parent / "static"
VOD_QUEUE = web.AppKey("vod_queue", JobQueue)
VOD_HAND_OFF: web.AppKey[OnFinalised] = web.AppKey("vod_hand_off")


async def demo_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "demo.html")


async def _media(app: web.Application) -> AsyncIterator[None]:
    """Media ports and rooms: up before the first request, torn down after the last."""
    settings = app[SETTINGS]
    seams.install()
    allocator = PortAllocator(settings.media.port_min, settings.media.port_max)
    ice = IceConfig(
        addresses=settings.media.addresses,
        public_ip=settings.media.public_ip,
        allocator=allocator,
        use_ipv6=settings.media.ipv6,
    )
    app[ALLOCATOR] = allocator
    app[MANAGER] = RoomManager(
        events=app[EVENTS],
        ice_servers=ice_servers(settings),
        recordings_dir=settings.recording.root,
        on_recording_finalised=app[VOD_HAND_OFF],
        node_id=settings.node_id,
        ice=ice,
        max_rooms=settings.rooms.max_rooms,
        ice_timeout=settings.media.ice_timeout_s,
        keyframe_interval=settings.media.keyframe_min_interval_s,
        ports=PortBudget(
            capacity=allocator.capacity,
            sockets_per_connection=max(1, len(settings.media.addresses)),
        ),
    )
    logger.info(
        "media ports %d-%d on %s",
        settings.media.port_min,
        settings.media.port_max,
        ", ".join(settings.media.addresses) or "all non-loopback interfaces",
    )
    yield
    await app[MANAGER].close_all("node_shutdown")


async def _vod_queue(app: web.Application) -> AsyncIterator[None]:
    """The hand-off to the VOD pipeline: Redis Stream when REDIS_URL is set, else a local
    durable queue (recovery of what a crash left behind: `_recording_watch`)."""
    settings = app[SETTINGS]
    queue = open_job_queue(settings.redis_url, settings.vod)
    app[VOD_QUEUE] = queue
    root = settings.recording.root

    async def finalised(session_id: str) -> None:
        await hand_off(root, queue, session_id)

    app[VOD_HAND_OFF] = finalised
    yield
    await queue.close()


def _live_sessions(manager: RoomManager) -> list[RecordingSession]:
    live = (r.recording.live_session for r in manager.rooms.values() if r.recording is not None)
    return [s for s in live if s is not None]


async def _recording_watch(app: web.Application) -> AsyncIterator[None]:
    """At start, sessions a crash left in "recording" are finalised and queued, and finalised
    sessions a crash kept from being queued (no `queued.json`) are queued; then heartbeats for
    the sessions recorded here and adoption of sessions other nodes abandoned (a shared
    recordings volume), see sfu/recording/watch.py."""
    settings = app[SETTINGS]
    manager = app[MANAGER]
    leases = node_leases(settings.redis_url, settings.node_id, settings.recording.orphan_s)
    watch = RecordingWatch(
        settings.recording.root,
        app[VOD_QUEUE],
        lambda: _live_sessions(manager),
        node_id=settings.node_id,
        orphan_s=settings.recording.orphan_s,
        leases=leases,
    )
    try:
        recovered, unqueued = await watch.recover_at_start()
        if recovered:
            logger.info("recovered %d unfinished recordings: %s", len(recovered), recovered)
        if unqueued:
            logger.info("queued %d finalised recordings never queued: %s", len(unqueued), unqueued)
        watch.start()
        yield
        await watch.close()
    finally:
        await leases.close()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    """When REDIS_URL is set, /ready reports 503 while Redis does not answer."""
    url = app[SETTINGS].redis_url
    if not url:
        yield
        return
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    client = aioredis.from_url(url, socket_connect_timeout=2, socket_timeout=2)

    async def check() -> str | None:
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            return f"redis unreachable: {exc}"
        return None

    app[READY_CHECKS].append(check)
    yield
    await client.aclose()


async def _close_sockets(app: web.Application) -> None:
    sockets = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[SETTINGS] = settings
    app.middlewares.extend(make_middlewares(app))
    app[WS_PER_IP] = ConcurrencyLimit(settings.limits.ws_per_ip)
    app[SOCKETS] = weakref.WeakSet()
    app[READY_CHECKS] = []
    app[EVENTS] = RoomEvents()
    # Webhooks start before the media (rooms) and stop after them, so room_finished of rooms
    # closed at shutdown is still delivered.
    app.cleanup_ctx.append(webhooks_ctx)
    app.cleanup_ctx.append(_vod_queue)
    app.cleanup_ctx.append(_media)
    app.cleanup_ctx.append(_recording_watch)
    app.cleanup_ctx.append(_redis)
    app.cleanup_ctx.append(stun_ctx)
    app.on_shutdown.append(_close_sockets)
    add_routes(app)
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/demo", demo_page)
    app.router.add_static("/static", STATIC_DIR)
    return app

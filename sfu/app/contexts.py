"""Every resource the SFU process holds, as aiohttp cleanup contexts (start-up before `yield`,
clean-up after) and shutdown hooks. `create_app` (sfu/app/factory.py) registers them in order;
clean-up runs in reverse."""

from __future__ import annotations

import importlib.metadata
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSCloseCode, web
from aioice.ice import get_host_addresses

from sfu.app.keys import ALLOCATOR, EDGE, ROOM_EVENTS, SETTINGS, VOD_HAND_OFF, VOD_QUEUE, WEBHOOKS
from sfu.background import spawn
from sfu.cluster.directory import LocalDirectory, NodeIdentity, RoomDirectory
from sfu.cluster.node_client import NodeClient
from sfu.cluster.node_info import NodeLoad
from sfu.cluster.redis_directory import RedisDirectory
from sfu.config.settings import DEV_JWT_SECRET, Settings
from sfu.core.timestamps import rfc3339_from_s
from sfu.ice.connection import IceConfig
from sfu.ice.ports import PortAllocator
from sfu.ice.stun_server import ice_servers, open_stun_server
from sfu.ice.udp_mux import UdpMux
from sfu.media import seams
from sfu.media.options import MediaOptions
from sfu.recording.leases import node_leases
from sfu.recording.queue_factory import open_job_queue
from sfu.recording.recovery import hand_off
from sfu.recording.session import RecordingSession
from sfu.recording.watch import RecordingWatch
from sfu.rooms.manager import RoomManager
from sfu.rooms.port_budget import PortBudget
from sfu.webhooks.sender import WebhookSender, redact_url

logger = logging.getLogger(__name__)


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """The webhook sender, when `webhook_url` is set. Registered before the media context, so
    it is torn down after it: the `room_finished` events the media context emits while
    closing rooms are still queued and flushed."""
    settings = app[SETTINGS]
    if not settings.webhooks.url:
        yield
        return
    sender = WebhookSender.from_settings(settings.webhooks, settings.jwt_secret)
    if settings.jwt_secret == DEV_JWT_SECRET:
        logger.warning("webhooks are signed with the development secret; set SFU_JWT_SECRET")
    await sender.start()
    app[WEBHOOKS] = sender
    app[ROOM_EVENTS].add(sender)
    logger.info(
        "webhooks to %s (queue %d, %d attempts, %.1fs timeout)",
        redact_url(settings.webhooks.url),
        settings.webhooks.queue_size,
        settings.webhooks.max_attempts,
        settings.webhooks.timeout_s,
    )
    yield
    await sender.close()


async def vod_queue(app: web.Application) -> AsyncIterator[None]:
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


async def media(app: web.Application) -> AsyncIterator[None]:
    """Media ports and rooms: up before the first request, torn down after the last."""
    settings = app[SETTINGS]
    seams.install()
    allocator = PortAllocator(settings.media.port_min, settings.media.port_max)
    mux: UdpMux | None = None
    if settings.media.udp_port is not None:
        addresses = settings.media.addresses or tuple(
            get_host_addresses(use_ipv4=True, use_ipv6=settings.media.ipv6)
        )
        mux = UdpMux(settings.media.udp_port, addresses)
        await mux.open()  # OSError names the port and address: the node does not start
    ice = IceConfig(
        addresses=settings.media.addresses,
        public_ip=settings.media.public_ip,
        allocator=allocator,
        use_ipv6=settings.media.ipv6,
        udp_mux=mux,
    )
    app[ALLOCATOR] = allocator
    app[EDGE].rooms = RoomManager(
        events=app[ROOM_EVENTS],
        ice_servers=ice_servers(settings.stun),
        recordings_dir=settings.recording.root,
        on_recording_finalised=app[VOD_HAND_OFF],
        node_id=settings.node_id,
        media=MediaOptions(
            ice=ice,
            ice_timeout_s=settings.media.ice_timeout_s,
            keyframe_min_interval_s=settings.media.keyframe_min_interval_s,
        ),
        max_rooms=settings.rooms.max_rooms,
        ports=PortBudget(
            capacity=None if mux is not None else allocator.capacity,
            sockets_per_connection=max(1, len(settings.media.addresses)),
        ),
    )
    if mux is not None:
        logger.info("media on one UDP port, %d on %s", mux.port, ", ".join(mux.addresses))
    else:
        logger.info(
            "media ports %d-%d on %s",
            settings.media.port_min,
            settings.media.port_max,
            ", ".join(settings.media.addresses) or "all non-loopback interfaces",
        )
    try:
        yield
        await app[EDGE].manager.close_all("node_shutdown")
    finally:
        if mux is not None:
            mux.close()


def live_sessions(manager: RoomManager) -> list[RecordingSession]:
    live = (r.recording.live_session for r in manager.rooms.values() if r.recording is not None)
    return [s for s in live if s is not None]


async def recording_watch(app: web.Application) -> AsyncIterator[None]:
    """At start, sessions a crash left in "recording" are finalised and queued, and finalised
    sessions a crash kept from being queued (no `queued.json`) are queued; then heartbeats for
    the sessions recorded here and adoption of sessions other nodes abandoned (a shared
    recordings volume), see sfu/recording/watch.py."""
    settings = app[SETTINGS]
    manager = app[EDGE].manager
    leases = node_leases(settings.redis_url, settings.node_id, settings.recording.orphan_s)
    watch = RecordingWatch(
        settings.recording.root,
        app[VOD_QUEUE],
        lambda: live_sessions(manager),
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


async def redis(app: web.Application) -> AsyncIterator[None]:
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

    app[EDGE].ready_checks.append(check)
    yield
    await client.aclose()


def _identity(settings: Settings) -> NodeIdentity:
    host = settings.http.host
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    internal = settings.cluster.node_url or f"http://{host}:{settings.http.port}"
    public = settings.http.public_url
    ws = None
    if public:
        base = public.rstrip("/")
        ws = ("wss://" + base[8:] if base.startswith("https://") else "ws://" + base[7:]) + "/ws"
    media_address = settings.media.public_ip or next(iter(settings.media.addresses), "")
    try:
        version = importlib.metadata.version("cotept-sfu")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return NodeIdentity(
        node_id=settings.node_id,
        internal_url=internal.rstrip("/"),
        ws_url=ws,
        media_address=media_address,
        version=version,
        started_at=rfc3339_from_s(time.time()),
    )


class _ReleaseClosedRooms:
    """A room event listener: a room that finished leaves the directory."""

    def __init__(self, directory: RoomDirectory) -> None:
        self.directory = directory

    def on_event(self, event: str, room: dict[str, Any], fields: dict[str, Any]) -> None:
        if event == "room_finished" and fields.get("reason") != "node_lost":
            spawn(self.directory.release(str(room.get("room_id"))))


async def cluster(app: web.Application) -> AsyncIterator[None]:
    """The room directory: this node alone without REDIS_URL, else the nodes sharing Redis
    (sfu/cluster/). Registered after the media context, so its rooms exist first."""
    settings = app[SETTINGS]
    edge = app[EDGE]
    events = app[ROOM_EVENTS]

    def load() -> NodeLoad:
        manager = edge.manager
        rooms = {rid: r.to_json() for rid, r in manager.rooms.items() if not r.closed}
        return NodeLoad(
            rooms=rooms,
            participants=sum(len(r.participants) for r in manager.rooms.values()),
            free_ports=manager.ports.free,
            room_slots=max(0, manager.max_rooms - len(manager.rooms)),
            draining=manager.draining,
        )

    def room_lost(room: dict[str, Any]) -> None:
        events.emit("room_finished", room, reason="node_lost")

    identity = _identity(settings)
    directory: RoomDirectory
    if settings.redis_url:
        directory = RedisDirectory(
            settings.redis_url,
            identity,
            load,
            heartbeat_s=settings.cluster.heartbeat_s,
            node_ttl_s=settings.cluster.node_ttl_s,
            on_room_lost=room_lost,
        )
        logger.info("cluster node %s, reached at %s", identity.node_id, identity.internal_url)
    else:
        directory = LocalDirectory(identity, load)
    edge.cluster = directory
    edge.peers = NodeClient(settings.jwt_secret, identity.node_id)
    events.add(_ReleaseClosedRooms(directory))
    await directory.start()
    yield
    await directory.close()
    await edge.node_client.close()


async def stun_ctx(app: web.Application) -> AsyncIterator[None]:
    """The embedded STUN responder while the app runs (nothing when `stun_enabled` is false).
    A port that cannot be bound stops start-up."""
    server = await open_stun_server(app[SETTINGS].stun, time.monotonic())
    try:
        yield
    finally:
        if server is not None:
            server.close()


async def close_sockets(app: web.Application) -> None:
    """on_shutdown: sockets still open are closed with 1001 (going away)."""
    sockets = app[EDGE].sockets
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

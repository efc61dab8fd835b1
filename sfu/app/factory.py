"""create_app(settings): the app composed of the edge's routes and middlewares and the
resources of sfu/app/contexts.py. Nothing is started here; start-up is the contexts'."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from sfu.api import debug
from sfu.api.edge_state import EdgeState
from sfu.api.middleware import make_middlewares
from sfu.api.routes import add_routes
from sfu.api.signalling import make_ws_handler
from sfu.app import contexts
from sfu.app.keys import EDGE, ROOM_EVENTS, SETTINGS
from sfu.config.settings import Settings
from sfu.rooms.events import RoomEvents

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent.parent / "static"


async def demo_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "demo.html")


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    edge = EdgeState.from_settings(settings)
    app[SETTINGS] = settings
    app[EDGE] = edge
    app[ROOM_EVENTS] = RoomEvents()
    app.middlewares.extend(make_middlewares(edge))
    # Webhooks start before the media (rooms) and stop after them, so room_finished of rooms
    # closed at shutdown is still delivered.
    app.cleanup_ctx.append(contexts.webhooks_ctx)
    app.cleanup_ctx.append(contexts.vod_queue)
    app.cleanup_ctx.append(contexts.media)
    app.cleanup_ctx.append(contexts.cluster)
    app.cleanup_ctx.append(contexts.recording_watch)
    app.cleanup_ctx.append(contexts.redis)
    app.cleanup_ctx.append(contexts.stun_ctx)
    app.on_shutdown.append(contexts.close_sockets)
    add_routes(app, edge)
    if settings.http.debug_endpoints:
        app.router.add_get("/debug/memory", debug.make_memory_handler(settings.jwt_secret))
    app.router.add_get("/ws", make_ws_handler(edge))
    app.router.add_get("/demo", demo_page)
    app.router.add_static("/static", STATIC_DIR)
    return app

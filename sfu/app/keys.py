"""Typed application keys for the state the aiohttp app holds."""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable

from aiohttp import web

from sfu.api.limits import ConcurrencyLimit
from sfu.config.settings import Settings
from sfu.core.token_bucket import BucketTable
from sfu.ice.ports import PortAllocator
from sfu.rooms.events import RoomEvents
from sfu.rooms.manager import RoomManager

SETTINGS = web.AppKey("settings", Settings)
MANAGER = web.AppKey("manager", RoomManager)
EVENTS = web.AppKey("events", RoomEvents)
ALLOCATOR = web.AppKey("allocator", PortAllocator)
LIMITER = web.AppKey("limiter", BucketTable)
"""Per-IP request rate: REST requests and WebSocket handshakes."""
WS_PER_IP = web.AppKey("ws_per_ip", ConcurrencyLimit)
SOCKETS = web.AppKey[weakref.WeakSet[web.WebSocketResponse]]("sockets")

ReadyCheck = Callable[[], Awaitable[str | None]]
READY_CHECKS = web.AppKey[list[ReadyCheck]]("ready_checks")
"""Each returns None when its dependency is fine, or what is wrong."""

"""What the HTTP edge works with, handed to its handlers and middlewares by the app's wiring
(sfu/app/), so the edge never reads application state by key."""

from __future__ import annotations

import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from sfu.api.limits import ConcurrencyLimit
from sfu.config.settings import Settings
from sfu.core.token_bucket import BucketTable
from sfu.rooms.manager import RoomManager

ReadyCheck = Callable[[], Awaitable[str | None]]
"""Returns None when its dependency is fine, or what is wrong."""


@dataclass(slots=True)
class EdgeState:
    settings: Settings
    limiter: BucketTable
    """Per-IP request rate: REST requests and WebSocket handshakes."""
    ws_per_ip: ConcurrencyLimit
    sockets: weakref.WeakSet[web.WebSocketResponse] = field(default_factory=weakref.WeakSet)
    ready_checks: list[ReadyCheck] = field(default_factory=list)
    rooms: RoomManager | None = None
    """Set by the media context once the media ports are up; None before start-up."""
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeState:
        limits = settings.limits
        return cls(
            settings=settings,
            limiter=BucketTable(limits.rest_rate_per_ip, limits.rest_burst_per_ip),
            ws_per_ip=ConcurrencyLimit(limits.ws_per_ip),
        )

    @property
    def manager(self) -> RoomManager:
        if self.rooms is None:
            raise RuntimeError("the room manager is not started yet")
        return self.rooms

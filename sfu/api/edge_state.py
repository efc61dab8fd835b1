"""What the HTTP edge works with, handed to its handlers and middlewares by the app's wiring
(sfu/app/), so the edge never reads application state by key."""

from __future__ import annotations

import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from sfu.api.limits import ConcurrencyLimit
from sfu.cluster.directory import RoomDirectory
from sfu.cluster.node_client import NodeClient
from sfu.cluster.node_token import HEADER, verify_node_token
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
    cluster: RoomDirectory | None = None
    """Set by the cluster context: the room directory (this node alone without Redis)."""
    peers: NodeClient | None = None
    """Set by the cluster context: how this node reaches the others."""
    clock: Callable[[], float] = time.monotonic
    relays: int = 0
    """Participants' sockets this node relays to another node now (a draining node waits
    for them as for its own rooms)."""

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

    @property
    def directory(self) -> RoomDirectory:
        if self.cluster is None:
            raise RuntimeError("the room directory is not started yet")
        return self.cluster

    @property
    def node_client(self) -> NodeClient:
        if self.peers is None:
            raise RuntimeError("the node client is not started yet")
        return self.peers

    def internal_node(self, request: web.Request) -> str | None:
        """The id of the node that sent this request over an internal hop (a valid node
        token), or None for a client's own request."""
        token = request.headers.get(HEADER)
        if not token:
            return None
        return verify_node_token(self.settings.jwt_secret, token)

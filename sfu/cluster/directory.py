"""The room directory as one node sees it: which nodes are alive, which node holds a room, and
where a new room goes. `LocalDirectory` is the embedded single node (no Redis): the node is the
whole cluster, and every answer comes from its own rooms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sfu.cluster.node_info import NodeInfo, NodeLoad

LoadReader = Callable[[], NodeLoad]
"""Reads the node's rooms and load now (the wiring passes one over the room manager)."""
RoomLost = Callable[[dict[str, Any]], None]
"""Called once per room of a node that was lost, with the room object it last published."""


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """What does not change while the node runs."""

    node_id: str
    internal_url: str
    ws_url: str | None
    media_address: str
    version: str
    started_at: str


class RoomDirectory(Protocol):
    """What the edge and the wiring need from the cluster."""

    @property
    def identity(self) -> NodeIdentity: ...

    @property
    def clustered(self) -> bool:
        """True when other nodes may exist (Redis); False for the embedded single node."""

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Leave the cluster: this node's entry and room claims are removed. Safe twice."""

    async def heartbeat_now(self) -> None:
        """Publish this node's entry at once (draining started), not at the next beat."""

    async def nodes(self) -> list[NodeInfo]:
        """The live nodes, this one included. DirectoryUnavailable when Redis is down."""

    async def owner_of(self, room_id: str) -> NodeInfo | None:
        """The live node that holds the room, or None. DirectoryUnavailable when Redis is
        down."""

    async def claim(self, room_id: str, room: dict[str, Any]) -> bool:
        """Take `room_id` for this node; False when some node holds it already (atomic)."""

    async def release(self, room_id: str) -> None:
        """This node no longer holds `room_id` (the room closed)."""

    async def place(self) -> NodeInfo:
        """The node a new room goes to (placement.py). NoCapacity when no node can take it,
        DirectoryUnavailable when Redis is down."""


class LocalDirectory:
    """The embedded single node: no Redis, nothing shared."""

    clustered = False

    def __init__(self, identity: NodeIdentity, load: LoadReader) -> None:
        self.identity = identity
        self._load = load

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def heartbeat_now(self) -> None:
        return None

    def info(self) -> NodeInfo:
        return node_info(self.identity, self._load(), cpu_load=0.0)

    async def nodes(self) -> list[NodeInfo]:
        return [self.info()]

    async def owner_of(self, room_id: str) -> NodeInfo | None:
        return self.info() if room_id in self._load().rooms else None

    async def claim(self, room_id: str, room: dict[str, Any]) -> bool:
        return True  # the room manager itself refuses a room id it holds

    async def release(self, room_id: str) -> None:
        return None

    async def place(self) -> NodeInfo:
        return self.info()  # the room manager itself refuses when it is full or draining


def node_info(identity: NodeIdentity, load: NodeLoad, *, cpu_load: float) -> NodeInfo:
    return NodeInfo(
        node_id=identity.node_id,
        internal_url=identity.internal_url,
        ws_url=identity.ws_url,
        media_address=identity.media_address,
        rooms=len(load.rooms),
        participants=load.participants,
        free_ports=load.free_ports,
        room_slots=load.room_slots,
        cpu_load=cpu_load,
        draining=load.draining,
        version=identity.version,
        started_at=identity.started_at,
    )
